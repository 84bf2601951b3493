// libFuzzer target for the IDX reader of the time-series classifier example (parse_idx) and the conversion of
// IDX images and labels to a Dataset (images_to_dataset). Any input must either parse into an array whose
// value count is the product of its dimensions or throw tsc::DataError; anything else is a bug.
// The first input byte is the image limit of images_to_dataset (0: all); the rest is the IDX file. When it
// parses with 3 dimensions, labels made from its first values (mod 12, so some are out of range) go with it.
// Seeds: fuzz/corpus/idx (written by fuzz/make_corpus.cpp).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "../examples/time_series_classifier/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::vector<std::uint8_t> bytes(data + 1, data + size);
  tsc::IdxArray a;
  try {
    a = tsc::parse_idx(bytes, "fuzz.idx");
  } catch (const tsc::DataError&) {
    return 0;
  }
  if (a.dims.empty() || a.dims.size() > 4) std::abort();
  std::uint64_t count = 1;
  for (tsc::Index d : a.dims) count *= static_cast<std::uint64_t>(d);
  if (count != a.values.size()) std::abort();
  if (a.dims.size() != 3) return 0;
  tsc::IdxArray labels;
  labels.dims = {a.dims[0]};
  // One label per image (N <= the value count unless a dimension is 0, which images_to_dataset rejects).
  const std::size_t n_labels = std::min<std::size_t>(static_cast<std::size_t>(a.dims[0]), a.values.size());
  for (std::size_t i = 0; i < n_labels; ++i) labels.values.push_back(static_cast<std::uint8_t>(a.values[i] % 12));
  try {
    const tsc::Dataset d = tsc::images_to_dataset(a, labels, "images", "labels", data[0], tsc::fashion_mnist_classes());
    const tsc::Index n = data[0] > 0 ? std::min<tsc::Index>(a.dims[0], data[0]) : a.dims[0];
    if (d.size() != n || d.x.dimension(0) != n || d.x.dimension(1) != a.dims[1] || d.x.dimension(2) != a.dims[2])
      std::abort();
    for (tsc::Index i = 0; i < d.x.size(); ++i)
      if (!(d.x.data()[i] >= 0.0f && d.x.data()[i] <= 1.0f)) std::abort();
  } catch (const tsc::DataError&) {
  }
  return 0;
}
