// MultiHeadAttention<float> self-attention, forward and forward+backward, at the (B, T, D, H) shapes used to
// compare with torch.nn.MultiheadAttention: (32,64,64,4), (16,256,128,8), (4,1024,256,8), (1,4096,64,4).
// No mask, no dropout, head_size = D / H. The GFLOP/s counter (per second of process CPU time, steadier than
// wall time on a shared machine) counts the dense work of the layer:
//   forward  = 2*B*T*D*3D (q, k, v) + 2*B*T*D*D (output) + 4*B*H*T*T*dh (scores, context)
//   backward = 2 x forward,  so forward+backward = 3 x forward.
// Also: causal forward+backward at (4,1024,256,8) (the counter still counts the full T x T scores, so it
// shows the effective speed against non-causal work), and the padded batch case (half of the steps valid).
// Long causal sequences, (4, 2048, 64, 4) and (1, 8192, 64, 4): global causal attention (1 GB of probabilities
// at T = 8192) against an attention_window of 128 (O(T w) instead of O(T^2); the counter of these rows counts
// each run's own score work, T x T / 2 causal or T x w windowed, so it shows how fast the band is computed).
// 2026-12-06, AMD EPYC (AVX-512), one thread, forward+backward: causal 146 ms and 450 ms, window 128 27.4 ms and
// 27.5 ms (5.3x and 16x; about 59 GFLOP/s of window work, the rate of the dense causal blocks).
// Peak: BM_FmaPeak runs a loop of independent SIMD fused multiply-adds (Eigen's widest float packet, 24
// accumulators: more than FMA latency x FMA units on current x86 cores) and reports one core's FMA peak in GFLOP/s;
// every MHA row's `of_peak` counter is its GFLOP/s over that peak (measured once per process, best of 5 runs of
// about 10 ms, before the first row; 257-272 GFLOP/s on the Zen 5 development machine: 2 x 512-bit FMA per cycle
// at about 4 GHz). need_weights=false rows (NotKept): the probabilities are not kept and backward
// computes them again; their counter counts the same nominal work as the kept rows (not the recomputation), so
// it compares the two modes' times directly.
// Run single-threaded for comparisons: OMP_NUM_THREADS=1 ./bench_multi_head_attention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"

using namespace seqattn;

namespace {

Tensor3<float> random_input(Index B, Index T, Index D, std::uint64_t seed) {
  Tensor3<float> x(B, T, D);
  Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

double forward_flops(Index B, Index T, Index D, Index H) {
  const double b = double(B), t = double(T), d = double(D), dh = double(D / H), h = double(H);
  return 2 * b * t * d * 3 * d + 2 * b * t * d * d + 4 * b * h * t * t * dh;
}

// fma_seconds(n): the wall time of n rounds of kAccumulators independent FMA chains of Eigen's widest float
// packet. The clock is read inside, and the loop's inputs and result pass through DoNotOptimize between the
// clock reads, so the compiler can move the loop neither before the first nor after the second (timed from
// outside, the call moved out of the timed region). The inner loop is unrolled so that the chains live in
// registers (a loop over the array kept them in memory: 75 GFLOP/s instead of 257 on Zen 5).
constexpr int kAccumulators = 24;
constexpr int kPacketFloats = Eigen::internal::unpacket_traits<Eigen::internal::packet_traits<float>::type>::size;
constexpr double kFmaFlopsPerRound = 2.0 * kAccumulators * kPacketFloats;

__attribute__((noinline)) double fma_seconds(long iterations) {
  namespace ei = Eigen::internal;
  using Packet = ei::packet_traits<float>::type;
  const auto start = std::chrono::steady_clock::now();
  Packet a = ei::pset1<Packet>(0.999999f), b = ei::pset1<Packet>(1e-7f);
  benchmark::DoNotOptimize(a);
  benchmark::DoNotOptimize(b);
  Packet acc[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) acc[i] = ei::pset1<Packet>(0.001f * float(i));
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < kAccumulators; ++i) acc[i] = ei::pmadd(acc[i], a, b);
  }
  Packet sum = acc[0];
  for (int i = 1; i < kAccumulators; ++i) sum = ei::padd(sum, acc[i]);
  float total = ei::predux(sum);
  benchmark::DoNotOptimize(total);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One core's FMA peak in flop/s: the best of 5 runs of about 10 ms (measured once).
double fma_peak() {
  static const double peak = [] {
    double best = 0;
    const long rounds = 2000000;
    for (int run = 0; run < 5; ++run) best = std::max(best, kFmaFlopsPerRound * double(rounds) / fma_seconds(rounds));
    return best;
  }();
  return peak;
}

void BM_FmaPeak(benchmark::State& state) {
  const long rounds = 100000;
  for (auto _ : state) benchmark::DoNotOptimize(fma_seconds(rounds));
  state.counters["GFLOP/s"] =
      benchmark::Counter(kFmaFlopsPerRound * double(rounds) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::to_string(kAccumulators) + " chains of " + std::to_string(kPacketFloats) + " floats");
}

enum class Kind { Forward, ForwardBackward };

void run(benchmark::State& state, Kind kind, bool causal, bool half_padded, Index window = 0, bool own_work = false,
         bool kept = true) {
  const Index B = state.range(0), T = state.range(1), D = state.range(2), H = state.range(3);
  const double peak = fma_peak();  // before the timing
  MultiHeadAttentionOptions options = MultiHeadAttentionOptions().causal(causal).need_weights(kept).seed(1);
  if (window > 0) options.attention_window(window);
  MultiHeadAttention<float> mha(D, H, options);
  const Tensor3<float> x = random_input(B, T, D, 2), dy = random_input(B, T, D, 3);
  Mask mask;
  if (half_padded) {
    std::vector<Index> lengths;
    for (Index b = 0; b < B; ++b) lengths.push_back(T / 2 + (b % 2) * (T / 4));
    mask = Mask::from_lengths(lengths);
  }
  mha.forward(x, mask, Mode::Train);  // warm-up: buffers allocated and paged in (B*H*T*T probabilities)
  if (kind == Kind::ForwardBackward) mha.backward(x, mask, dy);
  for (auto _ : state) {
    const Tensor3<float>& y = mha.forward(x, mask, Mode::Train);
    benchmark::DoNotOptimize(y.data());
    if (kind == Kind::ForwardBackward) {
      const Tensor3<float>& dx = mha.backward(x, mask, dy);
      benchmark::DoNotOptimize(dx.data());
    }
    benchmark::ClobberMemory();
  }
  double flops = forward_flops(B, T, D, H) * (kind == Kind::Forward ? 1.0 : 3.0);
  if (own_work) {  // the long rows: each run's own score work (see the file comment)
    const double keys = window > 0 ? double(std::min(window, T)) : double(T) / 2;
    flops = (forward_flops(B, T, D, H) - 4.0 * B * H * double(T) * double(T) * (D / H) +
             4.0 * B * H * double(T) * keys * (D / H)) *
            (kind == Kind::Forward ? 1.0 : 3.0);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_peak"] = benchmark::Counter(flops / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(causal ? "causal " : "") + (window > 0 ? "window " + std::to_string(window) + " " : "") +
                 (half_padded ? "padded " : "") + (kept ? "" : "not kept ") +
                 (kind == Kind::Forward ? "forward" : "forward+backward"));
}

void BM_MHA_Forward(benchmark::State& state) { run(state, Kind::Forward, false, false); }
void BM_MHA_ForwardBackward(benchmark::State& state) { run(state, Kind::ForwardBackward, false, false); }
void BM_MHA_ForwardNotKept(benchmark::State& state) { run(state, Kind::Forward, false, false, 0, false, false); }
void BM_MHA_ForwardBackwardNotKept(benchmark::State& state) {
  run(state, Kind::ForwardBackward, false, false, 0, false, false);
}
void BM_MHA_CausalForwardBackward(benchmark::State& state) { run(state, Kind::ForwardBackward, true, false); }
void BM_MHA_PaddedForwardBackward(benchmark::State& state) { run(state, Kind::ForwardBackward, false, true); }
void BM_MHA_LongCausalForwardBackward(benchmark::State& state) {
  run(state, Kind::ForwardBackward, true, false, 0, true);
}
void BM_MHA_LongWindowedForwardBackward(benchmark::State& state) {
  run(state, Kind::ForwardBackward, true, false, 128, true);
}
void long_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "D", "H"});
  b->Args({4, 2048, 64, 4})->Args({1, 8192, 64, 4});
  b->Unit(benchmark::kMillisecond)->MinTime(1.0);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "D", "H"});
  b->Args({32, 64, 64, 4})->Args({16, 256, 128, 8})->Args({4, 1024, 256, 8})->Args({1, 4096, 64, 4});
  b->Unit(benchmark::kMillisecond)->MinTime(1.0);
}

}  // namespace

BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MHA_Forward)->Apply(shapes);
BENCHMARK(BM_MHA_ForwardBackward)->Apply(shapes);
BENCHMARK(BM_MHA_ForwardNotKept)->Apply(shapes);
BENCHMARK(BM_MHA_ForwardBackwardNotKept)->Apply(shapes);
BENCHMARK(BM_MHA_CausalForwardBackward)
    ->ArgNames({"B", "T", "D", "H"})
    ->Args({4, 1024, 256, 8})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);
BENCHMARK(BM_MHA_PaddedForwardBackward)
    ->ArgNames({"B", "T", "D", "H"})
    ->Args({16, 256, 128, 8})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);
BENCHMARK(BM_MHA_LongCausalForwardBackward)->Apply(long_shapes);
BENCHMARK(BM_MHA_LongWindowedForwardBackward)->Apply(long_shapes);
