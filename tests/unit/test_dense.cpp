// Dense: gradients (with and without bias, every activation), shapes, errors.
#include <gtest/gtest.h>

#include "seqattn/layers/dense.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

class DenseGradient : public ::testing::TestWithParam<std::tuple<Activation, bool>> {};

TEST_P(DenseGradient, MatchesFiniteDifferences) {
  const auto [activation, use_bias] = GetParam();
  Dense<double> dense(5, 4, DenseOptions().activation(activation).use_bias(use_bias).seed(7));
  const auto x = random_tensor(3, 4, 5, 11);
  const auto result = check_layer_gradients(dense, x, Mask::from_lengths({4, 2, 0}));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(dense.params().size(), use_bias ? 2u : 1u);
}

INSTANTIATE_TEST_SUITE_P(AllActivations, DenseGradient,
                         ::testing::Combine(::testing::Values(Activation::Linear, Activation::ReLU, Activation::GELU,
                                                              Activation::Tanh, Activation::Sigmoid,
                                                              Activation::Softmax),
                                            ::testing::Bool()));

TEST(Dense, ComputesXWPlusB) {
  Dense<double> dense(2, 3, DenseOptions().seed(1));
  dense.kernel() << 1, 2, 3, 4, 5, 6;
  dense.bias() << 0.5, -0.5, 1;
  Tensor3<double> x(1, 2, 2);
  x.setValues({{{1, 0}, {1, 1}}});
  const auto& y = dense.forward(x);
  EXPECT_DOUBLE_EQ(y(0, 0, 0), 1.5);
  EXPECT_DOUBLE_EQ(y(0, 1, 1), 6.5);
  EXPECT_DOUBLE_EQ(y(0, 1, 2), 10.0);
}

TEST(Dense, RejectsWrongFeatureSizeNamingTheLayer) {
  Dense<float> dense(4, 8);
  Tensor3<float> x(2, 3, 3);
  x.setZero();
  try {
    dense.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Dense(units=8): input features expected 4 but got 3"), std::string::npos)
        << e.what();
  }
}
