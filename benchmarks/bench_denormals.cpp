// Denormal (subnormal) inputs with seqattn's flush-to-zero mode on (the default, core/denormals.hpp) and off.
// On x86, an operation that reads or makes a denormal can take a microcode assist of about 100 cycles (how often
// depends on the core and the instruction: the issue reported 18-21x on one machine; on the 2026-12-06 Intel
// Xeon with AVX-512, SeqSelfAttention ran 1.9x and LayerNorm 1.5x slower, the tiled products hardly at all).
// Rows, float, one thread, (B, T, F) = (16, 128, 64), forward + backward:
//   Dense(64 -> 64), MultiHeadAttention(4 heads), LayerNorm, SeqSelfAttention (additive), LSTM(64), and the
//   classifier of classifier_model.hpp (one training step)
// each on normal inputs (uniform in [-1, 1)) and on denormal inputs (the same values times 1e-39), with
// set_flush_denormals(true) and (false). Compare the rows of one run: denormal/flush-on should cost what
// normal/flush-on costs. The classifier row's weights are reset from a copy before every step, so every
// iteration trains the same model on the same data.
#include "bench_common.hpp"
#include "classifier_model.hpp"
#include "seqattn/core/denormals.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/seq_self_attention.hpp"

namespace {

using namespace seqattn_bench;

constexpr Index kB = 16, kT = 128, kF = 64;

// Args: denormal input (0/1), flush (0/1)
void modes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"denormal", "flush"})->Args({0, 1})->Args({1, 1})->Args({0, 0})->Args({1, 0});
  b->Unit(benchmark::kMicrosecond);
}

Tensor3<float> input(bool denormal, Index F) {
  Tensor3<float> x = random_input(kB, kT, F, 7);
  if (denormal)
    for (Index i = 0; i < x.size(); ++i) x.data()[i] *= 1e-39f;
  return x;
}

// Sets the process-wide mode for one benchmark and restores the default.
struct FlushMode {
  explicit FlushMode(bool on) { seqattn::set_flush_denormals(on); }
  ~FlushMode() { seqattn::set_flush_denormals(true); }
};

void BM_Dense_ForwardBackward(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  seqattn::Dense<float> layer(kF, kF, seqattn::DenseOptions().seed(1));
  run_layer(state, layer, input(state.range(0) != 0, kF), Mask(), true, 6.0 * kB * kT * kF * kF);
}
BENCHMARK(BM_Dense_ForwardBackward)->Apply(modes);

void BM_MultiHeadAttention_ForwardBackward(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  seqattn::MultiHeadAttention<float> layer(kF, 4, seqattn::MultiHeadAttentionOptions().seed(2));
  run_layer(state, layer, input(state.range(0) != 0, kF), Mask(), true, 0);
}
BENCHMARK(BM_MultiHeadAttention_ForwardBackward)->Apply(modes);

void BM_LayerNorm_ForwardBackward(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  seqattn::LayerNorm<float> layer(kF);
  run_layer(state, layer, input(state.range(0) != 0, kF), Mask(), true, 0);
}
BENCHMARK(BM_LayerNorm_ForwardBackward)->Apply(modes);

void BM_SeqSelfAttention_ForwardBackward(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  seqattn::SeqSelfAttention<float> layer(kF, seqattn::SeqSelfAttentionOptions().seed(3));
  run_layer(state, layer, input(state.range(0) != 0, kF), Mask(), true, 0);
}
BENCHMARK(BM_SeqSelfAttention_ForwardBackward)->Apply(modes);

void BM_LSTM_ForwardBackward(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  seqattn::LSTM<float> layer(kF, kF, seqattn::LSTMOptions().return_sequences(true).seed(4));
  run_layer(state, layer, input(state.range(0) != 0, kF), Mask(), true, 0);
}
BENCHMARK(BM_LSTM_ForwardBackward)->Apply(modes);

void BM_Classifier_TrainStep(benchmark::State& state) {
  const FlushMode mode(state.range(1) != 0);
  ClassifierTrainer trainer;
  const seqattn::Sequential<float> start = trainer.model;
  const Tensor3<float> x = input(state.range(0) != 0, ClassifierShape().features);
  std::vector<int> labels(static_cast<size_t>(kB));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 2);
  for (auto _ : state) {
    trainer.model = start;  // same architecture: copied into the tensors Adam holds
    benchmark::DoNotOptimize(trainer.step(x, Mask(), labels));
  }
  set_rates(state, kB, 3 * classifier_forward_flops(kB, kT));
}
BENCHMARK(BM_Classifier_TrainStep)->Apply(modes);

}  // namespace
