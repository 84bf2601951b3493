// LayerNorm, BatchNorm and Dropout: forward and forward + backward, float, one thread. Memory-bound layers:
// nominal flops per value (N = B*T*F values): LayerNorm and BatchNorm forward 8, + backward 12 (Train
// statistics); Dropout forward 3 (draw, compare, scale), + backward 1.
#include "bench_common.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/layer_norm.hpp"

namespace {

using namespace seqattn_bench;

// Args: B, T, F
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "F"})->Args({32, 128, 64})->Args({32, 128, 512})->Args({1, 4096, 64});
  b->Unit(benchmark::kMicrosecond);
}

template <class L>
void norm(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2);
  L layer(F);
  const double n = static_cast<double>(B * T * F);
  run_layer(state, layer, random_input(B, T, F, 2), Mask(), backward, backward ? 20 * n : 8 * n);
}
void BM_LayerNorm_Forward(benchmark::State& state) { norm<seqattn::LayerNorm<float>>(state, false); }
void BM_LayerNorm_ForwardBackward(benchmark::State& state) { norm<seqattn::LayerNorm<float>>(state, true); }
BENCHMARK(BM_LayerNorm_Forward)->Apply(shapes);
BENCHMARK(BM_LayerNorm_ForwardBackward)->Apply(shapes);

// Forward in Mode::Infer uses the running statistics; forward + backward runs Mode::Train (batch statistics).
void BM_BatchNorm_Forward(benchmark::State& state) { norm<seqattn::BatchNorm<float>>(state, false); }
void BM_BatchNorm_ForwardBackward(benchmark::State& state) { norm<seqattn::BatchNorm<float>>(state, true); }
BENCHMARK(BM_BatchNorm_Forward)->Apply(shapes);
BENCHMARK(BM_BatchNorm_ForwardBackward)->Apply(shapes);

// Mode::Train forward (draws the keep mask) and backward; Infer is a copy and not measured.
void BM_Dropout_ForwardBackward(benchmark::State& state) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2);
  seqattn::Dropout<float> layer(F, 0.1, seqattn::DropoutOptions().seed(1));
  run_layer(state, layer, random_input(B, T, F, 2), Mask(), true, 4.0 * static_cast<double>(B * T * F));
}
BENCHMARK(BM_Dropout_ForwardBackward)->Apply(shapes);

}  // namespace
