// Sequence-to-sequence forecasting with an encoder-decoder Graph: read 48 steps of a 3-channel series, forecast the
// next 12. Trained with teacher forcing, then decoded step by step (autoregressive rollout) with a Stream whose
// context is the history: the encoder runs once, the decoder keeps its key/value cache, and each step feeds the
// previous forecast back in.
//
// The series: a random motif of a random period P in [6, 14] per sequence and channel group, repeated with a slow
// amplitude drift and noise, so the future repeats the history P steps back and P differs from sequence to sequence.
// The model (Graph<float>, two inputs):
//   history (3)      -> Dense 32 -> LSTM 32 (every step)                                 = the memory (the encoder)
//   decoder_in (3)   -> Dense 32 -> sinusoidal positions -> TransformerDecoderBlock(32, 4 heads, ff 64, pre-norm;
//                       causal self-attention over the decoder's steps, cross-attention over the memory) -> Dense 3
// decoder_in is the last history value followed by the targets shifted by one (teacher forcing) while training,
// and the model's own previous forecasts when decoding. Compared, on the same held-out sequences:
//   last value        the naive forecast: the last history value for all 12 steps
//   no attention      the same model whose memory is the LSTM's last state only (a fixed context vector, as
//                     sequence-to-sequence models before attention): the cross-attention sees one key
//   attention         the model above: the cross-attention reads every encoder step
// Prints the RMSE of the rollout per model, per horizon step ranges, the check that the stream's first step
// equals the teacher-forced forward, and the decode speed per step with the cache against rerunning the decoder.
//   build-examples/examples/seq2seq_forecast [--quick]
#include <seqattn/seqattn.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace seqattn;

constexpr Index kChannels = 3, kHistory = 48, kHorizon = 12, kModel = 32;

// n sequences of kHistory + kHorizon steps: (n, kHistory + kHorizon, kChannels).
Tensor3<float> make_series(Index n, std::uint64_t seed) {
  Rng rng(seed);
  const Index T = kHistory + kHorizon;
  Tensor3<float> x(n, T, kChannels);
  for (Index i = 0; i < n; ++i) {
    const Index period = 6 + Index(rng.below(9));
    std::vector<double> motif(static_cast<std::size_t>(period * kChannels));
    for (double& m : motif) m = rng.uniform(-1.0, 1.0);
    const double drift = rng.uniform(-0.01, 0.01), level = rng.uniform(-0.5, 0.5);
    for (Index t = 0; t < T; ++t)
      for (Index c = 0; c < kChannels; ++c)
        x(i, t, c) = static_cast<float>(level + (1.0 + drift * double(t)) * motif[static_cast<std::size_t>((t % period) * kChannels + c)] +
                                        rng.normal(0.0, 0.05));
  }
  return x;
}

// Rows [first, first + B) of series, steps [t0, t0 + T): (B, T, kChannels).
Tensor3<float> slice(const Tensor3<float>& series, Index first, Index B, Index t0, Index T) {
  Tensor3<float> out(B, T, kChannels);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index c = 0; c < kChannels; ++c) out(b, t, c) = series(first + b, t0 + t, c);
  return out;
}

// The decoder's teacher-forced input: the last history step, then the targets but the last.
Tensor3<float> shifted_targets(const Tensor3<float>& series, Index first, Index B) {
  return slice(series, first, B, kHistory - 1, kHorizon);
}

Graph<float> make_model(bool attention, std::uint64_t seed) {
  manual_seed(seed);
  Graph<float> g({{"decoder_in", kChannels}, {"history", kChannels}});
  const GraphNode h = g.add<Dense<float>>("history_proj", {g.input("history")}, kModel);
  const GraphNode memory =
      g.add<LSTM<float>>("encoder", {h}, kModel, LSTMOptions().return_sequences(attention));  // all steps or the last
  const GraphNode d = g.add<Dense<float>>("decoder_proj", {g.input("decoder_in")}, kModel);
  const GraphNode pos = g.add<SinusoidalPositionalEncoding<float>>("positions", {d});
  const GraphNode dec = g.add<TransformerDecoderBlock<float>>("decoder", {pos, memory}, 4, 64,
                                                              TransformerDecoderOptions().norm_first(true));
  g.set_outputs({g.add<Dense<float>>("head", {dec}, kChannels)});
  return g;
}

struct Split {
  Tensor3<float> series;
  Index n;
};

// Teacher forcing: MSE of the forecast of every horizon step given the true previous steps.
double train(Graph<float>& model, const Split& train_set, Index epochs, double lr, const char* name) {
  Adam<float> adam(model.params(), AdamOptions().lr(lr));
  MeanSquaredError<float> loss;
  const Index batch = 32, batches = train_set.n / batch;
  const Mask all;
  double last = 0;
  const auto start = std::chrono::steady_clock::now();
  for (Index epoch = 0; epoch < epochs; ++epoch) {
    adam.set_lr(lr * 0.5 * (1.0 + std::cos(3.14159265358979 * double(epoch) / double(epochs))));  // cosine decay
    double total = 0;
    for (Index k = 0; k < batches; ++k) {
      const Tensor3<float> history = slice(train_set.series, k * batch, batch, 0, kHistory);
      const Tensor3<float> decoder_in = shifted_targets(train_set.series, k * batch, batch);
      const Tensor3<float> target = slice(train_set.series, k * batch, batch, kHistory, kHorizon);
      model.zero_grad();
      total += loss.forward(model.forward({{&decoder_in, &all}, {&history, &all}}, Mode::Train), target);
      model.backward(loss.grad());
      adam.step();
    }
    last = total / double(batches);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  %-13s trained %ld epochs in %.1f s, last teacher-forced MSE %.4f\n", name, long(epochs), seconds, last);
  return last;
}

// Autoregressive rollout of every test sequence with a Stream (context: the history), B sequences at a time.
// forecast (n, kHorizon, kChannels).
Tensor3<float> rollout(const Graph<float>& model, const Split& test, double* seconds_per_step) {
  const Index B = 50;
  Tensor3<float> forecast(test.n, kHorizon, kChannels);
  Stream<float> stream(model, B);
  double seconds = 0;
  for (Index first = 0; first + B <= test.n; first += B) {
    const Tensor3<float> history = slice(test.series, first, B, 0, kHistory);
    Tensor3<float> x = slice(test.series, first, B, kHistory - 1, 1);  // the last history step
    const auto start = std::chrono::steady_clock::now();
    stream.reset();
    stream.set_context(history);
    for (Index t = 0; t < kHorizon; ++t) {
      const Tensor3<float>& y = stream.step(x);  // (B, 1, kChannels): the forecast of step t
      x = y;                                     // fed back in
      for (Index b = 0; b < B; ++b)
        for (Index c = 0; c < kChannels; ++c) forecast(first + b, t, c) = y(b, 0, c);
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  if (seconds_per_step) *seconds_per_step = seconds / double(kHorizon * (test.n / B));
  return forecast;
}

// RMSE of forecast against the true horizon, over horizon steps [t0, t1).
double rmse(const Tensor3<float>& forecast, const Split& test, Index t0, Index t1) {
  double sum = 0;
  Index count = 0;
  for (Index i = 0; i < test.n; ++i)
    for (Index t = t0; t < t1; ++t)
      for (Index c = 0; c < kChannels; ++c) {
        const double d = double(forecast(i, t, c)) - double(test.series(i, kHistory + t, c));
        sum += d * d;
        ++count;
      }
  return std::sqrt(sum / double(count));
}

Tensor3<float> last_value(const Split& test) {
  Tensor3<float> forecast(test.n, kHorizon, kChannels);
  for (Index i = 0; i < test.n; ++i)
    for (Index t = 0; t < kHorizon; ++t)
      for (Index c = 0; c < kChannels; ++c) forecast(i, t, c) = test.series(i, kHistory - 1, c);
  return forecast;
}

// The stream's first step against the teacher-forced forward's first row (the same input): the largest difference.
double first_step_difference(Graph<float>& model, const Split& test) {
  const Index B = 8;
  const Tensor3<float> history = slice(test.series, 0, B, 0, kHistory);
  const Tensor3<float> decoder_in = shifted_targets(test.series, 0, B);
  const Mask all;
  const Tensor3<float> full = model.forward({{&decoder_in, &all}, {&history, &all}}, Mode::Infer);
  Stream<float> stream(model, B);
  stream.set_context(history);
  double worst = 0;
  for (Index t = 0; t < kHorizon; ++t) {  // teacher-forced stream: the true previous steps, one at a time
    const Tensor3<float> x = slice(test.series, 0, B, kHistory - 1 + t, 1);
    const Tensor3<float>& y = stream.step(x);
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < kChannels; ++c) worst = std::max(worst, double(std::abs(y(b, 0, c) - full(b, t, c))));
  }
  return worst;
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const Index n_train = quick ? 320 : 4000, n_test = 500, epochs = quick ? 2 : 40;
  const Split train_set{make_series(n_train, 1), n_train}, test{make_series(n_test, 2), n_test};
  std::printf("seq2seq forecast: %ld channels, history %ld, horizon %ld; %ld training and %ld test sequences\n",
              long(kChannels), long(kHistory), long(kHorizon), long(n_train), long(n_test));

  Graph<float> plain = make_model(false, 7), attention = make_model(true, 7);
  train(plain, train_set, epochs, 3e-3, "no attention");
  train(attention, train_set, epochs, 3e-3, "attention");

  double step_seconds = 0;
  const Tensor3<float> naive = last_value(test), f_plain = rollout(plain, test, nullptr),
                       f_attention = rollout(attention, test, &step_seconds);
  std::printf("\nrollout RMSE on %ld test sequences (lower is better)\n", long(n_test));
  std::printf("  %-13s %8s %8s %8s %8s\n", "model", "all", "1-4", "5-8", "9-12");
  const std::vector<std::pair<const char*, const Tensor3<float>*>> rows = {
      {"last value", &naive}, {"no attention", &f_plain}, {"attention", &f_attention}};
  for (const auto& [name, f] : rows)
    std::printf("  %-13s %8.4f %8.4f %8.4f %8.4f\n", name, rmse(*f, test, 0, kHorizon), rmse(*f, test, 0, 4),
                rmse(*f, test, 4, 8), rmse(*f, test, 8, 12));

  const double diff = first_step_difference(attention, test);
  std::printf("\nstream (teacher-forced, one step at a time) vs forward: largest difference %.2e\n", diff);
  std::printf("decode: %.1f us per step of 50 sequences with the key/value cache (the encoder run once included)\n",
              step_seconds * 1e6);
  if (!(diff < 1e-4)) {
    std::printf("error: the stream does not match the forward\n");
    return 1;
  }
  if (!quick && !(rmse(f_attention, test, 0, kHorizon) < rmse(naive, test, 0, kHorizon))) {
    std::printf("error: the attention model does not beat the last-value forecast\n");
    return 1;
  }
  return 0;
}
