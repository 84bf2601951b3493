// TransformerEncoderBlock (post-norm, GELU, no dropout): forward and forward + backward, float, one thread.
// Nominal flops per iteration (N = B*T, d = d_model): forward 8*N*d^2 (q, k, v, output projections)
// + 4*B*T^2*d (scores and weighted values) + 4*N*d*ff (feed-forward); forward + backward 3 times that.
#include "bench_common.hpp"
#include "seqattn/layers/transformer_encoder.hpp"

namespace {

using namespace seqattn_bench;

// Args: B, T, d, heads, ff
void encoder(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), d = state.range(2), H = state.range(3), ff = state.range(4);
  seqattn::TransformerEncoderBlock<float> layer(d, H, ff, seqattn::TransformerEncoderOptions().seed(1));
  const double N = static_cast<double>(B * T), D = static_cast<double>(d);
  const double fwd = 8 * N * D * D + 4 * N * static_cast<double>(T) * D + 4 * N * D * static_cast<double>(ff);
  run_layer(state, layer, random_input(B, T, d, 2), Mask(), backward, backward ? 3 * fwd : fwd);
}
void BM_TransformerEncoder_Forward(benchmark::State& state) { encoder(state, false); }
void BM_TransformerEncoder_ForwardBackward(benchmark::State& state) { encoder(state, true); }

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "d", "heads", "ff"});
  b->Args({32, 64, 64, 4, 256})->Args({16, 256, 128, 8, 512})->Args({1, 1024, 64, 4, 256})->Args({1, 128, 64, 4, 256});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_TransformerEncoder_Forward)->Apply(shapes);
BENCHMARK(BM_TransformerEncoder_ForwardBackward)->Apply(shapes);

}  // namespace
