// libFuzzer target for load_safetensors and read_safetensors. Any input must either load or throw a
// seqattn::Error that leaves the model bitwise unchanged; anything else (another exception, e.g. from the
// JSON parser, a crash, a sanitizer report, a changed model after an error) is a bug.
// The model has packed (MultiHeadAttention in_proj), transposed and reshaped (Conv1D) tensors, so loads
// exercise every path of the name mapping. Build and run: fuzz/run.sh (seeds in fuzz/corpus/safetensors).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_models.hpp"
#include "seqattn/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static seqattn::Sequential<float> model = seqattn::fuzzing::safetensors_model();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<unsigned char> before = seqattn::fuzzing::snapshot(model);
  try {
    std::stringstream in(text);
    seqattn::load_safetensors(model, in);
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0 || seqattn::fuzzing::snapshot(model) != before) std::abort();
  }
  try {
    std::stringstream in(text);
    const seqattn::SafetensorsContents contents = seqattn::read_safetensors(in);
    for (const auto& entry : contents.tensors) {
      std::size_t n = 1;
      for (auto d : entry.second.shape) n *= static_cast<std::size_t>(d);
      if (!entry.second.values.empty() && entry.second.values.size() != n) std::abort();
    }
  } catch (const seqattn::Error&) {
  }
  return 0;
}
