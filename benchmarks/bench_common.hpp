#pragma once
// Helpers shared by benchmarks/bench_layers_*.cpp and bench_classifier.cpp (float, one thread).
//
// Every layer benchmark runs either the forward alone (Mode::Infer) or a forward (Mode::Train) followed by
// the backward with a fixed random dy, on a fixed random input, and reports besides the time:
//   seq       sequences (batch rows) per second (printed seq=.../s)
//   GFLOP     nominal floating-point operations per second: each benchmark file states the count it uses per
//             layer (2 per multiply-add of a product; rough per-element counts for normalization, pooling and
//             other memory-bound layers, whose GFLOP/s only compares runs of the same layer)
// and the shape arguments as named columns (B, T, F, ...). Run one binary with --benchmark_filter=<regex>;
// ./build.sh bench runs them all with --benchmark_min_time=0.2 --benchmark_counters_tabular=true.

#include <benchmark/benchmark.h>

#include <cstdint>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/random.hpp"

namespace seqattn_bench {

using seqattn::Index;
using seqattn::Mask;
using seqattn::Mode;
using seqattn::Tensor3;

// x (B, T, F), uniform in [-1, 1), the same values for a given seed.
inline Tensor3<float> random_input(Index B, Index T, Index F, std::uint64_t seed) {
  seqattn::Rng rng(seed);
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

// Sets the rates seq (B sequences per iteration) and GFLOP (flops per iteration, in 1e9) per second.
inline void set_rates(benchmark::State& state, Index B, double flops) {
  state.counters["seq"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0)
    state.counters["GFLOP"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Runs the forward (backward = false) or forward + backward of `layer` on x every iteration.
//   x (B, T, in_features), dy (B, out_time(T), out_features()) when backward
inline void run_layer(benchmark::State& state, seqattn::Layer<float>& layer, const Tensor3<float>& x,
                      const Mask& mask, bool backward, double flops) {
  const Tensor3<float>& y0 = layer.forward(x, mask, backward ? Mode::Train : Mode::Infer);
  const Tensor3<float> dy = random_input(y0.dimension(0), y0.dimension(1), y0.dimension(2), 99);
  for (auto _ : state) {
    const Tensor3<float>& y = layer.forward(x, mask, backward ? Mode::Train : Mode::Infer);
    benchmark::DoNotOptimize(y.data());
    if (backward) {
      const Tensor3<float>& dx = layer.backward(x, mask, dy);
      benchmark::DoNotOptimize(dx.data());
    }
    benchmark::ClobberMemory();
  }
  set_rates(state, x.dimension(0), flops);
}

}  // namespace seqattn_bench
