// libFuzzer target for decode_checkpoint and load_checkpoint (io/checkpoint.hpp). Any input must either restore
// or throw a seqattn::Error with a message; anything else (another exception, a crash, a sanitizer report, an
// allocation beyond the fuzzer's RSS limit) is a bug. The target is a fresh model of checkpoint_model.hpp
// (Dense, BatchNorm, Dense) with its optimizer; the invariants:
//   - a failed restore leaves the model's parameters and buffers and the optimizer's state (name, step, lr,
//     every tensor) bitwise unchanged (load_checkpoint "checks everything before it changes anything");
//   - a restore that succeeds encodes again (encode_checkpoint) to bytes that decode into another fresh model and
//     optimizer, to the same progress (epoch, batch, step, extra), bitwise the same parameters and buffers and the
//     same optimizer state.
// The first input byte is a switch: bit 0 set -> the last 8 bytes of the rest become its correct FNV-1a checksum
// before decoding (the fuzzer then explores the JSON, the embedded model file and the tensors behind the checksum);
// bit 1 set -> loaded from a file (load_checkpoint, the path overload) instead of bytes; bit 2 set -> the target
// optimizer is SGD with momentum instead of Adam.
// Build and run: fuzz/run.sh (seeds in fuzz/corpus/checkpoint, written by fuzz/make_corpus.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint_model.hpp"
#include "fuzz_models.hpp"
#include "seqattn/core/memory_limit.hpp"
#include "seqattn/io/checkpoint.hpp"

namespace {

// Bitwise equality of two optimizer states (NaN moments included).
bool same_state(const seqattn::OptimizerState<float>& a, const seqattn::OptimizerState<float>& b) {
  if (a.optimizer != b.optimizer || a.step != b.step || std::memcmp(&a.lr, &b.lr, sizeof a.lr) != 0 ||
      a.tensors.size() != b.tensors.size())
    return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [name_a, value_a] = a.tensors[i];
    const auto& [name_b, value_b] = b.tensors[i];
    if (name_a != name_b || value_a.size() != value_b.size() ||
        std::memcmp(value_a.data(), value_b.data(), sizeof(float) * static_cast<std::size_t>(value_a.size())) != 0)
      return false;
  }
  return true;
}

template <class Optimizer, class MakeOptimizer>
void restore(const std::vector<unsigned char>& bytes, bool from_file, MakeOptimizer make_optimizer) {
  seqattn::Sequential<float> model = seqattn::fuzzing::weights_model();
  Optimizer optimizer = make_optimizer(model);
  const std::vector<unsigned char> model_before = seqattn::fuzzing::snapshot(model);
  const seqattn::OptimizerState<float> state_before = optimizer.state();
  seqattn::TrainingProgress progress;
  try {
    progress = from_file ? seqattn::load_checkpoint(seqattn::fuzzing::scratch_path(), model, optimizer)
                         : seqattn::decode_checkpoint(bytes, model, optimizer, "fuzz_checkpoint");
  } catch (const seqattn::Error& e) {
    if (std::strlen(e.what()) == 0) std::abort();
    // Checked before anything changed: the model and the optimizer are as they were.
    if (seqattn::fuzzing::snapshot(model) != model_before || !same_state(optimizer.state(), state_before))
      std::abort();
    return;
  }
  // Restored: encoding it again gives a checkpoint that restores the same into a fresh model and optimizer.
  const std::vector<unsigned char> again = seqattn::encode_checkpoint(model, optimizer, progress);
  seqattn::Sequential<float> fresh = seqattn::fuzzing::weights_model();
  Optimizer fresh_optimizer = make_optimizer(fresh);
  const seqattn::TrainingProgress reread = seqattn::decode_checkpoint(again, fresh, fresh_optimizer, "round trip");
  if (reread.epoch != progress.epoch || reread.batch != progress.batch ||
      reread.global_step != progress.global_step || reread.extra != progress.extra)
    std::abort();
  if (seqattn::fuzzing::snapshot(fresh) != seqattn::fuzzing::snapshot(model) ||
      !same_state(fresh_optimizer.state(), optimizer.state()))
    std::abort();
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
  if ((data[0] & 1) != 0 && bytes.size() >= 32) {
    const std::uint64_t h = seqattn::detail::checkpoint::fnv1a(bytes.data(), bytes.size() - 8);
    for (int i = 0; i < 8; ++i)
      bytes[bytes.size() - 8 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(h >> (8 * i));
  }
  const bool from_file = (data[0] & 2) != 0;
  if (from_file) seqattn::fuzzing::write_scratch(bytes.data(), bytes.size());
  if ((data[0] & 4) != 0)
    restore<seqattn::SGD<float>>(bytes, from_file, seqattn::fuzzing::checkpoint_sgd);
  else
    restore<seqattn::Adam<float>>(bytes, from_file, seqattn::fuzzing::checkpoint_adam);
  return 0;
}
