// A steady training loop allocates no Eigen memory: after a first iteration has sized every buffer, forward,
// loss, backward, clip_grad_norm, Adam/SGD step and zero_grad run with Eigen's heap allocation forbidden
// (EIGEN_RUNTIME_NO_MALLOC makes any Eigen allocation fail an assertion), including a nested Sequential and a
// layer that changes the mask. A new batch shape is allowed to resize once.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/clip.hpp"
#include "seqattn/optim/sgd.hpp"

using namespace seqattn;

namespace {

Tensor3<float> batch(Index B, Index T, Index F) {
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  return x;
}

template <class Opt>
void train_steps(Sequential<float>& model, Opt& opt, const Tensor3<float>& x, const Mask& mask,
                 const std::vector<int>& labels, SoftmaxCrossEntropy<float>& loss, int steps) {
  for (int k = 0; k < steps; ++k) {
    const Tensor3<float>& logits = model.forward(x, mask, Mode::Train);
    loss.forward(logits, labels, model.output_mask());
    opt.zero_grad();
    model.backward(loss.grad());
    clip_grad_norm(model.params(), 1.0f);
    opt.step();
  }
}

template <class Opt, class Options>
void expect_steady_loop_without_allocation(const Options& options) {
  Sequential<float> inner(8);
  inner.add<Dense<float>>(8, Activation::Tanh);
  inner.add<ActivationLayer<float>>(Activation::ReLU);
  Sequential<float> model(3);
  model.add<Dense<float>>(8, Activation::GELU);
  model.add(inner.clone());
  model.add<MaxPool1D<float>>(2);
  model.add<Dense<float>>(4);
  model.add<GlobalAvgPool<float>>();
  Opt opt(model.params(), options);
  SoftmaxCrossEntropy<float> loss;
  const Tensor3<float> x = batch(4, 6, 3), x2 = batch(2, 4, 3);
  const Mask mask = Mask::from_lengths({6, 3, 2, 5}), mask2 = Mask::from_lengths({4, 1});
  const std::vector<int> labels{0, 3, 1, 2}, labels2{2, 1};

  train_steps(model, opt, x, mask, labels, loss, 1);  // sizes every buffer
  Eigen::internal::set_is_malloc_allowed(false);
  train_steps(model, opt, x, mask, labels, loss, 3);
  Eigen::internal::set_is_malloc_allowed(true);

  train_steps(model, opt, x2, mask2, labels2, loss, 1);  // a new shape resizes once...
  Eigen::internal::set_is_malloc_allowed(false);
  train_steps(model, opt, x2, mask2, labels2, loss, 2);  // ...then the loop is steady again
  model.predict(x2, mask2);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(opt.step_count(), 7);
}

TEST(SequentialNoAlloc, SteadyAdamLoopAllocatesNothing) {
  expect_steady_loop_without_allocation<Adam<float>>(AdamOptions().lr(0.01).weight_decay(0.01).amsgrad(true));
}

TEST(SequentialNoAlloc, SteadySgdLoopAllocatesNothing) {
  expect_steady_loop_without_allocation<SGD<float>>(SGDOptions().lr(0.01).momentum(0.9).nesterov(true));
}

// The check is live: an Eigen allocation while forbidden fails an assertion (death test).
TEST(SequentialNoAllocDeathTest, ForbiddenAllocationIsDetected) {
  EXPECT_DEATH(
      {
        Eigen::internal::set_is_malloc_allowed(false);
        Matrix<float> m(64, 64);
        m.setZero();
      },
      "");
}

}  // namespace
