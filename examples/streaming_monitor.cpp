// Streaming monitor: train a small causal model to flag events in a sensor signal, then run it on a live stream
// one sample at a time with seqattn::Stream, as a service would, and report what it detected and how long each
// sample took.
//
// The sensor: a slow oscillation with a drifting level and noise. Events: a burst of fast oscillation that
// decays over 12 samples, at random times. The model sees only the samples up to now (causal) and outputs, for
// every sample, the logit of "an event is going on":
//   Conv1D(16, kernel 8, causal, ReLU) -> SeqSelfAttention(history_only, attention_width 32) -> LayerNorm
//   -> Dense(16, ReLU) -> Dense(1)
// trained on windows of 128 samples with per-sample binary cross-entropy and Adam. Then a stream of 20,000
// samples is fed one sample per step (Stream<float>::step with x of shape (1, 1, 1)): each step costs one new
// row of every layer (the attention keeps a ring buffer of its last 32 keys and values) instead of a predict
// over the last window. The program checks the stream against predict on the first window, prints every event
// it detected (with the delay after the event began), missed events and false alarms, and the latency
// percentiles of a step.
//   ./build.sh streaming            (or: build-examples/examples/streaming_monitor [--quick])
#include <seqattn/seqattn.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace seqattn;

constexpr Index kEventLength = 12;

// A sensor signal of n samples and its labels (1 while an event goes on).
struct Signal {
  std::vector<float> value, label;
  std::vector<Index> event_starts;
};

Signal make_signal(Index n, std::uint64_t seed) {
  Rng rng(seed);
  Signal s;
  s.value.resize(static_cast<size_t>(n));
  s.label.assign(static_cast<size_t>(n), 0.0f);
  double level = 0;
  Index next_event = 40 + static_cast<Index>(rng.below(200));
  for (Index t = 0; t < n; ++t) {
    level = 0.995 * level + rng.normal(0, 0.02);
    s.value[static_cast<size_t>(t)] =
        static_cast<float>(std::sin(6.283185307 * double(t) / 40.0) + level + rng.normal(0, 0.15));
    if (t == next_event) {
      s.event_starts.push_back(t);
      const double amplitude = rng.uniform(0.8, 1.6);
      for (Index k = 0; k < kEventLength && t + k < n; ++k) {
        s.value[static_cast<size_t>(t + k)] +=
            static_cast<float>(amplitude * std::exp(-0.15 * double(k)) * std::sin(6.283185307 * double(k) / 4.0 + 0.7));
        s.label[static_cast<size_t>(t + k)] = 1.0f;
      }
      next_event = t + kEventLength + 30 + static_cast<Index>(rng.below(250));
    }
  }
  return s;
}

Sequential<float> make_model() {
  Sequential<float> model(1);
  model.add<Conv1D<float>>(16, 8, Conv1DOptions().padding(Padding::Causal).activation(Activation::ReLU));
  model.add<SeqSelfAttention<float>>(
      SeqSelfAttentionOptions().history_only(true).attention_width(32).units(16).attention_activation(
          Activation::Tanh));
  model.add<LayerNorm<float>>();
  model.add<Dense<float>>(16, Activation::ReLU);
  model.add<Dense<float>>(1);
  return model;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * double(v.size() - 1))];
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  manual_seed(7);
  const Index window = 128, batch = 16, iterations = quick ? 60 : 2000, stream_length = quick ? 3000 : 20000;

  // 1. Train on random windows of a long training signal.
  Sequential<float> model = make_model();
  std::printf("%s", model.summary(window).c_str());
  const Signal train = make_signal(200000, 1);
  BinaryCrossEntropy<float> loss;
  Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
  Rng pick(3);
  Tensor3<float> x(batch, window, 1), y(batch, window, 1);
  for (Index it = 1; it <= iterations; ++it) {
    for (Index b = 0; b < batch; ++b) {
      const Index start = static_cast<Index>(pick.below(static_cast<std::uint64_t>(train.value.size() - window)));
      for (Index t = 0; t < window; ++t) {
        x(b, t, 0) = train.value[static_cast<size_t>(start + t)];
        y(b, t, 0) = train.label[static_cast<size_t>(start + t)];
      }
    }
    model.zero_grad();
    const float l = loss.forward(model.forward(x, Mask(), Mode::Train), y);
    model.backward(loss.grad());
    adam.step();
    if (it % (iterations / 6) == 0) std::printf("training step %4ld  loss %.4f\n", static_cast<long>(it), l);
  }

  // 2. The stream: one sample per step.
  const Signal live = make_signal(stream_length, 2);
  Stream<float> stream = model.stream(1);
  std::printf("\nstream state: %zu bytes per stream\n", stream.state_bytes());
  Tensor3<float> sample(1, 1, 1);
  std::vector<float> logits(static_cast<size_t>(stream_length));
  std::vector<double> micros;
  micros.reserve(static_cast<size_t>(stream_length));
  for (Index t = 0; t < stream_length; ++t) {
    sample(0, 0, 0) = live.value[static_cast<size_t>(t)];
    const auto begin = std::chrono::steady_clock::now();
    const Tensor3<float>& out = stream.step(sample);
    const auto end = std::chrono::steady_clock::now();
    logits[static_cast<size_t>(t)] = out(0, 0, 0);
    micros.push_back(std::chrono::duration<double, std::micro>(end - begin).count());
  }

  // The stream gives what predict gives over the same samples.
  Tensor3<float> first(1, window, 1);
  for (Index t = 0; t < window; ++t) first(0, t, 0) = live.value[static_cast<size_t>(t)];
  const Tensor3<float>& full = model.predict(first);
  double max_difference = 0;
  for (Index t = 0; t < window; ++t)
    max_difference = std::max(max_difference, double(std::abs(full(0, t, 0) - logits[static_cast<size_t>(t)])));
  std::printf("stream against predict over the first %ld samples: largest difference %.2e\n", static_cast<long>(window),
              max_difference);

  // 3. Detections: an event is found when the logit turns positive during it (the delay counts from its first
  // sample); a false alarm is a run of positive logits that starts outside every event.
  Index found = 0, false_alarms = 0, printed = 0;
  std::vector<Index> delays;
  std::vector<bool> in_event(static_cast<size_t>(stream_length), false);
  for (Index start : live.event_starts) {
    for (Index t = start; t < std::min(start + kEventLength, stream_length); ++t)
      in_event[static_cast<size_t>(t)] = true;
    for (Index t = start; t < std::min(start + kEventLength, stream_length); ++t)
      if (logits[static_cast<size_t>(t)] > 0) {
        ++found;
        delays.push_back(t - start);
        if (printed++ < 8)
          std::printf("  sample %6ld: event detected, %ld samples after it began\n", static_cast<long>(t),
                      static_cast<long>(t - start));
        break;
      }
  }
  for (Index t = 0; t < stream_length; ++t)
    if (logits[static_cast<size_t>(t)] > 0 && (t == 0 || logits[static_cast<size_t>(t - 1)] <= 0) &&
        !in_event[static_cast<size_t>(t)])
      ++false_alarms;
  const Index events = static_cast<Index>(live.event_starts.size());
  std::sort(delays.begin(), delays.end());
  std::printf("events: %ld, detected %ld (%.1f%%), missed %ld, false alarms %ld; median delay %ld samples\n",
              static_cast<long>(events), static_cast<long>(found),
              100.0 * double(found) / double(std::max<Index>(events, 1)), static_cast<long>(events - found),
              static_cast<long>(false_alarms), static_cast<long>(delays.empty() ? -1 : delays[delays.size() / 2]));
  std::printf("latency of one step (one sample): p50 %.2f us, p99 %.2f us, max %.2f us over %ld steps\n",
              percentile(micros, 0.5), percentile(micros, 0.99), percentile(micros, 1.0),
              static_cast<long>(stream_length));
  if (max_difference > 1e-3) {
    std::printf("error: the stream differs from predict\n");
    return 1;
  }
  return 0;
}
