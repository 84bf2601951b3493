// The example classifier of classifier_model.hpp (Dense, sinusoidal positions, MultiHeadAttention(64, 4),
// LayerNorm, GlobalMaxPool, Dense(2); SoftmaxCrossEntropy, Adam), float:
//   BM_Classifier_TrainStep   one training step (zero_grad, forward, loss, backward, Adam) on B sequences
//   BM_Classifier_Infer       predict() (forward in Mode::Infer), batch 64 and batch 1
// Args: B, T, masked (0: every sequence has T steps; 1: lengths spread over [T/2, T]), threads
// (seqattn::set_num_threads; this binary is built with OpenMP when CMake finds it, else every row runs on one
// thread). Time is wall time; CPU is the CPU time of the whole process (every OpenMP thread, including time
// spent spinning while waiting), so CPU / Time is the number of cores kept busy.
// Nominal flops: forward of every product (see classifier_forward_flops); a training step counts 3 times that.
// 1 against 2 threads on the training step, several repetitions (the median is steadier on a shared machine):
//   ./bench_classifier --benchmark_filter='TrainStep/B:64/T:128/masked:0' --benchmark_repetitions=5
// On a machine whose cores are busy with other work, OpenMP's spinning waits make 2 threads much slower than 1;
// OMP_WAIT_POLICY=passive avoids that (docs/pages/benchmarks.md, "Threads and determinism", shows both).
#include <algorithm>
#include <vector>

#include "bench_common.hpp"
#include "classifier_model.hpp"
#include "seqattn/core/threads.hpp"

namespace {

using namespace seqattn_bench;

Mask make_mask(Index B, Index T, bool masked) {
  if (!masked) return Mask();
  std::vector<Index> lengths;
  for (Index b = 0; b < B; ++b) lengths.push_back(T - (b * (T / 2)) / std::max<Index>(1, B - 1));
  return Mask::from_lengths(lengths);
}

void BM_Classifier_TrainStep(benchmark::State& state) {
  const Index B = state.range(0), T = state.range(1);
  seqattn::set_num_threads(static_cast<int>(state.range(3)));
  ClassifierTrainer trainer;
  const auto x = random_input(B, T, 8, 1);
  const Mask mask = make_mask(B, T, state.range(2) != 0);
  std::vector<int> labels;
  for (Index b = 0; b < B; ++b) labels.push_back(static_cast<int>(b % 2));
  trainer.step(x, mask, labels);  // warm-up: sizes every buffer and touches its pages
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step(x, mask, labels));
  set_rates(state, B, 3 * classifier_forward_flops(B, T));
}
BENCHMARK(BM_Classifier_TrainStep)
    ->ArgNames({"B", "T", "masked", "threads"})
    ->Args({64, 128, 0, 1})
    ->Args({64, 128, 0, 2})
    ->Args({64, 128, 1, 1})
    ->Args({64, 128, 1, 2})
    ->Args({8, 128, 0, 1})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_Classifier_Infer(benchmark::State& state) {
  const Index B = state.range(0), T = state.range(1);
  seqattn::set_num_threads(static_cast<int>(state.range(3)));
  auto model = make_classifier();
  const auto x = random_input(B, T, 8, 1);
  const Mask mask = make_mask(B, T, state.range(2) != 0);
  model.predict(x, mask);  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(model.predict(x, mask).data());
  set_rates(state, B, classifier_forward_flops(B, T));
}
BENCHMARK(BM_Classifier_Infer)
    ->ArgNames({"B", "T", "masked", "threads"})
    ->Args({64, 128, 0, 1})
    ->Args({64, 128, 0, 2})
    ->Args({1, 128, 0, 1})
    ->Args({1, 32, 0, 1})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
