// Layers over time without attention: pooling, positional encodings and Embedding; forward and forward +
// backward, float, one thread. Nominal flops per input value (N = B*T*F): pooling forward 1 (compare or
// add), + backward 1; positional encodings (add mode) forward 1, + backward 1. Embedding reports GB/s
// (bytes of the rows it copies, and adds in backward) instead of flops.
#include <algorithm>
#include <vector>

#include "bench_common.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"

namespace {

using namespace seqattn_bench;

// Args: B, T, F
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "F"})->Args({64, 128, 64})->Args({8, 1024, 256});
  b->Unit(benchmark::kMicrosecond);
}

// Runs layer L(F, extra...) on a (B, T, F) input whose sequences have lengths T, T - 1, ..., (at least 1),
// so the masked paths are measured.
template <class L, class... Extra>
void over_time(benchmark::State& state, bool backward, Extra... extra) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2);
  L layer(F, extra...);
  std::vector<Index> lengths;
  for (Index b = 0; b < B; ++b) lengths.push_back(std::max<Index>(1, T - b));
  const double n = static_cast<double>(B * T * F);
  run_layer(state, layer, random_input(B, T, F, 2), Mask::from_lengths(lengths), backward, backward ? 2 * n : n);
}

void BM_GlobalMaxPool_Forward(benchmark::State& s) { over_time<seqattn::GlobalMaxPool<float>>(s, false); }
void BM_GlobalMaxPool_ForwardBackward(benchmark::State& s) { over_time<seqattn::GlobalMaxPool<float>>(s, true); }
void BM_GlobalAvgPool_Forward(benchmark::State& s) { over_time<seqattn::GlobalAvgPool<float>>(s, false); }
void BM_GlobalAvgPool_ForwardBackward(benchmark::State& s) { over_time<seqattn::GlobalAvgPool<float>>(s, true); }
void BM_MaxPool1D_2_Forward(benchmark::State& s) { over_time<seqattn::MaxPool1D<float>>(s, false, Index{2}); }
void BM_MaxPool1D_2_ForwardBackward(benchmark::State& s) { over_time<seqattn::MaxPool1D<float>>(s, true, Index{2}); }
BENCHMARK(BM_GlobalMaxPool_Forward)->Apply(shapes);
BENCHMARK(BM_GlobalMaxPool_ForwardBackward)->Apply(shapes);
BENCHMARK(BM_GlobalAvgPool_Forward)->Apply(shapes);
BENCHMARK(BM_GlobalAvgPool_ForwardBackward)->Apply(shapes);
BENCHMARK(BM_MaxPool1D_2_Forward)->Apply(shapes);
BENCHMARK(BM_MaxPool1D_2_ForwardBackward)->Apply(shapes);

void BM_Sinusoidal_Forward(benchmark::State& s) { over_time<seqattn::SinusoidalPositionalEncoding<float>>(s, false); }
void BM_Sinusoidal_ForwardBackward(benchmark::State& s) {
  over_time<seqattn::SinusoidalPositionalEncoding<float>>(s, true);
}
BENCHMARK(BM_Sinusoidal_Forward)->Apply(shapes);
BENCHMARK(BM_Sinusoidal_ForwardBackward)->Apply(shapes);

// PositionEmbedding with max_length = T.
template <bool Backward>
void position_embedding(benchmark::State& s) {
  over_time<seqattn::PositionEmbedding<float>>(s, Backward, s.range(1));
}
void BM_PositionEmbedding_Forward(benchmark::State& s) { position_embedding<false>(s); }
void BM_PositionEmbedding_ForwardBackward(benchmark::State& s) { position_embedding<true>(s); }
BENCHMARK(BM_PositionEmbedding_Forward)->Apply(shapes);
BENCHMARK(BM_PositionEmbedding_ForwardBackward)->Apply(shapes);

// Args: B, T, vocab, dim. Ids uniform in [0, vocab).
void embedding(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), vocab = state.range(2), dim = state.range(3);
  seqattn::Embedding<float> layer(1, vocab, dim, seqattn::EmbeddingOptions().seed(1));
  seqattn::Rng rng(3);
  Tensor3<float> ids(B, T, 1);
  for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = static_cast<float>(rng.below(static_cast<std::uint64_t>(vocab)));
  run_layer(state, layer, ids, Mask(), backward, 0.0);
  const double bytes = static_cast<double>(B * T * dim) * sizeof(float) * (backward ? 2 : 1);
  state.counters["GB"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_Embedding_Forward(benchmark::State& state) { embedding(state, false); }
void BM_Embedding_ForwardBackward(benchmark::State& state) { embedding(state, true); }
void embedding_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "vocab", "dim"})->Args({64, 128, 10000, 64})->Args({8, 1024, 1000, 256});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_Embedding_Forward)->Apply(embedding_shapes);
BENCHMARK(BM_Embedding_ForwardBackward)->Apply(embedding_shapes);

}  // namespace
