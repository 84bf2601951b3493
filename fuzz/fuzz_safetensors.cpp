// libFuzzer target for load_safetensors and read_safetensors. Any input must either load or throw a
// seqattn::Error that leaves the model bitwise unchanged; anything else (another exception, e.g. from the
// JSON parser, a crash, a sanitizer report, a changed model after an error) is a bug. Further invariants:
//   - a load with the default options that succeeds leaves no NaN or Inf in the model; the same input loaded
//     with SafetensorsOptions().allow_non_finite(true) into a second model: the option lifts exactly the
//     NonFiniteError (then the model holds a non-finite value), any other error stays, and a default load
//     that succeeds gives bitwise the same model;
//   - read_safetensors reports no negative dimension and as many values as the shape's product;
//   - read_safetensors of the input as a file (the path overload: header size, header, then data, sizes checked
//     against the file's) succeeds only when reading it as a stream does, with the same tensors.
// The model has packed (MultiHeadAttention in_proj), transposed and reshaped (Conv1D) tensors, so loads
// exercise every path of the name mapping. Build and run: fuzz/run.sh (seeds in fuzz/corpus/safetensors).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_models.hpp"
#include "safetensors_model.hpp"
#include "seqattn/io/safetensors.hpp"

namespace {

enum class Outcome { Loaded, NonFinite, OtherError };

Outcome load(seqattn::Sequential<float>& model, const std::string& text, const seqattn::SafetensorsOptions& options) {
  const std::vector<unsigned char> before = seqattn::fuzzing::snapshot(model);
  auto failed = [&](const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0 || seqattn::fuzzing::snapshot(model) != before) std::abort();
  };
  try {
    std::stringstream in(text);
    seqattn::load_safetensors(model, in, options);
  } catch (const seqattn::NonFiniteError& e) {
    failed(e);
    return Outcome::NonFinite;
  } catch (const seqattn::Error& e) {
    failed(e);
    return Outcome::OtherError;
  }
  return Outcome::Loaded;
}

// Aborts unless every tensor has non-negative dimensions and (when values are decoded) their product of values.
void check_contents(const seqattn::SafetensorsContents& contents) {
  for (const auto& entry : contents.tensors) {
    std::size_t n = 1;
    for (auto d : entry.second.shape) {
      if (d < 0) std::abort();
      n *= static_cast<std::size_t>(d);
    }
    if (!entry.second.values.empty() && entry.second.values.size() != n) std::abort();
  }
}

bool same(const seqattn::SafetensorsContents& a, const seqattn::SafetensorsContents& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (auto i = a.tensors.begin(), j = b.tensors.begin(); i != a.tensors.end(); ++i, ++j) {
    if (i->first != j->first || i->second.dtype != j->second.dtype || i->second.shape != j->second.shape ||
        i->second.values.size() != j->second.values.size() ||
        (!i->second.values.empty() &&  // (memcmp of an empty vector's null data() is undefined)
         std::memcmp(i->second.values.data(), j->second.values.data(), i->second.values.size() * sizeof(double)) != 0))
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static seqattn::Sequential<float> model = seqattn::fuzzing::safetensors_model();
  static seqattn::Sequential<float> allowing = seqattn::fuzzing::safetensors_model();
  const std::string text(reinterpret_cast<const char*>(data), size);

  const Outcome strict = load(model, text, seqattn::SafetensorsOptions());
  if (strict == Outcome::Loaded && !seqattn::fuzzing::all_finite(model)) std::abort();
  const Outcome allowed = load(allowing, text, seqattn::SafetensorsOptions().allow_non_finite(true));
  if (allowed == Outcome::NonFinite) std::abort();
  if ((strict == Outcome::OtherError) != (allowed == Outcome::OtherError)) std::abort();
  if (strict == Outcome::NonFinite && seqattn::fuzzing::all_finite(allowing)) std::abort();
  if (strict == Outcome::Loaded && seqattn::fuzzing::snapshot(allowing) != seqattn::fuzzing::snapshot(model))
    std::abort();

  bool stream_ok = false;
  seqattn::SafetensorsContents from_stream;
  try {
    std::stringstream in(text);
    from_stream = seqattn::read_safetensors(in);
    check_contents(from_stream);
    stream_ok = true;
  } catch (const seqattn::Error&) {
  }
  seqattn::fuzzing::write_scratch(data, size);
  try {
    const seqattn::SafetensorsContents from_file = seqattn::read_safetensors(seqattn::fuzzing::scratch_path());
    check_contents(from_file);
    if (!stream_ok || !same(from_file, from_stream)) std::abort();
  } catch (const seqattn::Error&) {
  }
  return 0;
}
