// Residual: y = x + f(x): gradients through both paths, shape checks, parameter names, padding behaviour.
#include <gtest/gtest.h>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {
Sequential<double> tanh_mlp(Index features) {
  Sequential<double> f(features);
  f.add<Dense<double>>(6, DenseOptions().activation(Activation::Tanh).seed(3));
  f.add<Dense<double>>(features, DenseOptions().seed(4));
  return f;
}
}  // namespace

TEST(Residual, GradientsMatchFiniteDifferencesWithMask) {
  Residual<double> residual(4, tanh_mlp(4));
  const auto result = check_layer_gradients(residual, random_tensor(3, 5, 4, 21), Mask::from_lengths({5, 1, 0}));
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(Residual, OutputIsInputPlusBody) {
  Residual<double> residual(4, tanh_mlp(4));
  Sequential<double> body = tanh_mlp(4);
  const auto x = random_tensor(2, 3, 4, 5);
  const Tensor3<double> fx = body.forward(x);
  const Tensor3<double>& y = residual.forward(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_DOUBLE_EQ(y.data()[i], x.data()[i] + fx.data()[i]);
}

TEST(Residual, ParametersAreTheBodysWithPrefixes) {
  Sequential<double> model(4);
  model.add<Residual<double>>(tanh_mlp(4));
  const auto params = model.params();
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0].name, "0.residual.0.dense.W");
  EXPECT_EQ(params[3].name, "0.residual.1.dense.b");
}

TEST(Residual, BodyAddedAfterConstructionWorks) {
  Residual<double> residual(3);
  residual.body().add<Dense<double>>(3, DenseOptions().seed(9));
  const auto result = check_layer_gradients(residual, random_tensor(2, 4, 3, 8), Mask::from_lengths({2, 4}));
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(Residual, RejectsABodyThatChangesFeatures) {
  Sequential<double> f(4);
  f.add<Dense<double>>(5);
  try {
    Residual<double> residual(4, std::move(f));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Residual: body output features expected 4 (the input features, to add x) but got 5"),
              std::string::npos)
        << e.what();
  }
}

TEST(Residual, RejectsAnEmptyBodyAtForward) {
  Residual<double> residual(4);
  Tensor3<double> x(1, 2, 4);
  x.setZero();
  EXPECT_THROW(residual.forward(x), ConfigError);
}

TEST(Residual, CloneIsIndependent) {
  Residual<double> residual(4, tanh_mlp(4));
  auto copy = residual.clone();
  residual.params()[0].values().setZero();
  EXPECT_NE(copy->params()[0].values().norm(), 0.0);
}
