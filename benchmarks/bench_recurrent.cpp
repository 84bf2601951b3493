// LSTM, GRU and Bidirectional(LSTM) <float>, forward and forward + backward, return_sequences=true, at the
// (B, T, F, U) shapes of compare_libtorch's LSTM rows: (32, 64, 32, 64), (16, 128, 64, 128), (1, 256, 32, 64);
// also LSTM on a padded batch (lengths T/2 .. T: steps after a sequence's length are skipped for it).
// GFLOP counts the products only (gate arithmetic is a few flops per value, not counted), G = 4 (LSTM) or 3:
//   forward  = 2*B*T*F*G*U (input projection) + 2*B*T*U*G*U (recurrent products)
//   backward = 2 x forward (dx, dW; dh, dK),  so forward + backward = 3 x forward;  Bidirectional: 2 x LSTM.
#include <vector>

#include "bench_common.hpp"
#include "seqattn/layers/bidirectional.hpp"

using namespace seqattn;
using seqattn_bench::random_input;
using seqattn_bench::run_layer;

namespace {

enum class Cell { LSTM, GRU, BiLSTM };

void run(benchmark::State& state, Cell cell, bool backward, bool padded) {
  const Index B = state.range(0), T = state.range(1), F = state.range(2), U = state.range(3);
  std::unique_ptr<Layer<float>> layer;
  if (cell == Cell::LSTM) layer = std::make_unique<LSTM<float>>(F, U, LSTMOptions().return_sequences(true).seed(1));
  if (cell == Cell::GRU) layer = std::make_unique<GRU<float>>(F, U, GRUOptions().return_sequences(true).seed(1));
  if (cell == Cell::BiLSTM)
    layer = std::make_unique<Bidirectional<float>>(F, U, LSTMOptions().return_sequences(true).seed(1));
  Mask mask;
  if (padded) {
    std::vector<Index> lengths;
    for (Index b = 0; b < B; ++b) lengths.push_back(T / 2 + (T / 2) * b / (B > 1 ? B - 1 : 1));
    mask = Mask::from_lengths(lengths);
  }
  const double G = cell == Cell::GRU ? 3 : 4;
  const double fwd = 2.0 * double(B * T) * G * double(U) * double(F + U) * (cell == Cell::BiLSTM ? 2 : 1);
  run_layer(state, *layer, random_input(B, T, F, 1), mask, backward, backward ? 3 * fwd : fwd);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "F", "U"});
  b->Args({32, 64, 32, 64})->Args({16, 128, 64, 128})->Args({1, 256, 32, 64});
  b->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK_CAPTURE(run, LSTM_Forward, Cell::LSTM, false, false)->Apply(shapes);
BENCHMARK_CAPTURE(run, LSTM_ForwardBackward, Cell::LSTM, true, false)->Apply(shapes);
BENCHMARK_CAPTURE(run, LSTM_PaddedForwardBackward, Cell::LSTM, true, true)->Apply(shapes);
BENCHMARK_CAPTURE(run, GRU_Forward, Cell::GRU, false, false)->Apply(shapes);
BENCHMARK_CAPTURE(run, GRU_ForwardBackward, Cell::GRU, true, false)->Apply(shapes);
BENCHMARK_CAPTURE(run, BiLSTM_ForwardBackward, Cell::BiLSTM, true, false)->Apply(shapes);
