// libFuzzer target for load_weights (seqattn's own format). Any input must either load or throw a
// seqattn::Error that leaves the model bitwise unchanged; anything else (another exception, a crash, a
// sanitizer report, a changed model after an error) is a bug. Every input is loaded twice, with the default
// options and with WeightsOptions().allow_non_finite(true), into two models; the invariants:
//   - a default load that succeeds leaves no NaN or Inf in the model;
//   - the option lifts exactly the NonFiniteError: a default load that throws it loads with the option (and the
//     model then holds a non-finite value), any other error is thrown with the option too, and a default load
//     that succeeds gives bitwise the same model with the option.
// The first input byte is a switch: bit 0 set -> the rest gets a correct size field and checksum before
// loading, so that the fuzzer also explores the record parser behind the checksum; bit 1 set -> the rest is
// loaded from a file (the path overload: header first, sizes checked against the file's) instead of a stream.
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
#include "weights_model.hpp"

namespace {

enum class Outcome { Loaded, NonFinite, OtherError };

// Loads `bytes` into `model`; aborts unless an error leaves the model unchanged and has a message.
Outcome load(seqattn::Sequential<float>& model, const std::vector<unsigned char>& bytes, bool from_file,
             const seqattn::WeightsOptions& options) {
  const std::vector<unsigned char> before = seqattn::fuzzing::snapshot(model);
  auto failed = [&](const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0 || seqattn::fuzzing::snapshot(model) != before) std::abort();
  };
  try {
    if (from_file) {
      seqattn::load_weights(model, seqattn::fuzzing::scratch_path(), options);
    } else {
      std::stringstream in(std::string(bytes.begin(), bytes.end()));
      seqattn::load_weights(model, in, options);
    }
  } catch (const seqattn::NonFiniteError& e) {
    failed(e);
    return Outcome::NonFinite;
  } catch (const seqattn::Error& e) {
    failed(e);
    return Outcome::OtherError;
  }
  return Outcome::Loaded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static seqattn::Sequential<float> model = seqattn::fuzzing::weights_model();
  static seqattn::Sequential<float> allowing = seqattn::fuzzing::weights_model();
  if (size == 0) return 0;
  std::vector<unsigned char> bytes(data + 1, data + size);
  if ((data[0] & 1) != 0 && bytes.size() >= 36) {
    const std::uint64_t total = bytes.size();
    for (int i = 0; i < 8; ++i) bytes[16 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(total >> (8 * i));
    const std::uint32_t crc = seqattn::detail::crc32(bytes.data(), bytes.size() - 4);
    for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(crc >> (8 * i));
  }
  const bool from_file = (data[0] & 2) != 0;
  if (from_file) seqattn::fuzzing::write_scratch(bytes.data(), bytes.size());

  const Outcome strict = load(model, bytes, from_file, seqattn::WeightsOptions());
  if (strict == Outcome::Loaded && !seqattn::fuzzing::all_finite(model)) std::abort();
  const Outcome allowed = load(allowing, bytes, from_file, seqattn::WeightsOptions().allow_non_finite(true));
  if (allowed == Outcome::NonFinite) std::abort();
  if ((strict == Outcome::OtherError) != (allowed == Outcome::OtherError)) std::abort();
  if (strict == Outcome::NonFinite && seqattn::fuzzing::all_finite(allowing)) std::abort();
  if (strict == Outcome::Loaded && seqattn::fuzzing::snapshot(allowing) != seqattn::fuzzing::snapshot(model))
    std::abort();
  return 0;
}
