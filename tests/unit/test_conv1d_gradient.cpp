// Conv1D: finite-difference gradients for every padding mode, stride, dilation, activation and use_bias,
// on masked batches with lengths T, short, 1 and 0.
#include <gtest/gtest.h>

#include <tuple>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

// padding, kernel_size, stride, dilation
class Conv1DGeometryGradient : public ::testing::TestWithParam<std::tuple<Padding, Index, Index, Index>> {};

TEST_P(Conv1DGeometryGradient, MatchesFiniteDifferencesOnMaskedBatch) {
  const auto [padding, k, stride, dilation] = GetParam();
  Conv1D<double> conv(3, 4, k, Conv1DOptions().padding(padding).stride(stride).dilation(dilation).seed(5));
  conv.bias().setRandom();  // a zero bias would hide a missing bias gradient path
  const auto x = random_tensor(5, 9, 3, 17);
  // Lengths: full, shorter than the receptive field of some kernels, odd, 1 and 0.
  const auto result = check_layer_gradients(conv, x, Mask::from_lengths({9, 6, 4, 1, 0}));
  EXPECT_TRUE(result.passed()) << conv.describe() << ": " << result.report();
}

INSTANTIATE_TEST_SUITE_P(AllPaddings, Conv1DGeometryGradient,
                         ::testing::Combine(::testing::Values(Padding::Valid, Padding::Same, Padding::Causal),
                                            ::testing::Values(Index(1), Index(2), Index(3)),
                                            ::testing::Values(Index(1), Index(2), Index(3)),
                                            ::testing::Values(Index(1), Index(2))));

class Conv1DActivationGradient : public ::testing::TestWithParam<std::tuple<Activation, bool>> {};

TEST_P(Conv1DActivationGradient, MatchesFiniteDifferences) {
  const auto [activation, use_bias] = GetParam();
  Conv1D<double> conv(
      2, 3, 3, Conv1DOptions().padding(Padding::Same).stride(2).activation(activation).use_bias(use_bias).seed(8));
  if (use_bias) conv.bias().setRandom();
  const auto x = random_tensor(3, 7, 2, 23);
  const auto result = check_layer_gradients(conv, x, Mask::from_lengths({7, 1, 4}));
  EXPECT_TRUE(result.passed()) << conv.describe() << ": " << result.report();
  EXPECT_EQ(conv.params().size(), use_bias ? 2u : 1u);
}

INSTANTIATE_TEST_SUITE_P(AllActivations, Conv1DActivationGradient,
                         ::testing::Combine(::testing::Values(Activation::Linear, Activation::ReLU, Activation::GELU,
                                                              Activation::Tanh, Activation::Sigmoid,
                                                              Activation::Softmax),
                                            ::testing::Bool()));

TEST(Conv1DGradient, UnmaskedBatchWithDilationAndStride) {
  Conv1D<double> conv(4, 2, 4, Conv1DOptions().padding(Padding::Valid).stride(2).dilation(2).seed(3));
  conv.bias().setRandom();
  const auto result = check_layer_gradients(conv, random_tensor(2, 12, 4, 31));
  EXPECT_TRUE(result.passed()) << result.report();
}
