#pragma once
// The example classifier measured by bench_classifier.cpp and compare_libtorch (same model on both sides):
//   x (B, T, 8) -> Dense(8 -> 64) -> SinusoidalPositionalEncoding (add) -> MultiHeadAttention(64, 4 heads)
//   -> LayerNorm -> GlobalMaxPool -> (B, 1, 64) -> Dense(64 -> 2) -> logits (B, 1, 2)
// ClassifierShape::causal_window > 0 makes the attention causal with that window: the model bench_streaming
// and compare_libtorch's stream row run one step at a time.
// trained with SoftmaxCrossEntropy and Adam (lr 1e-3). One training step: zero_grad, forward (Train), loss,
// backward, Adam step.

#include <cstdint>
#include <vector>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"

namespace seqattn_bench {

struct ClassifierShape {
  seqattn::Index features = 8, d_model = 64, heads = 4, classes = 2;
  seqattn::Index causal_window = 0;  // > 0: causal attention over a window of that many keys (streamable)
};

inline seqattn::Sequential<float> make_classifier(const ClassifierShape& s = ClassifierShape()) {
  seqattn::Sequential<float> model(s.features);
  model.add<seqattn::Dense<float>>(s.d_model, seqattn::DenseOptions().seed(1));
  model.add<seqattn::SinusoidalPositionalEncoding<float>>();
  auto attention = seqattn::MultiHeadAttentionOptions().seed(2);
  if (s.causal_window > 0) attention.causal(true).attention_window(s.causal_window);
  model.add<seqattn::MultiHeadAttention<float>>(s.heads, attention);
  model.add<seqattn::LayerNorm<float>>();
  model.add<seqattn::GlobalMaxPool<float>>();
  model.add<seqattn::Dense<float>>(s.classes, seqattn::DenseOptions().seed(3));
  return model;
}

// Nominal flops of one forward over (B, T): the products (Dense, q/k/v/output projections, scores, A v).
inline double classifier_forward_flops(seqattn::Index B, seqattn::Index T, const ClassifierShape& s = ClassifierShape()) {
  const double N = static_cast<double>(B * T), d = static_cast<double>(s.d_model);
  return 2 * N * static_cast<double>(s.features) * d + 8 * N * d * d + 4 * N * static_cast<double>(T) * d +
         2 * static_cast<double>(B) * d * static_cast<double>(s.classes);
}

// A model with its loss and optimizer: step() is one training step on (x, mask, labels).
struct ClassifierTrainer {
  explicit ClassifierTrainer(const ClassifierShape& s = ClassifierShape())
      : model(make_classifier(s)), adam(model.params(), seqattn::AdamOptions().lr(1e-3)) {}

  float step(const seqattn::Tensor3<float>& x, const seqattn::Mask& mask, const std::vector<int>& labels) {
    model.zero_grad();
    const seqattn::Tensor3<float>& logits = model.forward(x, mask, seqattn::Mode::Train);
    const float value = loss.forward(logits, labels);
    model.backward(loss.grad());
    adam.step();
    return value;
  }

  seqattn::Sequential<float> model;
  seqattn::SoftmaxCrossEntropy<float> loss;
  seqattn::Adam<float> adam;
};

}  // namespace seqattn_bench
