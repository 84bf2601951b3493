// libFuzzer target for load_model and load_graph (io/model_file.hpp): every input goes to both. Any input must
// either load or throw a seqattn::Error with a message; anything else (another exception, a crash, a sanitizer
// report, an allocation beyond the fuzzer's RSS limit) is a bug. A model or graph that loads must also: save again
// and load to the same architecture entry and summary, and predict a (2, 3, F) batch (a graph: one per input;
// memory limit 256 MiB) or throw a seqattn::Error.
// The first input byte is a switch: bit 0 set -> the rest gets a correct size field and checksum before loading
// (the fuzzer then explores the JSON and the records behind the checksum); bit 1 set -> loaded from a file (the
// path overload) instead of a stream; bit 2 set -> loaded as double instead of float.
// Build and run: fuzz/run.sh (seeds in fuzz/corpus/model, written by fuzz/make_corpus.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_models.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/model_file.hpp"

namespace {

template <class S>
void load_and_use(const std::vector<unsigned char>& bytes, bool from_file) {
  seqattn::Sequential<S> model(1);
  try {
    if (from_file) {
      model = seqattn::load_model<S>(seqattn::fuzzing::scratch_path());
    } else {
      std::stringstream in(std::string(bytes.begin(), bytes.end()));
      model = seqattn::load_model<S>(in);
    }
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0) std::abort();
    return;
  }
  // Loaded: saving it again gives a file that loads to the same model.
  std::stringstream again;
  seqattn::save_model(model, again, seqattn::WeightsOptions().allow_non_finite(true));
  seqattn::Sequential<S> reloaded = seqattn::load_model<S>(again, seqattn::WeightsOptions().allow_non_finite(true));
  if (seqattn::layer_entry(reloaded) != seqattn::layer_entry(model) || reloaded.summary() != model.summary())
    std::abort();
  if (model.in_features() > 64) return;
  seqattn::Tensor3<S> x(2, 3, model.in_features());
  x.setConstant(S(1));  // also a valid id for an Embedding
  try {
    model.predict(x, seqattn::Mask::from_lengths({3, 1}));
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0) std::abort();
  }
}

template <class S>
void load_graph_and_use(const std::vector<unsigned char>& bytes, bool from_file) {
  std::unique_ptr<seqattn::Graph<S>> graph;
  try {
    if (from_file) {
      graph = std::make_unique<seqattn::Graph<S>>(seqattn::load_graph<S>(seqattn::fuzzing::scratch_path()));
    } else {
      std::stringstream in(std::string(bytes.begin(), bytes.end()));
      graph = std::make_unique<seqattn::Graph<S>>(seqattn::load_graph<S>(in));
    }
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0) std::abort();
    return;
  }
  // Loaded: saving it again gives a file that loads to the same graph.
  std::stringstream again;
  seqattn::save_model(*graph, again, seqattn::WeightsOptions().allow_non_finite(true));
  seqattn::Graph<S> reloaded = seqattn::load_graph<S>(again, seqattn::WeightsOptions().allow_non_finite(true));
  if (seqattn::layer_entry(reloaded) != seqattn::layer_entry(*graph) || reloaded.summary() != graph->summary())
    std::abort();
  const seqattn::Index n = graph->min_inputs();
  std::vector<seqattn::Tensor3<S>> xs;
  for (seqattn::Index i = 0; i < n; ++i) {
    const seqattn::Index features = graph->input_features(i, n);
    if (features > 64) return;
    xs.emplace_back(2, 3, features);
    xs.back().setConstant(S(1));
  }
  const seqattn::Mask mask = seqattn::Mask::from_lengths({3, 1});
  seqattn::LayerInputs<S> inputs;
  for (const auto& x : xs) inputs.push_back({&x, &mask});
  try {
    graph->forward(inputs, seqattn::Mode::Infer);
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool limited = [] {
    seqattn::set_memory_limit(std::size_t{256} << 20);
    return true;
  }();
  (void)limited;
  if (size == 0) return 0;
  std::vector<unsigned char> bytes(data + 1, data + size);
  if ((data[0] & 1) != 0 && bytes.size() >= 40) {
    const std::uint64_t total = bytes.size();
    for (int i = 0; i < 8; ++i) bytes[16 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(total >> (8 * i));
    const std::uint32_t crc = seqattn::detail::crc32(bytes.data(), bytes.size() - 4);
    for (int i = 0; i < 4; ++i)
      bytes[bytes.size() - 4 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(crc >> (8 * i));
  }
  const bool from_file = (data[0] & 2) != 0;
  if (from_file) seqattn::fuzzing::write_scratch(bytes.data(), bytes.size());
  if ((data[0] & 4) != 0) {
    load_and_use<double>(bytes, from_file);
    load_graph_and_use<double>(bytes, from_file);
  } else {
    load_and_use<float>(bytes, from_file);
    load_graph_and_use<float>(bytes, from_file);
  }
  return 0;
}
