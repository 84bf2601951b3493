// libFuzzer target for load_weights (seqattn's own format). Any input must either load or throw a
// seqattn::Error that leaves the model bitwise unchanged; anything else (another exception, a crash, a
// sanitizer report, a changed model after an error) is a bug.
// The first input byte is a switch: odd -> the rest gets a correct size field and checksum before loading,
// so that the fuzzer also explores the record parser behind the checksum; even -> loaded as it is.
// Build and run: fuzz/run.sh (seeds in fuzz/corpus/weights, written by fuzz/make_corpus.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_models.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/weights.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static seqattn::Sequential<float> model = seqattn::fuzzing::weights_model();
  if (size == 0) return 0;
  std::vector<unsigned char> bytes(data + 1, data + size);
  if ((data[0] & 1) != 0 && bytes.size() >= 36) {
    const std::uint64_t total = bytes.size();
    for (int i = 0; i < 8; ++i) bytes[16 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(total >> (8 * i));
    const std::uint32_t crc = seqattn::detail::crc32(bytes.data(), bytes.size() - 4);
    for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(crc >> (8 * i));
  }
  const std::vector<unsigned char> before = seqattn::fuzzing::snapshot(model);
  std::stringstream in(std::string(bytes.begin(), bytes.end()));
  try {
    seqattn::load_weights(model, in);
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0 || seqattn::fuzzing::snapshot(model) != before) std::abort();
  }
  return 0;
}
