// The example classifier of classifier_model.hpp (Dense, sinusoidal positions, MultiHeadAttention(64, 4),
// LayerNorm, GlobalMaxPool, Dense(2); SoftmaxCrossEntropy, Adam), float, one thread:
//   BM_Classifier_TrainStep   one training step (zero_grad, forward, loss, backward, Adam) on B sequences
//   BM_Classifier_Infer       predict() (forward in Mode::Infer), batch 64 and batch 1
// Args: B, T, masked (0: every sequence has T steps; 1: lengths spread over [T/2, T]).
// Nominal flops: forward of every product (see classifier_forward_flops); a training step counts 3 times that.
#include <algorithm>
#include <vector>

#include "bench_common.hpp"
#include "classifier_model.hpp"

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
  ClassifierTrainer trainer;
  const auto x = random_input(B, T, 8, 1);
  const Mask mask = make_mask(B, T, state.range(2) != 0);
  std::vector<int> labels;
  for (Index b = 0; b < B; ++b) labels.push_back(static_cast<int>(b % 2));
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step(x, mask, labels));
  set_rates(state, B, 3 * classifier_forward_flops(B, T));
}
BENCHMARK(BM_Classifier_TrainStep)
    ->ArgNames({"B", "T", "masked"})
    ->Args({64, 128, 0})
    ->Args({64, 128, 1})
    ->Args({8, 128, 0})
    ->Unit(benchmark::kMillisecond);

void BM_Classifier_Infer(benchmark::State& state) {
  const Index B = state.range(0), T = state.range(1);
  auto model = make_classifier();
  const auto x = random_input(B, T, 8, 1);
  const Mask mask = make_mask(B, T, state.range(2) != 0);
  for (auto _ : state) benchmark::DoNotOptimize(model.predict(x, mask).data());
  set_rates(state, B, classifier_forward_flops(B, T));
}
BENCHMARK(BM_Classifier_Infer)
    ->ArgNames({"B", "T", "masked"})
    ->Args({64, 128, 0})
    ->Args({1, 128, 0})
    ->Args({1, 32, 0})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
