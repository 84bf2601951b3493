// The keras-self-attention README model: Embedding(mask_zero) -> Bidirectional(LSTM(return_sequences)) ->
// SeqSelfAttention(attention_activation='sigmoid') -> Dense, a per-step classifier, on a synthetic tagging task:
// each sequence (6 to 16 tokens, zero-padded) hides one signal token 1..5 among noise tokens 6..19, and EVERY
// step must be tagged with that signal's class. The LSTM has 2 units per direction (the README has 128), too
// few to carry the class along the sequence, so each step has to find the signal by attention. Runs the
// README's sigmoid attention activation and a linear one: a sigmoid bounds the scores to (0, 1), so softmax
// weights differ by at most a factor e and cannot single out one step. Prints the test accuracy (per valid
// step) and the mean attention on the signal step, and writes the attention of test sequence 0 to
// bilstm_attention_<activation>.csv / .png (top row: the signal's position; below: query x key steps).
#include <cstdio>
#include <string>
#include <vector>

#include "seqattn/seqattn.hpp"
#include "time_series_classifier/heatmap.hpp"

using namespace seqattn;

struct Batch {
  Tensor3<float> ids;       // (B, T, 1), 0 = padding
  std::vector<int> labels;  // (B*T), -1 at padding
  std::vector<Index> signal_at;
};

Batch make_batch(Index B, Index T, Rng& rng) {
  Batch d{Tensor3<float>(B, T, 1), std::vector<int>(size_t(B * T), -1), {}};
  d.ids.setZero();
  for (Index b = 0; b < B; ++b) {
    const Index len = 6 + Index(rng.below(T - 5)), at = Index(rng.below(std::uint64_t(len)));
    const int cls = int(rng.below(5));
    for (Index t = 0; t < len; ++t) {
      d.ids(b, t, 0) = t == at ? float(1 + cls) : float(6 + rng.below(14));
      d.labels[size_t(b * T + t)] = cls;
    }
    d.signal_at.push_back(at);
  }
  return d;
}

void run(Activation activation) {
  manual_seed(1);
  const Index T = 16, B = 32;
  Sequential<float> model(1);
  model.add<Embedding<float>>(20, 16, EmbeddingOptions().mask_zero(true));
  model.add<Bidirectional<float>>(2, LSTMOptions().return_sequences(true));  // -> (B, T, 4)
  model.add<SeqSelfAttention<float>>(SeqSelfAttentionOptions().units(16).attention_activation(activation));
  model.add<Dense<float>>(5);
  if (activation == Activation::Sigmoid) std::printf("%s", model.summary().c_str());
  std::printf("attention_activation %s\n", to_string(activation).c_str());

  Rng rng(7);
  SoftmaxCrossEntropy<float> loss;
  Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
  for (int step = 0; step <= 300; ++step) {
    const Batch batch = make_batch(B, T, rng);
    model.zero_grad();
    const Tensor3<float>& logits = model.forward(batch.ids, Mask(), Mode::Train);
    const float value = loss.forward(logits, batch.labels, model.output_mask());
    model.backward(loss.grad());
    adam.step();
    if (step % 50 == 0) std::printf("step %3d  loss %.4f\n", step, value);
  }

  const Batch test = make_batch(256, T, rng);
  const Tensor3<float>& logits = model.predict(test.ids);
  const Mask& mask = model.output_mask();
  const Tensor3<float> A = model.layer_as<SeqSelfAttention<float>>(2).attention();  // (B, T, T)
  double on_signal = 0, uniform = 0;
  for (Index b = 0; b < 256; ++b) {
    const Index len = mask.length(b, T);
    for (Index q = 0; q < len; ++q) on_signal += A(b, q, test.signal_at[size_t(b)]) / double(256 * len);
    uniform += 1.0 / double(256 * len);
  }
  std::printf("  test accuracy (per valid step) %.3f (chance 0.2); mean attention on the signal step %.3f "
              "(uniform %.3f)\n", accuracy(logits, test.labels, mask), on_signal, uniform);

  // Test sequence 0: A (len, len), rows = query steps, columns = key steps.
  const Index len = mask.length(0, T);
  Matrix<float> a(len, len), pos(1, len);
  std::vector<std::vector<double>> rows;
  for (Index q = 0; q < len; ++q)
    for (Index k = 0; k < len; ++k) {
      a(q, k) = A(0, q, k);
      rows.push_back({double(q), double(k), double(a(q, k))});
    }
  for (Index t = 0; t < len; ++t) pos(0, t) = t == test.signal_at[0] ? 1.0f : 0.0f;
  const std::string file = "bilstm_attention_" + to_string(activation);
  tsc::write_csv(file + ".csv", "query,key,weight", rows);
  tsc::write_png(file + ".png", tsc::stack({tsc::render_heatmap(pos, 12, 0, 1),
                                           tsc::render_heatmap(a, 12, 0, a.maxCoeff())}, 4));
  std::printf("  wrote %s.csv and .png (sequence 0: %ld steps, signal at step %ld)\n", file.c_str(), long(len),
              long(test.signal_at[0]));
}

int main() {
  run(Activation::Sigmoid);  // the README's configuration
  run(Activation::Linear);
  return 0;
}
