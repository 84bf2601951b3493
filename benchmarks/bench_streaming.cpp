// Streaming inference (model/stream.hpp) against what a user without streams must do: predict over the last
// window for every new sample. Float, one thread. Compare rows of one run:
//   BM_Classifier_PredictLast128 / BM_Classifier_StreamStep     one new step of one stream: the example classifier
//       made causal (Dense 8 -> 64, sinusoidal positions, MultiHeadAttention 4 heads causal with
//       attention_window 128, LayerNorm, running GlobalMaxPool, Dense 2); the stream has seen 1,000 steps;
//       the predict runs over the last 128 steps, as a user without a cache must (target: 50x, < 10 us)
//   BM_Classifier_StreamStep_Batch (B = 256 streams stepping together) against
//   BM_Classifier_StreamStep_OneAtATime (256 streams of B = 1 stepped one after the other): per-stream throughput
//       (items/s = stream-steps per second; target 8x). Both at attention_window 128 (the model) and 16:
//       the per-stream cache (64 KiB at 128) is read whole at every step in both modes, and only the weight
//       products are shared by a batch, so the gain of batching shrinks as the window grows.
//   BM_Classifier_StreamChunk (one step of n = 64, per step) against BM_Classifier_StreamStep: prefill
//   BM_LSTM_StreamStep (F = 32, U = 64; target < 2 us), BM_Conv1D_StreamStep (causal, F = 32, 32 filters,
//   kernel 3; target < 3 us), BM_SeqSelfAttention_StreamStep (additive, width 32, units 32, F = 32; < 3 us)
// The streams are stepped forever; the attention caches are windows, so every step costs the same.
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "classifier_model.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/sequential.hpp"

namespace {

using namespace seqattn_bench;
using seqattn::Sequential;
using seqattn::Stream;

constexpr Index kWindow = 128, kWarmup = 1000;

Sequential<float> causal_classifier(Index window = kWindow) {
  ClassifierShape shape;
  shape.causal_window = window;
  return make_classifier(shape);
}

// Steps `stream` kWarmup times with chunks of 100 (so every cache is full).
void warm_up(Stream<float>& stream, Index features) {
  const Tensor3<float> chunk = random_input(stream.batch(), 100, features, 5);
  for (Index done = 0; done < kWarmup; done += 100) stream.step(chunk);
}

// Steps one stream per iteration with a fresh sample (B, 1, F).
void step_forever(benchmark::State& state, Stream<float>& stream, Index features) {
  const Tensor3<float> samples = random_input(stream.batch(), 64, features, 6);
  Tensor3<float> x(stream.batch(), 1, features);
  Index k = 0;
  for (auto _ : state) {
    for (Index b = 0; b < stream.batch(); ++b)
      for (Index f = 0; f < features; ++f) x(b, 0, f) = samples(b, k % 64, f);
    ++k;
    const Tensor3<float>& y = stream.step(x);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * stream.batch());
  state.SetLabel(std::to_string(stream.state_bytes() / stream.batch()) + " state bytes per stream");
}

void BM_Classifier_PredictLast128(benchmark::State& state) {
  Sequential<float> model = causal_classifier();
  const Tensor3<float> x = random_input(1, kWindow, 8, 7);
  for (auto _ : state) {
    const Tensor3<float>& y = model.predict(x);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Classifier_PredictLast128)->Unit(benchmark::kMicrosecond);

void BM_Classifier_StreamStep(benchmark::State& state) {
  const Sequential<float> model = causal_classifier();
  Stream<float> stream = model.stream(1);
  warm_up(stream, 8);
  step_forever(state, stream, 8);
}
BENCHMARK(BM_Classifier_StreamStep)->Unit(benchmark::kMicrosecond);

void BM_Classifier_StreamStep_Batch(benchmark::State& state) {
  const Sequential<float> model = causal_classifier(state.range(0));
  Stream<float> stream = model.stream(256);
  warm_up(stream, 8);
  step_forever(state, stream, 8);
}
BENCHMARK(BM_Classifier_StreamStep_Batch)->ArgName("window")->Arg(kWindow)->Arg(16)->Unit(benchmark::kMicrosecond);

void BM_Classifier_StreamStep_OneAtATime(benchmark::State& state) {
  const Sequential<float> model = causal_classifier(state.range(0));
  std::vector<std::unique_ptr<Stream<float>>> streams;
  for (int b = 0; b < 256; ++b) {
    streams.push_back(std::make_unique<Stream<float>>(model.stream(1)));
    warm_up(*streams.back(), 8);
  }
  const Tensor3<float> x = random_input(1, 1, 8, 8);
  for (auto _ : state) {
    for (auto& s : streams) benchmark::DoNotOptimize(s->step(x).data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 256);
}
BENCHMARK(BM_Classifier_StreamStep_OneAtATime)
    ->ArgName("window")
    ->Arg(kWindow)
    ->Arg(16)
    ->Unit(benchmark::kMicrosecond);

// One chunk of 64 steps per iteration, reported per step (items).
void BM_Classifier_StreamChunk(benchmark::State& state) {
  const Sequential<float> model = causal_classifier();
  Stream<float> stream = model.stream(1);
  warm_up(stream, 8);
  const Tensor3<float> x = random_input(1, 64, 8, 9);
  for (auto _ : state) {
    benchmark::DoNotOptimize(stream.step(x).data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 64);
}
BENCHMARK(BM_Classifier_StreamChunk)->Unit(benchmark::kMicrosecond);

void BM_LSTM_StreamStep(benchmark::State& state) {
  Sequential<float> model(32);
  model.add<seqattn::LSTM<float>>(64, seqattn::LSTMOptions().return_sequences(true).seed(1));
  Stream<float> stream = model.stream(1);
  warm_up(stream, 32);
  step_forever(state, stream, 32);
}
BENCHMARK(BM_LSTM_StreamStep)->Unit(benchmark::kMicrosecond);

void BM_Conv1D_StreamStep(benchmark::State& state) {
  Sequential<float> model(32);
  model.add<seqattn::Conv1D<float>>(32, 3, seqattn::Conv1DOptions().padding(seqattn::Padding::Causal).seed(1));
  Stream<float> stream = model.stream(1);
  warm_up(stream, 32);
  step_forever(state, stream, 32);
}
BENCHMARK(BM_Conv1D_StreamStep)->Unit(benchmark::kMicrosecond);

void BM_SeqSelfAttention_StreamStep(benchmark::State& state) {
  Sequential<float> model(32);
  model.add<seqattn::SeqSelfAttention<float>>(
      seqattn::SeqSelfAttentionOptions().history_only(true).attention_width(32).units(32).seed(1));
  Stream<float> stream = model.stream(1);
  warm_up(stream, 32);
  step_forever(state, stream, 32);
}
BENCHMARK(BM_SeqSelfAttention_StreamStep)->Unit(benchmark::kMicrosecond);

}  // namespace
