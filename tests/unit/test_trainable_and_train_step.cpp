// Trainable (core/trainable.hpp) and train_step / evaluate_loss (model/train_step.hpp):
//   - a standalone Trainable trains under Adam with a gradient written by hand, next to a model in one optimizer
//     (join_params); its view is tracked: refused once the Trainable is destroyed or reshaped, kept when the
//     shape stays; frozen: no update; regularizer: penalty and gradient by finite differences; a constraint is
//     applied after a step; copies are independent; errors name the Trainable and the value;
//   - train_step's total is the loss plus the model's regularization loss (weight penalties and the attention
//     regularizer), and the gradients it leaves are those of that total (finite differences in double);
//     evaluate_loss gives the same objective in Mode::Infer and leaves the gradients alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "seqattn/core/trainable.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/model/train_step.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/sgd.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::error_of;
using seqattn::testing::GradTarget;
using seqattn::testing::random_tensor;

namespace {

TEST(Trainable, TrainsUnderAdamWithAModelInOneOptimizer) {
  Sequential<double> model(2);
  model.add<Dense<double>>(1, DenseOptions().seed(1));
  Trainable<double> q("query", 1, 3, Init::uniform(-1.0, 1.0), 2);
  Matrix<double> target(1, 3);
  target << 0.5, -1.5, 2.0;
  Adam<double> adam(join_params(model.params(), q.params()), AdamOptions().lr(0.1));
  EXPECT_EQ(adam.params().size(), model.params().size() + 1);
  const double start = (q.value() - target).squaredNorm();
  for (int step = 0; step < 200; ++step) {
    q.grad() = 2.0 * (q.value() - target);  // d/dq ||q - target||^2
    adam.step();
    adam.zero_grad();
    EXPECT_EQ(q.grad().squaredNorm(), 0.0);  // zero_grad reaches the Trainable through its view
  }
  EXPECT_LT((q.value() - target).squaredNorm(), 1e-4 * start);
}

TEST(Trainable, ViewIsTrackedLikeALayersParameters) {
  auto q = std::make_unique<Trainable<double>>("q", 2, 2, Init::ones());
  SGD<double> sgd(q->params(), SGDOptions().lr(0.5));
  *q = Trainable<double>("q2", 2, 2, Init::constant(3.0));  // same shape: the storage and the views are kept
  q->grad().setConstant(1.0);
  sgd.step();
  EXPECT_EQ(q->value()(0, 0), 2.5);
  *q = Trainable<double>("q3", 3, 2);  // another shape: the view is refused
  EXPECT_NE(error_of<UsageError>([&] { sgd.step(); }).find("q"), std::string::npos);
  SGD<double> fresh(q->params(), SGDOptions().lr(0.5));
  q.reset();  // destroyed
  EXPECT_NE(error_of<UsageError>([&] { fresh.step(); }), "(no exception)");
}

TEST(Trainable, FrozenRegularizedAndConstrained) {
  Trainable<double> w("w", 2, 3, Init::uniform(-1.0, 1.0), 5, ParamRole::Kernel);
  // Frozen: no update.
  SGD<double> sgd(w.params(), SGDOptions().lr(0.1));
  const Matrix<double> before = w.value();
  w.set_trainable(false);
  EXPECT_FALSE(w.params()[0].trainable());
  w.grad().setConstant(1.0);
  sgd.step();
  EXPECT_TRUE(w.value() == before);
  w.set_trainable(true);
  // Regularizer: the penalty by hand and its gradient by finite differences.
  w.set_regularizer(L1L2{0.02, 0.3});
  double expected = 0.0;
  for (Index i = 0; i < w.value().size(); ++i)
    expected += 0.02 * std::abs(w.value().data()[i]) + 0.3 * w.value().data()[i] * w.value().data()[i];
  EXPECT_NEAR(w.regularization_loss(), expected, 1e-14);
  w.zero_grad();
  w.add_regularization_grad();
  const Matrix<double> analytic = w.grad();
  const auto result = check_gradients([&] { return w.regularization_loss(); },
                                      {GradTarget{"w", w.value().data(), analytic.data(), w.value().size()}});
  EXPECT_TRUE(result.passed()) << result.report();
  // Constraint: non_neg after a step.
  w.set_constraint(Constraint::non_neg());
  w.zero_grad();
  sgd.step();
  EXPECT_GE(w.value().minCoeff(), 0.0);
  // A copy has the values and rules, and a storage of its own.
  Trainable<double> copy = w;
  EXPECT_TRUE(copy.value() == w.value());
  EXPECT_EQ(copy.regularization_loss(), w.regularization_loss());
  copy.value().setConstant(-1.0);
  EXPECT_GE(w.value().minCoeff(), 0.0);
}

TEST(Trainable, ErrorsNameItAndTheValue) {
  EXPECT_EQ(error_of<ConfigError>([] { Trainable<float>("scale", 0, 3); }),
            "Trainable 'scale': shape expected at least (1, 1) but got (0, 3)");
  EXPECT_EQ(error_of<ConfigError>([] { Trainable<float>("", 1, 1); }),
            "Trainable: name expected non-empty but got \"\"");
  EXPECT_EQ(error_of<ConfigError>([] { Trainable<float>("t", Matrix<float>(0, 2)); }),
            "Trainable 't': value expected at least one element but got shape (0, 2)");
  Trainable<float> t("t", 2, 2);
  EXPECT_CONTAINS(error_of<ConfigError>([&] {
                    t.set_regularizer(L1L2{-1.0, 0.0});
                  }),
                  "Trainable 't': regularizer l1 must be finite and >= 0 but got -1");
}

// A model with a weight penalty and an attention regularizer (no dropout: Train and Infer agree).
Sequential<double> regularized_model() {
  Sequential<double> model(3);
  auto& dense = model.add<Dense<double>>(4, DenseOptions().activation(Activation::Tanh).seed(11));
  dense.set_regularizer(ParamRole::Kernel, L1L2{0.01, 0.05});
  model.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().units(5).attention_regularizer_weight(0.2).seed(12));
  model.add<Dense<double>>(2, DenseOptions().seed(13));
  return model;
}

TEST(TrainStep, TotalIsLossPlusRegularizationAndGradientsAreItsOwn) {
  Sequential<double> model = regularized_model();
  const Tensor3<double> x = random_tensor(2, 4, 3, 14);
  const Tensor3<double> target = random_tensor(2, 4, 2, 15);
  const Mask mask = Mask::from_lengths({4, 3});
  MeanSquaredError<double> loss;
  model.zero_grad();
  const StepLoss<double> step = train_step(model, loss, x, mask, target);
  EXPECT_GT(step.regularization, 0.0);
  EXPECT_EQ(step.total(), step.data + step.regularization);
  MeanSquaredError<double> check_loss;
  const double data = check_loss.forward(model.predict(x, mask), target, model.output_mask());
  EXPECT_NEAR(step.data, data, 1e-14);
  EXPECT_NEAR(step.regularization, model.regularization_loss(), 1e-14);

  // The gradients in the parameters are those of the total objective.
  std::vector<std::vector<double>> analytic;
  std::vector<GradTarget> targets;
  for (const auto& p : model.params()) analytic.emplace_back(p.grad, p.grad + p.size());
  Index k = 0;
  for (const auto& p : model.params()) targets.push_back({p.name, p.value, analytic[k++].data(), p.size()});
  const auto objective = [&] {
    MeanSquaredError<double> l;
    const double d = l.forward(model.forward(x, mask, Mode::Train), target, model.output_mask());
    return d + model.regularization_loss();
  };
  const auto result = check_gradients(objective, targets);
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(TrainStep, EvaluateLossIsTheSameObjectiveWithoutGradients) {
  Sequential<double> model = regularized_model();
  const Tensor3<double> x = random_tensor(3, 5, 3, 16);
  const Mask mask = Mask::from_lengths({5, 2, 4});
  const std::vector<int> labels{1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1};  // one per step
  SoftmaxCrossEntropy<double> loss;
  model.zero_grad();
  const StepLoss<double> eval = evaluate_loss(model, loss, x, mask, labels);
  for (const auto& p : model.params()) EXPECT_EQ(p.grads().cwiseAbs().sum(), 0.0) << p.name;
  const StepLoss<double> step = train_step(model, loss, x, mask, labels);
  EXPECT_EQ(eval.data, step.data);
  EXPECT_EQ(eval.regularization, step.regularization);
  EXPECT_GT(eval.regularization, 0.0);
}

}  // namespace
