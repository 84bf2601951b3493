// Dense, Conv1D and the activation layer: forward (Infer) and forward + backward (Train), float, one thread.
// Nominal flops per iteration (N = B*T rows):
//   Dense(in -> out)                 forward 2*N*in*out, + backward 4*N*in*out (dW and dx)
//   Conv1D(in -> filters, kernel k)  forward 2*N_out*k*in*filters, + backward twice that (stride 1, 'same')
//   ActivationLayer(gelu)            forward 20 per value (erf), + backward 20 per value (nominal)
#include "bench_common.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"

namespace {

using namespace seqattn_bench;

// Args: B, T, in, out
void dense(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), in = state.range(2), out = state.range(3);
  seqattn::Dense<float> layer(in, out, seqattn::DenseOptions().seed(1));
  const double fwd = 2.0 * static_cast<double>(B * T * in * out);
  run_layer(state, layer, random_input(B, T, in, 2), Mask(), backward, backward ? 3 * fwd : fwd);
}
void BM_Dense_Forward(benchmark::State& state) { dense(state, false); }
void BM_Dense_ForwardBackward(benchmark::State& state) { dense(state, true); }

void dense_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "in", "out"});
  for (const auto& a : std::vector<std::vector<int64_t>>{
           {1, 128, 64, 64}, {32, 128, 64, 64}, {32, 128, 256, 256}, {8, 1024, 128, 512}})
    b->Args(a);
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_Dense_Forward)->Apply(dense_shapes);
BENCHMARK(BM_Dense_ForwardBackward)->Apply(dense_shapes);

// Args: B, T, in, filters, kernel
void conv1d(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), in = state.range(2), filters = state.range(3),
              k = state.range(4);
  seqattn::Conv1D<float> layer(in, filters, k,
                               seqattn::Conv1DOptions().padding(seqattn::Padding::Same).seed(1));
  const double fwd = 2.0 * static_cast<double>(B * T * k * in * filters);
  run_layer(state, layer, random_input(B, T, in, 2), Mask(), backward, backward ? 3 * fwd : fwd);
}
void BM_Conv1D_Forward(benchmark::State& state) { conv1d(state, false); }
void BM_Conv1D_ForwardBackward(benchmark::State& state) { conv1d(state, true); }

void conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "in", "filters", "kernel"});
  for (const auto& a : std::vector<std::vector<int64_t>>{
           {32, 128, 64, 64, 3}, {32, 128, 64, 64, 7}, {1, 1024, 32, 32, 5}, {8, 512, 128, 128, 3}})
    b->Args(a);
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_Conv1D_Forward)->Apply(conv_shapes);
BENCHMARK(BM_Conv1D_ForwardBackward)->Apply(conv_shapes);

// Args: B, T, F
void gelu(benchmark::State& state, bool backward) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2);
  seqattn::ActivationLayer<float> layer(F, seqattn::Activation::GELU);
  const double fwd = 20.0 * static_cast<double>(B * T * F);
  run_layer(state, layer, random_input(B, T, F, 2), Mask(), backward, backward ? 2 * fwd : fwd);
}
void BM_GELU_Forward(benchmark::State& state) { gelu(state, false); }
void BM_GELU_ForwardBackward(benchmark::State& state) { gelu(state, true); }

void elementwise_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "F"})->Args({32, 128, 64})->Args({8, 1024, 256});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_GELU_Forward)->Apply(elementwise_shapes);
BENCHMARK(BM_GELU_ForwardBackward)->Apply(elementwise_shapes);

}  // namespace
