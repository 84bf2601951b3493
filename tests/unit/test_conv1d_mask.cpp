// Conv1D: output lengths and padding split, the output mask, padding invariance (padded values are never
// read, growing the padding changes nothing, each sample equals itself run alone), zeros at padded output
// steps, configuration and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

WindowGeometry geometry(Index k, Index stride, Index dilation, Padding padding) {
  WindowGeometry g;
  g.kernel_size = k;
  g.stride = stride;
  g.dilation = dilation;
  g.padding = padding;
  return g;
}

template <class Fn>
void expect_throws_with(Fn&& fn, const std::string& expected, bool shape_error) {
  try {
    fn();
    FAIL() << "expected an exception containing: " << expected;
  } catch (const ShapeError& e) {
    EXPECT_TRUE(shape_error) << "got ShapeError: " << e.what();
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  } catch (const ConfigError& e) {
    EXPECT_FALSE(shape_error) << "got ConfigError: " << e.what();
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Conv1DGeometry, OutputLengthsFollowKeras) {
  const auto valid = geometry(3, 2, 2, Padding::Valid);  // receptive field 5
  EXPECT_EQ(valid.receptive_field(), 5);
  EXPECT_EQ(valid.out_length(9), 3);  // floor((9 - 5) / 2) + 1
  EXPECT_EQ(valid.out_length(6), 1);
  EXPECT_EQ(valid.out_length(5), 1);
  EXPECT_EQ(valid.out_length(4), 0);
  const auto same = geometry(3, 2, 1, Padding::Same);  // ceil(L / 2)
  EXPECT_EQ(same.out_length(9), 5);
  EXPECT_EQ(same.out_length(6), 3);
  EXPECT_EQ(same.out_length(1), 1);
  EXPECT_EQ(same.out_length(0), 0);
  const auto causal = geometry(2, 3, 2, Padding::Causal);  // ceil(L / 3)
  EXPECT_EQ(causal.out_length(7), 3);
  EXPECT_EQ(causal.out_length(6), 2);
}

TEST(Conv1DGeometry, SamePaddingSplitsAsTensorFlow) {
  const auto s2 = geometry(3, 2, 1, Padding::Same);
  EXPECT_EQ(s2.pad_left(9), 1);  // total (5-1)*2 + 3 - 9 = 2
  EXPECT_EQ(s2.pad_left(6), 0);  // total (3-1)*2 + 3 - 6 = 1: the extra zero goes on the right
  EXPECT_EQ(geometry(4, 1, 1, Padding::Same).pad_left(10), 1);  // total 3
  EXPECT_EQ(geometry(3, 1, 3, Padding::Same).pad_left(10), 3);  // total 6
  EXPECT_EQ(geometry(3, 1, 3, Padding::Causal).pad_left(10), 6);
  EXPECT_EQ(geometry(3, 1, 3, Padding::Valid).pad_left(10), 0);
}

TEST(Conv1DMask, NewLengthsAreEachSamplesOwnOutputLength) {
  Conv1D<float> same_s2(2, 3, 3, Conv1DOptions().padding(Padding::Same).stride(2));
  EXPECT_EQ(same_s2.out_mask(Mask::from_lengths({9, 6, 1, 0}), 9).lengths(), (std::vector<Index>{5, 3, 1, 0}));
  EXPECT_TRUE(same_s2.out_mask(Mask(), 9).empty());
  EXPECT_EQ(same_s2.out_time(9), 5);
  EXPECT_EQ(same_s2.out_time(-1), -1);

  Conv1D<float> causal(2, 3, 4, Conv1DOptions().padding(Padding::Causal).dilation(3));
  EXPECT_EQ(causal.out_mask(Mask::from_lengths({9, 6, 1, 0}), 9).lengths(), (std::vector<Index>{9, 6, 1, 0}));

  Conv1D<float> valid(2, 3, 3, Conv1DOptions().dilation(2).stride(2));
  EXPECT_EQ(valid.out_mask(Mask::from_lengths({9, 6, 4, 0}), 9).lengths(), (std::vector<Index>{3, 1, 0, 0}));
}

class Conv1DPaddingInvariance : public ::testing::TestWithParam<std::tuple<Padding, Index, Index>> {};

TEST_P(Conv1DPaddingInvariance, PaddedValuesAndPaddingLengthNeverMatter) {
  const auto [padding, stride, dilation] = GetParam();
  Conv1D<double> conv(3, 4, 3, Conv1DOptions().padding(padding).stride(stride).dilation(dilation).seed(2));
  conv.bias().setRandom();
  const std::vector<Index> lengths = {8, 5, 2, 0};
  const Index T = 8, T_big = 13, B = 4;
  const auto x = random_tensor(B, T, 3, 4);
  // The same sequences padded to 13 steps with NaN: padded values must never be read.
  Tensor3<double> x_big(B, T_big, 3);
  x_big.setConstant(std::numeric_limits<double>::quiet_NaN());
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < lengths[static_cast<size_t>(b)]; ++t)
      for (Index c = 0; c < 3; ++c) x_big(b, t, c) = x(b, t, c);
  const Tensor3<double> y = conv.forward(x, Mask(lengths));
  const Tensor3<double> dy = random_tensor(B, y.dimension(1), 4, 9);
  conv.zero_grad();
  const Tensor3<double> dx = conv.backward(x, Mask(lengths), dy);
  const Matrix<double> dW = Eigen::Map<Matrix<double>>(conv.params()[0].grad, conv.kernel().rows(), 4);

  const Tensor3<double> y_big = conv.forward(x_big, Mask(lengths));
  Tensor3<double> dy_big(B, y_big.dimension(1), 4);
  dy_big.setConstant(5.0);  // gradients at padded output steps must be ignored
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < y.dimension(1); ++t)
      for (Index f = 0; f < 4; ++f) dy_big(b, t, f) = dy(b, t, f);
  conv.zero_grad();
  const Tensor3<double> dx_big = conv.backward(x_big, Mask(lengths), dy_big);
  const Matrix<double> dW_big = Eigen::Map<Matrix<double>>(conv.params()[0].grad, conv.kernel().rows(), 4);

  for (Index b = 0; b < B; ++b) {
    const Index L_out = conv.geometry().out_length(lengths[static_cast<size_t>(b)]);
    for (Index t = 0; t < y_big.dimension(1); ++t)
      for (Index f = 0; f < 4; ++f) {
        if (t < L_out)
          ASSERT_DOUBLE_EQ(y_big(b, t, f), y(b, t, f)) << conv.describe() << " b=" << b << " t=" << t;
        else
          ASSERT_EQ(y_big(b, t, f), 0.0) << conv.describe() << " padded output b=" << b << " t=" << t;
      }
    for (Index t = 0; t < T_big; ++t)
      for (Index c = 0; c < 3; ++c) {
        if (t < lengths[static_cast<size_t>(b)])
          ASSERT_NEAR(dx_big(b, t, c), dx(b, t, c), 1e-14);
        else
          ASSERT_EQ(dx_big(b, t, c), 0.0);
      }
  }
  EXPECT_LT((dW_big - dW).cwiseAbs().maxCoeff(), 1e-13);
  EXPECT_GT(dW.cwiseAbs().maxCoeff(), 0.0);

  // Each sample equals itself run alone in a batch of one with no padding.
  for (Index b = 0; b < B; ++b) {
    const Index L = lengths[static_cast<size_t>(b)];
    if (conv.geometry().out_length(L) == 0) continue;
    Tensor3<double> alone(1, L, 3);
    for (Index t = 0; t < L; ++t)
      for (Index c = 0; c < 3; ++c) alone(0, t, c) = x(b, t, c);
    const Tensor3<double>& y_alone = conv.forward(alone);
    for (Index t = 0; t < y_alone.dimension(1); ++t)
      for (Index f = 0; f < 4; ++f) ASSERT_DOUBLE_EQ(y_alone(0, t, f), y(b, t, f)) << conv.describe() << " b=" << b;
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaddings, Conv1DPaddingInvariance,
                         ::testing::Combine(::testing::Values(Padding::Valid, Padding::Same, Padding::Causal),
                                            ::testing::Values(Index(1), Index(2), Index(3)),
                                            ::testing::Values(Index(1), Index(2))));

TEST(Conv1DErrors, BadOptionsThrowConfigErrorNamingTheLayer) {
  expect_throws_with([] { Conv1D<float>(3, 0, 3); },
                     "Conv1D(filters=0, kernel_size=3, padding=valid): filters must "
                     "be positive but got 0",
                     false);
  expect_throws_with([] { Conv1D<float>(3, 4, 0); }, "kernel_size must be positive but got 0", false);
  expect_throws_with([] { Conv1D<float>(3, 4, 3, Conv1DOptions().stride(0)); }, "stride must be positive but got 0",
                     false);
  expect_throws_with(
      [] { Conv1D<float>(3, 4, 3, Conv1DOptions().dilation(-2)); },
      "Conv1D(filters=4, kernel_size=3, dilation=-2, padding=valid): dilation must be positive but got -2", false);
  expect_throws_with([] { padding_from_string("full"); }, "padding: unknown name 'full'", false);
  EXPECT_EQ(padding_from_string("causal"), Padding::Causal);
}

TEST(Conv1DErrors, ShortInputWithValidPaddingAndWrongFeaturesThrowShapeError) {
  Conv1D<float> conv(2, 4, 3, Conv1DOptions().dilation(2));
  Tensor3<float> x(1, 4, 2);
  x.setZero();
  expect_throws_with([&] { conv.forward(x); },
                     "Conv1D(filters=4, kernel_size=3, dilation=2, padding=valid): input of 4 steps is shorter than "
                     "the receptive field of 5 steps",
                     true);
  Tensor3<float> x3(1, 6, 3);
  x3.setZero();
  expect_throws_with([&] { conv.forward(x3); }, "input features expected 2 but got 3", true);
  // Same and causal padding accept any length.
  Conv1D<float> same(2, 4, 3, Conv1DOptions().dilation(2).padding(Padding::Same));
  Tensor3<float> one(1, 1, 2);
  one.setConstant(1.0f);
  EXPECT_EQ(same.forward(one).dimension(1), 1);
}

TEST(Conv1D, ComputesKerasLayoutCrossCorrelation) {
  // in = 1, filters = 1, kernel (3, 1, 1) = [1, 2, 3], causal: y[t] = 1 x[t-2] + 2 x[t-1] + 3 x[t] + b.
  Conv1D<double> conv(1, 1, 3, Conv1DOptions().padding(Padding::Causal));
  conv.kernel() << 1, 2, 3;
  conv.bias() << 0.5;
  Tensor3<double> x(1, 4, 1);
  x.setValues({{{1}, {10}, {100}, {1000}}});
  const auto& y = conv.forward(x);
  EXPECT_DOUBLE_EQ(y(0, 0, 0), 3.5);
  EXPECT_DOUBLE_EQ(y(0, 1, 0), 32.5);
  EXPECT_DOUBLE_EQ(y(0, 3, 0), 10 + 200 + 3000 + 0.5);
  EXPECT_EQ(conv.params()[0].shape, (std::vector<Index>{3, 1}));
  EXPECT_EQ(conv.params()[0].name, "W");
  EXPECT_EQ(conv.params()[1].name, "b");
}

// The shared padding-invariance check (tests/support): more padding with random padded values changes no
// valid output, no valid dx and no parameter gradient, for every padding mode, stride and dilation.
TEST(Conv1DPaddingInvariance, SharedCheckForEveryGeometry) {
  for (Padding padding : {Padding::Valid, Padding::Same, Padding::Causal})
    for (Index stride : {1, 2, 3})
      for (Index dilation : {1, 2}) {
        Conv1D<double> conv(3, 2, 3, Conv1DOptions().padding(padding).stride(stride).dilation(dilation).seed(4));
        conv.bias().setRandom();
        SCOPED_TRACE(conv.describe());
        seqattn::testing::expect_padding_invariant(conv, 4, 7, {7, 5, 1, 0}, 4);
      }
}
