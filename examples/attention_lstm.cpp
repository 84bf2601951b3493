// keras-attention-mechanism's attention_lstm experiment: inputs (20 steps, 2 features) are standard normal
// noise except step 10, which holds the binary label; attention_3d_block (here TemporalAttention with one
// shared attention vector, SINGLE_ATTENTION_VECTOR) is applied BEFORE an LSTM(32) or AFTER an
// LSTM(32, return_sequences) (then averaged over time: Keras flattens, mean pooling keeps the model small),
// followed by Dense(1) with a sigmoid (binary cross-entropy on logits). Prints the test accuracy of both
// models and writes the attention over time, averaged over the test set, to attention_lstm_<where>.csv and
// .png: before the LSTM it should peak at step 10.
#include <cstdio>
#include <string>
#include <vector>

#include "seqattn/seqattn.hpp"
#include "time_series_classifier/heatmap.hpp"

using namespace seqattn;

constexpr Index kSteps = 20, kFeatures = 2, kColumn = 10;

void make_data(Index n, Rng& rng, Tensor3<float>& x, Tensor3<float>& y) {
  x.resize(n, kSteps, kFeatures);
  y.resize(n, 1, 1);
  for (Index i = 0; i < n; ++i) {
    y(i, 0, 0) = float(rng.below(2));
    for (Index t = 0; t < kSteps; ++t)
      for (Index f = 0; f < kFeatures; ++f) x(i, t, f) = t == kColumn ? y(i, 0, 0) : float(rng.normal());
  }
}

void experiment(bool before) {
  const std::string where = before ? "before" : "after";
  Sequential<float> model(kFeatures);
  const auto shared = TemporalAttentionOptions().shared(true);
  if (before) {
    model.add<TemporalAttention<float>>(kSteps, shared);
    model.add<LSTM<float>>(32);  // return_sequences false: (B, 1, 32)
  } else {
    model.add<LSTM<float>>(32, LSTMOptions().return_sequences(true));
    model.add<TemporalAttention<float>>(kSteps, shared);
    model.add<GlobalAvgPool<float>>();
  }
  model.add<Dense<float>>(1);
  Rng rng(before ? 1 : 2);
  Tensor3<float> x, y, xb(64, kSteps, kFeatures), yb(64, 1, 1);
  make_data(4096, rng, x, y);
  BinaryCrossEntropy<float> loss;
  Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
  for (int epoch = 0; epoch < 3; ++epoch)
    for (Index start = 0; start + 64 <= x.dimension(0); start += 64) {
      for (Index i = 0; i < 64; ++i) {
        yb(i, 0, 0) = y(start + i, 0, 0);
        for (Index t = 0; t < kSteps; ++t)
          for (Index f = 0; f < kFeatures; ++f) xb(i, t, f) = x(start + i, t, f);
      }
      model.zero_grad();
      loss.forward(model.forward(xb, Mask(), Mode::Train), yb);
      model.backward(loss.grad());
      adam.step();
    }

  Tensor3<float> xt, yt;
  make_data(1000, rng, xt, yt);
  const Tensor3<float>& logits = model.predict(xt);
  double correct = 0;
  for (Index i = 0; i < 1000; ++i) correct += (logits(i, 0, 0) > 0) == (yt(i, 0, 0) > 0.5f);
  // Attention vector: a (B, T, F), the same over features (shared); mean over the test set.
  const Tensor3<float>& a = model.layer_as<TemporalAttention<float>>(before ? 0 : 1).attention();
  Matrix<float> vec = Matrix<float>::Zero(1, kSteps);
  for (Index i = 0; i < 1000; ++i)
    for (Index t = 0; t < kSteps; ++t) vec(0, t) += a(i, t, 0) / 1000.0f;
  std::vector<std::vector<double>> rows;
  Index peak = 0;
  for (Index t = 0; t < kSteps; ++t) {
    rows.push_back({double(t), double(vec(0, t))});
    if (vec(0, t) > vec(0, peak)) peak = t;
  }
  tsc::write_csv("attention_lstm_" + where + ".csv", "step,attention", rows);
  tsc::write_png("attention_lstm_" + where + ".png", tsc::render_heatmap(vec, 16, 0, vec.maxCoeff()));
  std::printf("attention %s the LSTM: test accuracy %.3f, attention peak at step %ld (%.3f; uniform %.3f, "
              "step %ld holds the label); wrote attention_lstm_%s.csv and .png\n",
              where.c_str(), correct / 1000.0, long(peak), vec(0, peak), 1.0 / kSteps, long(kColumn), where.c_str());
}

int main() {
  manual_seed(3);
  experiment(true);
  experiment(false);
  return 0;
}
