// SeqSelfAttention forward + backward in float.
//   Local:  additive, attention_width 16, B = 1, F = 32, U = 32, T = 256, 1024, 4096. Cost is O(T w U), so
//           items/s (steps per second) should stay flat as T grows: linear time, not quadratic.
//   Global: additive and multiplicative over (B, T, F) = (16, 128, 64) and (4, 512, 64), U = 32: O(T^2).
//   Naive:  the dense loops of detail/seq_self_attention_reference.hpp (forward only) at one small size, to
//           show what the banded, vectorized kernels buy.
#include <benchmark/benchmark.h>

#include "seqattn/detail/seq_self_attention_reference.hpp"
#include "seqattn/layers/seq_self_attention.hpp"

namespace {

using seqattn::Index;
using seqattn::Tensor3;

Tensor3<float> random_input(Index B, Index T, Index F, std::uint64_t seed) {
  seqattn::Rng rng(seed);
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

void run_forward_backward(benchmark::State& state, seqattn::SeqSelfAttentionOptions options, Index B, Index T,
                          Index F) {
  seqattn::SeqSelfAttention<float> layer(F, options.seed(1));
  const auto x = random_input(B, T, F, 2);
  const auto dy = random_input(B, T, F, 3);
  const seqattn::Mask mask;
  for (auto _ : state) {
    const auto& y = layer.forward(x, mask, seqattn::Mode::Train);
    benchmark::DoNotOptimize(y.data());
    const auto& dx = layer.backward(x, mask, dy);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * B * T);  // steps per second
  state.counters["B"] = static_cast<double>(B);
  state.counters["T"] = static_cast<double>(T);
}

void BM_AdditiveWidth16(benchmark::State& state) {
  run_forward_backward(state, seqattn::SeqSelfAttentionOptions().units(32).attention_width(16), 1, state.range(0), 32);
}
BENCHMARK(BM_AdditiveWidth16)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMicrosecond);

void BM_AdditiveGlobal(benchmark::State& state) {
  run_forward_backward(state, seqattn::SeqSelfAttentionOptions().units(32), state.range(0), state.range(1),
                       state.range(2));
}
BENCHMARK(BM_AdditiveGlobal)->Args({16, 128, 64})->Args({4, 512, 64})->Unit(benchmark::kMillisecond);

void BM_MultiplicativeGlobal(benchmark::State& state) {
  run_forward_backward(state, seqattn::SeqSelfAttentionOptions().attention_type(seqattn::AttentionType::Multiplicative),
                       state.range(0), state.range(1), state.range(2));
}
BENCHMARK(BM_MultiplicativeGlobal)->Args({16, 128, 64})->Args({4, 512, 64})->Unit(benchmark::kMillisecond);

void BM_AdditiveGlobalForward(benchmark::State& state) {
  seqattn::SeqSelfAttention<float> layer(64, seqattn::SeqSelfAttentionOptions().units(32).seed(1));
  const auto x = random_input(2, 64, 64, 2);
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(x).data());
  state.SetItemsProcessed(state.iterations() * 2 * 64);
}
BENCHMARK(BM_AdditiveGlobalForward)->Unit(benchmark::kMicrosecond);

void BM_NaiveReferenceForward(benchmark::State& state) {
  seqattn::SeqSelfAttention<float> layer(64, seqattn::SeqSelfAttentionOptions().units(32).seed(1));
  const auto x = random_input(2, 64, 64, 2);
  for (auto _ : state) benchmark::DoNotOptimize(seqattn::detail::seq_self_attention_reference(layer, x).y.data());
  state.SetItemsProcessed(state.iterations() * 2 * 64);
}
BENCHMARK(BM_NaiveReferenceForward)->Unit(benchmark::kMicrosecond);

}  // namespace
