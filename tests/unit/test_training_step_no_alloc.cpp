// A steady training step of whole models allocates no Eigen memory (EIGEN_RUNTIME_NO_MALLOC: any Eigen heap
// allocation while forbidden fails an assertion). After one step has sized every buffer, forward (Mode::Train),
// loss, backward, clip_grad_norm, Adam step and zero_grad run with allocation forbidden, then an inference, for:
//   - a model with one layer of every type (tests/support/io_model.hpp), on ids, with the finite-check mode on;
//   - a classifier of the main layer types on a masked float batch (Dense, positional encoding, causal Conv1D,
//     Residual(MultiHeadAttention with attention and q/k/v dropout), LayerNorm, SeqSelfAttention with a width,
//     BatchNorm, Dropout, Transformer encoder block, attention pooling, Dense), softmax cross-entropy;
//   - kModels random models (tests/support/random_model.hpp) with MSE.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/clip.hpp"
#include "support/io_model.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 40;

template <class Loss, class Target>
void steps(Sequential<float>& model, Adam<float>& adam, Loss& loss, const Tensor3<float>& x, const Mask& mask,
           const Target& target, int n) {
  for (int k = 0; k < n; ++k) {
    const Tensor3<float>& y = model.forward(x, mask, Mode::Train);
    loss.forward(y, target, model.output_mask());
    model.backward(loss.grad());
    clip_grad_norm(model.params(), 1.0f);
    adam.step();
    adam.zero_grad();
  }
}

template <class Loss, class Target>
void expect_steady_step_allocates_nothing(Sequential<float>& model, Loss& loss, const Tensor3<float>& x,
                                          const Mask& mask, const Target& target) {
  Adam<float> adam(model.params(), AdamOptions().lr(1e-3).weight_decay(0.01));
  steps(model, adam, loss, x, mask, target, 1);  // sizes every buffer
  model.predict(x, mask);
  Eigen::internal::set_is_malloc_allowed(false);
  steps(model, adam, loss, x, mask, target, 2);
  model.predict(x, mask);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(adam.step_count(), 3);
}

TEST(TrainingStepNoAlloc, ModelWithEveryLayerTypeAllocatesNothing) {
  Sequential<float> model = make_io_model<float>(3);
  model.set_check_finite(true);
  const Tensor3<float> x = io_ids<float>(4);
  const Mask mask = Mask::from_lengths({5, 2, 4});
  const std::vector<int> labels{0, 2, 1};
  SoftmaxCrossEntropy<float> loss;
  expect_steady_step_allocates_nothing(model, loss, x, mask, labels);
}

TEST(TrainingStepNoAlloc, ClassifierOfTheMainLayersAllocatesNothing) {
  Sequential<float> model(5);
  model.add<Dense<float>>(16, DenseOptions().activation(Activation::GELU).seed(1));
  model.add<SinusoidalPositionalEncoding<float>>();
  model.add<Conv1D<float>>(16, 3, Conv1DOptions().padding(Padding::Causal).activation(Activation::ReLU).seed(2));
  Sequential<float> body(16);
  body.add<MultiHeadAttention<float>>(4, MultiHeadAttentionOptions().attention_dropout(0.1).qkv_dropout(0.1).seed(3));
  model.add<Residual<float>>(std::move(body));
  model.add<LayerNorm<float>>();
  model.add<SeqSelfAttention<float>>(SeqSelfAttentionOptions().units(8).attention_width(3).seed(4));
  model.add<BatchNorm<float>>();
  model.add<Dropout<float>>(0.2, DropoutOptions().seed(5));
  model.add<TransformerEncoderBlock<float>>(2, 32, TransformerEncoderOptions().dropout(0.1).norm_first(true).seed(6));
  model.add<SeqWeightedAttention<float>>(SeqWeightedAttentionOptions().seed(7));
  model.add<Dense<float>>(3, DenseOptions().seed(8));
  Tensor3<float> x(4, 9, 5);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(std::sin(0.3 * static_cast<double>(i)));
  const Mask mask = Mask::from_lengths({9, 4, 1, 7});
  const std::vector<int> labels{0, 2, 1, 2};
  SoftmaxCrossEntropy<float> loss;
  expect_steady_step_allocates_nothing(model, loss, x, mask, labels);
}

TEST(TrainingStepNoAlloc, RandomModelsAllocateNothing) {
  for (int seed = 1; seed <= kModels; ++seed) {
    const Index T = 3 + seed % 4, B = 3;
    RandomModel<float> m = random_model<float>(100000 + seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 100000 + seed << ":" << m.recipe);
    if (m.model.params().empty()) continue;
    const Tensor3<float> x = random_input(m, B, T, 22000 + seed);
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 23000 + seed));
    Tensor3<float> target(B, m.model.out_time(T), m.model.out_features());
    target.setConstant(0.5f);
    MeanSquaredError<float> loss;
    expect_steady_step_allocates_nothing(m.model, loss, x, mask, target);
  }
}

}  // namespace
