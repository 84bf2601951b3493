// BatchNorm: torch.nn.BatchNorm1d reference on the valid steps (Train output, running statistics after one
// step, Infer output) with PyTorch's and Keras' momentum/eps in float and double; masked gradients in Train and
// Infer for every scale/center combination; statistics over valid steps only; padding invariance (NaN there
// too); errors. A Train batch with NaN or Inf at a valid step throws and leaves the running statistics unchanged;
// finite inputs up to the largest finite value give the outputs of ordinary magnitudes and match a long double
// reference, and a variance beyond the range of S throws instead of entering the running variance.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/norm_reference.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradCheckOptions;
using seqattn::testing::random_tensor;

namespace {

const seqattn::testing::ReferenceData& ref() {
  static const seqattn::testing::ReferenceData data(seqattn::testing::data_path("sequence_layers.txt"));
  return data;
}

Mask reference_mask() {
  std::vector<Index> lengths;
  for (double v : ref().values("bn_lengths")) lengths.push_back(static_cast<Index>(v));
  return Mask(lengths);
}

template <class S>
void expect_near(const S* got, const S* want, Index n, double tolerance, const std::string& what) {
  for (Index i = 0; i < n; ++i)
    EXPECT_NEAR(got[i], want[i], tolerance * (1.0 + std::abs(double(want[i])))) << what << " at " << i;
}

template <class S>
class BatchNormReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BatchNormReference, Scalars);

template <class S>
class BatchNormMagnitude : public seqattn::testing::IeeeDenormalsTest {};  // flush-to-zero off (norm_reference.hpp)
TYPED_TEST_SUITE(BatchNormMagnitude, Scalars);

// s * (offset + p) in S, p a (3, 4, 5) pattern in [-1, 1].
template <class S>
Tensor3<S> scaled_pattern(double s, double offset = 0.0) {
  const Tensor3<double> p = random_tensor(3, 4, 5, 7);
  Tensor3<S> x(3, 4, 5);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(s * (offset + p.data()[i]));
  return x;
}

// Magnitudes whose variance exceeds the range of S, the largest also their sums.
template <class S>
std::vector<double> huge_magnitudes() {
  if (std::is_same<S, float>::value) return {1e20, 1e30, 3.3e38};
  return {1e160, 1e300, 1.7e308};
}

template <class S>
Vector<S> random_vector(Index n, std::uint64_t seed) {
  return Eigen::Map<const Vector<double>>(random_tensor(1, 1, n, seed).data(), n).cast<S>();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TYPED_TEST(BatchNormReference, MatchesTorchBatchNorm1dWithTorchAndKerasConventions) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-5 : 1e-12;
  const Tensor3<S> x = ref().tensor<S>("bn_x");
  const Mask mask = reference_mask();
  for (const std::string tag : {"torch", "keras"}) {
    BatchNormOptions options;
    if (tag == "keras") options.momentum(0.01).eps(1e-3);  // Keras' momentum 0.99, eps 1e-3
    BatchNorm<S> bn(3, options);
    bn.gamma() = ref().matrix<S>("bn_gamma");
    bn.beta() = ref().matrix<S>("bn_beta");
    bn.running_mean() = ref().matrix<S>("bn_rm0");
    bn.running_var() = ref().matrix<S>("bn_rv0");
    const Tensor3<S> y_train = bn.forward(x, mask, Mode::Train);
    EXPECT_EQ(bn.valid_steps(), 10);
    const Tensor3<S> want_train = ref().tensor<S>("bn_" + tag + "_train_y");
    expect_near(y_train.data(), want_train.data(), x.size(), tol, tag + " train y");
    const Matrix<S> rm = ref().matrix<S>("bn_" + tag + "_running_mean");
    const Matrix<S> rv = ref().matrix<S>("bn_" + tag + "_running_var");
    expect_near(bn.running_mean().data(), rm.data(), 3, tol, tag + " running_mean");
    expect_near(bn.running_var().data(), rv.data(), 3, tol, tag + " running_var");
    const Vector<S> rm_after_train = bn.running_mean();
    const Tensor3<S> y_infer = bn.forward(x, mask, Mode::Infer);
    const Tensor3<S> want_infer = ref().tensor<S>("bn_" + tag + "_infer_y");
    expect_near(y_infer.data(), want_infer.data(), x.size(), tol, tag + " infer y");
    EXPECT_EQ(bn.running_mean(), rm_after_train) << "Infer must not change running_mean";
  }
}

class BatchNormGradient : public ::testing::TestWithParam<std::tuple<Mode, bool, bool>> {};

TEST_P(BatchNormGradient, MatchesFiniteDifferencesWithMask) {
  const auto [mode, scale, center] = GetParam();
  BatchNorm<double> bn(4, BatchNormOptions().scale(scale).center(center));
  bn.gamma().setRandom();
  bn.beta().setRandom();
  bn.running_mean().setRandom();
  bn.running_var() = Vector<double>::Random(4).cwiseAbs() + Vector<double>::Constant(4, 0.5);
  GradCheckOptions options;
  options.mode = mode;
  const auto result = check_layer_gradients(bn, random_tensor(4, 5, 4, 11), Mask::from_lengths({5, 0, 1, 3}), options);
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(bn.params().size(), size_t(scale) + size_t(center));
}

INSTANTIATE_TEST_SUITE_P(ModesScaleCenter, BatchNormGradient,
                         ::testing::Combine(::testing::Values(Mode::Train, Mode::Infer), ::testing::Bool(),
                                            ::testing::Bool()));

TEST(BatchNorm, StatisticsUseValidStepsOnlyAndPaddedStepsOutputZero) {
  Tensor3<double> x(2, 3, 1);
  x.setValues({{{1.0}, {3.0}, {100.0}}, {{5.0}, {-7.0}, {-7.0}}});
  const Mask mask = Mask::from_lengths({2, 1});
  BatchNorm<double> bn(1, BatchNormOptions().momentum(0.5));
  const Tensor3<double> y = bn.forward(x, mask, Mode::Train);
  EXPECT_DOUBLE_EQ(bn.mean()(0), 3.0);               // (1 + 3 + 5) / 3
  EXPECT_DOUBLE_EQ(bn.var()(0), 8.0 / 3.0);          // biased: (4 + 0 + 4) / 3
  EXPECT_DOUBLE_EQ(bn.running_mean()(0), 1.5);       // 0.5 * 0 + 0.5 * 3
  EXPECT_DOUBLE_EQ(bn.running_var()(0), 0.5 + 2.0);  // 0.5 * 1 + 0.5 * (8 / 2) (unbiased)
  EXPECT_NEAR(y(0, 0, 0), -2.0 / std::sqrt(8.0 / 3.0 + 1e-5), 1e-12);
  EXPECT_EQ(y(0, 2, 0), 0.0);
  EXPECT_EQ(y(1, 1, 0), 0.0);
  EXPECT_EQ(y(1, 2, 0), 0.0);
  ParamList<double> buffers = bn.buffers();
  ASSERT_EQ(buffers.size(), 2u);
  EXPECT_EQ(buffers[0].name, "running_mean");
  EXPECT_EQ(buffers[1].name, "running_var");
  EXPECT_EQ(buffers[0].grad, nullptr);
  EXPECT_EQ(buffers[1].values()(0), 2.5);
}

TEST(BatchNorm, PaddingInvarianceOfOutputsGradientsAndRunningStatistics) {
  for (Mode mode : {Mode::Train, Mode::Infer})
    for (Index extra : {0, 3}) {
      BatchNorm<double> bn(3);
      bn.gamma().setRandom();
      bn.beta().setRandom();
      bn.running_mean().setRandom();
      seqattn::testing::expect_padding_invariant(bn, 4, 5, {5, 0, 1, 3}, extra, mode);
    }
}

TEST(BatchNorm, InferWithNoValidStepOutputsZeros) {
  BatchNorm<double> bn(2);
  const auto x = random_tensor(2, 3, 2, 1);
  const Mask mask = Mask::from_lengths({0, 0});
  const Tensor3<double>& y = bn.forward(x, mask, Mode::Infer);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], 0.0);
  Tensor3<double> dy(2, 3, 2);
  dy.setConstant(1.0);
  const Tensor3<double>& dx = bn.backward(x, mask, dy);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0);
}

TEST(BatchNorm, TrainForwardWithoutTwoValidStepsThrows) {
  BatchNorm<float> bn(2);
  Tensor3<float> x(2, 3, 2);
  x.setRandom();
  EXPECT_EQ(error_of([&] {
              bn.forward(x, Mask::from_lengths({0, 0}), Mode::Train);
            }),
            "BatchNorm(momentum=0.1, eps=1e-05): a Train forward needs at least 2 valid steps to compute batch "
            "statistics but got 0 (input (2, 3, 2))");
  EXPECT_NE(error_of([&] {
              bn.forward(x, Mask::from_lengths({0, 1}), Mode::Train);
            }).find("but got 1"),
            std::string::npos);
  EXPECT_THROW(bn.forward(x, Mask::from_lengths({1, 0}), Mode::Train), ShapeError);
  EXPECT_EQ(bn.running_mean(), Vector<float>::Zero(2));  // untouched by the failed forwards
  EXPECT_NO_THROW(bn.forward(x, Mask::from_lengths({1, 1}), Mode::Train));
}

TEST(BatchNorm, RejectsBadOptionsNamingTheLayer) {
  EXPECT_EQ(error_of([] { BatchNorm<float>(3, BatchNormOptions().momentum(1.5)); }),
            "BatchNorm(momentum=1.5, eps=1e-05): momentum must be in [0, 1] but got 1.5");
  EXPECT_EQ(error_of([] { BatchNorm<float>(3, BatchNormOptions().eps(0.0)); }),
            "BatchNorm(momentum=0.1, eps=0): eps must be positive and finite but got 0");
  EXPECT_THROW(BatchNorm<float>(3, BatchNormOptions().momentum(-0.1)), ConfigError);
}

TYPED_TEST(BatchNormMagnitude, HugeFiniteInputsGiveTheOutputsOfOrdinaryMagnitudes) {
  // Momentum 0: the running statistics never change, so any finite batch is accepted. Before the fix the
  // variance overflowed and every output was beta.
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-14;
  const Mask mask = Mask::from_lengths({4, 2, 1});
  BatchNorm<S> bn(5, BatchNormOptions().momentum(0.0));
  bn.gamma() = random_vector<S>(5, 8);
  bn.beta() = random_vector<S>(5, 9);
  for (double offset : {0.0, 0.95}) {  // 0.95: all values of a feature of one sign, so their sum overflows too
    const double top = 1.0 / (1.0 + offset);
    const Tensor3<S> ordinary = bn.forward(scaled_pattern<S>(1e8 * top, offset), mask, Mode::Train);
    const Tensor3<S> unit = bn.forward(scaled_pattern<S>(top, offset), mask, Mode::Train);
    for (double s : huge_magnitudes<S>()) {
      SCOPED_TRACE(::testing::Message() << "magnitude " << s << ", offset " << offset);
      const Tensor3<S>& y = bn.forward(scaled_pattern<S>(s * top, offset), mask, Mode::Train);
      for (Index i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y.data()[i])) << "at " << i;
        EXPECT_NEAR(y.data()[i], ordinary.data()[i], tol * (1.0 + std::abs(double(ordinary.data()[i])))) << i;
        EXPECT_NEAR(y.data()[i], unit.data()[i], 2e-4) << "at " << i;
      }
      EXPECT_TRUE(bn.mean().allFinite());
      EXPECT_TRUE((bn.var().array() == std::numeric_limits<S>::infinity()).all()) << "beyond the range of S";
      EXPECT_EQ(bn.running_var(), Vector<S>::Ones(5));
    }
  }
}

TYPED_TEST(BatchNormMagnitude, ForwardAndBackwardAtHugeMagnitudesMatchALongDoubleReference) {
  using S = TypeParam;
  const bool is_float = std::is_same<S, float>::value;
  const Mask mask = Mask::from_lengths({4, 1, 3});
  for (bool scale : {true, false}) {
    BatchNorm<S> bn(5, BatchNormOptions().momentum(0.0).scale(scale).eps(1e-3));
    bn.gamma() = random_vector<S>(5, 8);
    bn.beta() = random_vector<S>(5, 9);
    const Tensor3<S> dy = random_tensor(3, 4, 5, 10).cast<S>();
    for (double offset : {0.0, 0.95})
      for (double s : huge_magnitudes<S>()) {
        SCOPED_TRACE(::testing::Message() << "magnitude " << s << ", offset " << offset << ", scale " << scale);
        const Tensor3<S> x = scaled_pattern<S>(s / (1.0 + offset), offset);
        const Tensor3<S> y = bn.forward(x, mask, Mode::Train);
        bn.zero_grad();
        const Tensor3<S>& dx = bn.backward(x, mask, dy);
        const auto want = seqattn::testing::batch_norm_reference(x, mask, bn.gamma(), bn.beta(), scale, true, 1e-3, dy,
                                                                 true, bn.running_mean(), bn.running_var());
        seqattn::testing::expect_matches(y.data(), want.y, is_float ? 1e-6 : 1e-14, "y");
        // dx is about 1 / s (subnormal in float above 1e38): compared relative to its largest value
        seqattn::testing::expect_matches(dx.data(), want.dx, is_float ? 1e-5 : 1e-13, "dx");
        seqattn::testing::expect_matches(bn.mean().data(), want.mean, is_float ? 1e-6 : 1e-14, "mean");
        const ParamList<S> params = bn.params();
        seqattn::testing::expect_matches(params.back().grad, want.dbeta, is_float ? 1e-6 : 1e-14, "dbeta");
        if (scale)
          seqattn::testing::expect_matches(params.front().grad, want.dgamma, is_float ? 1e-5 : 1e-13, "dgamma");
      }
  }
}

TYPED_TEST(BatchNormMagnitude, RepresentableVarianceOfOverflowingSquaresEntersTheRunningVariance) {
  // float 2e19 (double 1.2e154): the variance fits S, the sum of the squares of 8 steps does not.
  using S = TypeParam;
  const bool is_float = std::is_same<S, float>::value;
  const double s = is_float ? 2e19 : 1.2e154;
  const Mask mask = Mask::from_lengths({4, 4, 0});
  BatchNorm<S> bn(5, BatchNormOptions().momentum(0.25));
  const Tensor3<S> x = scaled_pattern<S>(s), dy = random_tensor(3, 4, 5, 10).cast<S>();
  const Vector<S> rm0 = bn.running_mean(), rv0 = bn.running_var();
  const Tensor3<S> y = bn.forward(x, mask, Mode::Train);
  const auto want =
      seqattn::testing::batch_norm_reference(x, mask, bn.gamma(), bn.beta(), true, true, 1e-5, dy, true, rm0, rv0);
  seqattn::testing::expect_matches(y.data(), want.y, is_float ? 1e-6 : 1e-14, "y");
  for (Index f = 0; f < 5; ++f) {
    const long double var = want.var[size_t(f)], rv = 0.75L + 0.25L * var * 8 / 7;
    EXPECT_NEAR(double(bn.var()(f) / var), 1.0, is_float ? 1e-5 : 1e-13) << f;
    EXPECT_NEAR(double(bn.running_var()(f) / rv), 1.0, is_float ? 1e-5 : 1e-13) << f;
    EXPECT_NEAR(double(bn.running_mean()(f) / (0.25L * want.mean[size_t(f)])), 1.0, is_float ? 1e-5 : 1e-13) << f;
  }
}

TYPED_TEST(BatchNormMagnitude, VarianceBeyondTheRangeThrowsAndLeavesTheRunningStatisticsUnchanged) {
  using S = TypeParam;
  const bool is_float = std::is_same<S, float>::value;
  const Mask mask = Mask::from_lengths({4, 2, 1});
  BatchNorm<S> bn(5);
  bn.running_mean() = random_vector<S>(5, 3);
  const Vector<S> rm0 = bn.running_mean(), rv0 = bn.running_var();
  const double s = huge_magnitudes<S>()[1];
  const std::string msg = error_of([&] { bn.forward(scaled_pattern<S>(s), mask, Mode::Train); });
  EXPECT_EQ(msg.rfind(std::string("BatchNorm(momentum=0.1, eps=1e-05): the batch statistics are not finite in ") +
                          (is_float ? "float" : "double") + ": feature 0 has variance ",
                      0),
            0u)
      << msg;
  EXPECT_NE(msg.find("e+" + std::string(is_float ? "59" : "599")), std::string::npos) << msg;  // about s^2 / 3
  EXPECT_NE(msg.find("(its valid inputs are finite but too large), so its running variance would overflow; the "
                     "running statistics were left unchanged"),
            std::string::npos)
      << msg;
  EXPECT_EQ(bn.running_mean(), rm0);
  EXPECT_EQ(bn.running_var(), rv0);
  EXPECT_NO_THROW(bn.forward(scaled_pattern<S>(1.0), mask, Mode::Train));
  EXPECT_TRUE(bn.running_var().allFinite());
}

TEST(BatchNorm, NonFiniteBatchInTrainThrowsAndLeavesTheRunningStatisticsUnchanged) {
  const Mask mask = Mask::from_lengths({3, 2});
  const Tensor3<float> clean = random_tensor(2, 3, 4, 5).cast<float>();
  BatchNorm<float> reference(4, BatchNormOptions().momentum(0.5));
  reference.forward(clean, mask, Mode::Train);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    BatchNorm<float> bn(4, BatchNormOptions().momentum(0.5));
    bn.forward(clean, mask, Mode::Train);
    const Vector<float> rm = bn.running_mean(), rv = bn.running_var();
    Tensor3<float> x = clean;
    x(1, 1, 2) = bad;  // a valid step
    const std::string msg = error_of([&] { bn.forward(x, mask, Mode::Train); });
    const std::string want = std::isnan(bad) ? "feature 2 has mean NaN and variance NaN because its valid inputs "
                                               "contain NaN"
                                             : "feature 2 has mean Inf and variance NaN because its valid inputs "
                                               "contain Inf";
    EXPECT_EQ(msg, "BatchNorm(momentum=0.5, eps=1e-05): the batch statistics are not finite: " + want +
                       "; the running statistics were left unchanged");
    EXPECT_EQ(bn.running_mean(), rm);
    EXPECT_EQ(bn.running_var(), rv);
    EXPECT_THROW(bn.backward(x, mask, x), ShapeError) << "a failed forward leaves nothing for backward";
    // the next clean batch continues from the statistics before the bad one
    bn.forward(clean, mask, Mode::Train);
    reference.forward(clean, mask, Mode::Train);
    EXPECT_EQ(bn.running_mean(), reference.running_mean());
    EXPECT_EQ(bn.running_var(), reference.running_var());
    reference = BatchNorm<float>(4, BatchNormOptions().momentum(0.5));
    reference.forward(clean, mask, Mode::Train);
  }
}

TEST(BatchNorm, NonFiniteValuesAtPaddedStepsChangeNothing) {
  const Mask mask = Mask::from_lengths({3, 1, 0});
  const Tensor3<float> x = random_tensor(3, 4, 5, 3).cast<float>(), dy = random_tensor(3, 4, 5, 4).cast<float>();
  Tensor3<float> bad = x;
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max()};
  for (Index b = 0; b < 3; ++b)
    for (Index t = mask.length(b, 4); t < 4; ++t)
      for (Index f = 0; f < 5; ++f) bad(b, t, f) = specials[(t + f) % 4];
  for (Mode mode : {Mode::Train, Mode::Infer}) {
    BatchNorm<float> a(5), b(5);
    const Tensor3<float> y1 = a.forward(x, mask, mode), dx1 = a.backward(x, mask, dy);
    const Tensor3<float> y2 = b.forward(bad, mask, mode), dx2 = b.backward(bad, mask, dy);
    for (Index i = 0; i < y1.size(); ++i) {
      EXPECT_EQ(y1.data()[i], y2.data()[i]) << "at " << i;
      EXPECT_EQ(dx1.data()[i], dx2.data()[i]) << "at " << i;
    }
    EXPECT_EQ(a.running_mean(), b.running_mean());
    EXPECT_EQ(a.running_var(), b.running_var());
    EXPECT_EQ(a.params()[0].grads(), b.params()[0].grads());
    EXPECT_EQ(a.params()[1].grads(), b.params()[1].grads());
  }
}
