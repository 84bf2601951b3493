// The small attention blocks: FeatureAttention, TemporalAttention (keras-attention-mechanism) and
// SeqWeightedAttention (attention pooling); forward and forward + backward, float, one thread.
// Nominal flops per iteration (N = B*T): FeatureAttention forward 2*N*F^2; TemporalAttention forward
// 2*B*F*T^2; SeqWeightedAttention forward 4*N*F; forward + backward 3 times those.
#include "bench_common.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"

namespace {

using namespace seqattn_bench;

// Args: B, T, F
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "F"})->Args({64, 128, 64})->Args({8, 512, 128});
  b->Unit(benchmark::kMicrosecond);
}

void run(benchmark::State& state, seqattn::Layer<float>& layer, bool backward, double fwd_flops) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2);
  run_layer(state, layer, random_input(B, T, F, 2), Mask(), backward, backward ? 3 * fwd_flops : fwd_flops);
}

void feature(benchmark::State& state, bool backward) {
  const double N = static_cast<double>(state.range(0) * state.range(1)), F = static_cast<double>(state.range(2));
  seqattn::FeatureAttention<float> layer(state.range(2), seqattn::FeatureAttentionOptions().seed(1));
  run(state, layer, backward, 2 * N * F * F);
}
void BM_FeatureAttention_Forward(benchmark::State& state) { feature(state, false); }
void BM_FeatureAttention_ForwardBackward(benchmark::State& state) { feature(state, true); }
BENCHMARK(BM_FeatureAttention_Forward)->Apply(shapes);
BENCHMARK(BM_FeatureAttention_ForwardBackward)->Apply(shapes);

void temporal(benchmark::State& state, bool backward) {
  const double B = static_cast<double>(state.range(0)), T = static_cast<double>(state.range(1)),
               F = static_cast<double>(state.range(2));
  seqattn::TemporalAttention<float> layer(state.range(2), state.range(1), seqattn::TemporalAttentionOptions().seed(1));
  run(state, layer, backward, 2 * B * F * T * T);
}
void BM_TemporalAttention_Forward(benchmark::State& state) { temporal(state, false); }
void BM_TemporalAttention_ForwardBackward(benchmark::State& state) { temporal(state, true); }
BENCHMARK(BM_TemporalAttention_Forward)->Apply(shapes);
BENCHMARK(BM_TemporalAttention_ForwardBackward)->Apply(shapes);

void weighted(benchmark::State& state, bool backward) {
  const double N = static_cast<double>(state.range(0) * state.range(1)), F = static_cast<double>(state.range(2));
  seqattn::SeqWeightedAttention<float> layer(state.range(2), seqattn::SeqWeightedAttentionOptions().seed(1));
  run(state, layer, backward, 4 * N * F);
}
void BM_SeqWeightedAttention_Forward(benchmark::State& state) { weighted(state, false); }
void BM_SeqWeightedAttention_ForwardBackward(benchmark::State& state) { weighted(state, true); }
BENCHMARK(BM_SeqWeightedAttention_Forward)->Apply(shapes);
BENCHMARK(BM_SeqWeightedAttention_ForwardBackward)->Apply(shapes);

}  // namespace
