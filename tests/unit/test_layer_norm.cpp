// LayerNorm: torch.nn.LayerNorm reference (with and without gamma/beta) in float and double, masked gradients
// for every scale/center combination, padded steps (NaN there too), padding invariance, option errors; finite
// inputs up to the largest finite value give the outputs of ordinary magnitudes, and forward and backward
// match a long double reference there.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/norm_reference.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

const seqattn::testing::ReferenceData& ref() {
  static const seqattn::testing::ReferenceData data(seqattn::testing::data_path("sequence_layers.txt"));
  return data;
}

template <class S>
void expect_tensor_near(const Tensor3<S>& got, const Tensor3<S>& want, double tolerance) {
  ASSERT_EQ(got.dimensions(), want.dimensions());
  for (Index i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got.data()[i], want.data()[i], tolerance * (1.0 + std::abs(double(want.data()[i])))) << "at " << i;
}

template <class S>
class LayerNormReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerNormReference, Scalars);

template <class S>
class LayerNormMagnitude : public seqattn::testing::IeeeDenormalsTest {};  // flush-to-zero off (norm_reference.hpp)
TYPED_TEST_SUITE(LayerNormMagnitude, Scalars);

// s * (offset + p) in S, p a (3, 4, 16) pattern in [-1, 1].
template <class S>
Tensor3<S> scaled_pattern(double s, double offset = 0.0) {
  const Tensor3<double> p = random_tensor(3, 4, 16, 7);
  Tensor3<S> x(3, 4, 16);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(s * (offset + p.data()[i]));
  return x;
}

// Huge magnitudes of S: the squares (and for the largest, the sums) overflow S.
template <class S>
std::vector<double> huge_magnitudes() {
  if (std::is_same<S, float>::value) return {1e20, 1e30, 3.3e38};
  return {1e160, 1e300, 1.7e308};
}

}  // namespace

TYPED_TEST(LayerNormReference, MatchesTorchLayerNorm) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-12;
  const Tensor3<S> x = ref().tensor<S>("ln_x");
  LayerNorm<S> ln(6);
  ln.gamma() = ref().matrix<S>("ln_gamma");
  ln.beta() = ref().matrix<S>("ln_beta");
  expect_tensor_near<S>(ln.forward(x), ref().tensor<S>("ln_y"), tol);
  LayerNorm<S> plain(6, LayerNormOptions().scale(false).center(false));
  EXPECT_TRUE(plain.params().empty());
  plain.gamma().setConstant(S(3));  // ignored without scale and center
  plain.beta().setConstant(S(2));
  expect_tensor_near<S>(plain.forward(x), ref().tensor<S>("ln_y_plain"), tol);
}

class LayerNormGradient : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(LayerNormGradient, MatchesFiniteDifferencesWithMask) {
  const auto [scale, center] = GetParam();
  LayerNorm<double> ln(5, LayerNormOptions().scale(scale).center(center));
  ln.gamma().setRandom();  // random in [-1, 1] (unused when scale is off)
  ln.beta().setRandom();
  const auto result = check_layer_gradients(ln, random_tensor(3, 4, 5, 11), Mask::from_lengths({4, 1, 0}));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(ln.params().size(), size_t(scale) + size_t(center));
}

INSTANTIATE_TEST_SUITE_P(ScaleCenter, LayerNormGradient, ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(LayerNorm, PaddedStepsOutputZeroAndPassNoGradient) {
  LayerNorm<double> ln(3);
  ln.beta().setConstant(0.5);
  const auto x = random_tensor(2, 3, 3, 2);
  const Mask mask = Mask::from_lengths({1, 0});
  const Tensor3<double> y = ln.forward(x, mask);
  Tensor3<double> dy(2, 3, 3);
  dy.setConstant(1.0);
  ln.zero_grad();
  const Tensor3<double> dx = ln.backward(x, mask, dy);
  for (Index b = 0; b < 2; ++b)
    for (Index t = mask.length(b, 3); t < 3; ++t)
      for (Index f = 0; f < 3; ++f) {
        EXPECT_EQ(y(b, t, f), 0.0);
        EXPECT_EQ(dx(b, t, f), 0.0);
      }
  EXPECT_NEAR(y(0, 0, 0) + y(0, 0, 1) + y(0, 0, 2), 1.5, 1e-12);  // normalized row sums to 0, plus beta
  EXPECT_EQ(ln.params()[1].grads()(0), 1.0);                      // dbeta: the one valid step only
}

TEST(LayerNorm, PaddingInvariance) {
  for (Index extra : {0, 3}) {
    LayerNorm<double> ln(4);
    ln.gamma().setRandom();
    ln.beta().setRandom();
    seqattn::testing::expect_padding_invariant(ln, 4, 5, {5, 1, 0, 3}, extra);
  }
}

TEST(LayerNorm, ConstantStepGivesBetaNotNaN) {
  LayerNorm<float> ln(4);
  ln.beta().setConstant(0.25f);
  Tensor3<float> x(1, 1, 4);
  x.setConstant(3.0f);
  const auto& y = ln.forward(x);
  for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(0, 0, f), 0.25f);
}

TEST(LayerNorm, RejectsNonPositiveEpsNamingTheLayer) {
  for (double eps : {0.0, -1e-5}) {
    try {
      LayerNorm<float> ln(4, LayerNormOptions().eps(eps));
      FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("LayerNorm(eps="), std::string::npos) << msg;
      EXPECT_NE(msg.find("): eps must be positive and finite but got "), std::string::npos) << msg;
    }
  }
  LayerNorm<float> ln(4);
  Tensor3<float> x(1, 2, 3);
  x.setZero();
  EXPECT_THROW(ln.forward(x), ShapeError);
  EXPECT_EQ(ln.describe(), "LayerNorm(eps=1e-05)");
}

TYPED_TEST(LayerNormMagnitude, HugeFiniteInputsGiveTheOutputsOfOrdinaryMagnitudes) {
  // Layer norm is scale invariant up to eps: at 1e8 eps is far below rounding, at 1 it moves the outputs by about
  // eps / (2 var) = 1.5e-5. Before the fix the squares overflowed and every output was beta.
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-14;
  const Mask mask = Mask::from_lengths({4, 2, 0});
  LayerNorm<S> ln(16);
  ln.gamma() = Eigen::Map<const Vector<double>>(random_tensor(1, 1, 16, 8).data(), 16).cast<S>();
  ln.beta() = Eigen::Map<const Vector<double>>(random_tensor(1, 1, 16, 9).data(), 16).cast<S>();
  for (double offset : {0.0, 0.95}) {  // 0.95: all values of a step of one sign, so their sum overflows too
    const double top = 1.0 / (1.0 + offset);
    const Tensor3<S> ordinary = ln.forward(scaled_pattern<S>(1e8 * top, offset), mask);
    const Tensor3<S> unit = ln.forward(scaled_pattern<S>(top, offset), mask);
    for (double s : huge_magnitudes<S>()) {
      SCOPED_TRACE(::testing::Message() << "magnitude " << s << ", offset " << offset);
      const Tensor3<S>& y = ln.forward(scaled_pattern<S>(s * top, offset), mask);
      for (Index i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y.data()[i])) << "at " << i;
        EXPECT_NEAR(y.data()[i], ordinary.data()[i], tol * (1.0 + std::abs(double(ordinary.data()[i])))) << i;
        EXPECT_NEAR(y.data()[i], unit.data()[i], 2e-4) << "at " << i;
      }
    }
  }
}

TYPED_TEST(LayerNormMagnitude, ForwardAndBackwardAtHugeMagnitudesMatchALongDoubleReference) {
  using S = TypeParam;
  const bool is_float = std::is_same<S, float>::value;
  const Mask mask = Mask::from_lengths({4, 1, 3});
  for (bool scale : {true, false}) {
    LayerNorm<S> ln(16, LayerNormOptions().scale(scale).eps(1e-3));
    ln.gamma() = Eigen::Map<const Vector<double>>(random_tensor(1, 1, 16, 8).data(), 16).cast<S>();
    ln.beta() = Eigen::Map<const Vector<double>>(random_tensor(1, 1, 16, 9).data(), 16).cast<S>();
    const Tensor3<S> dy = random_tensor(3, 4, 16, 10).cast<S>();
    for (double offset : {0.0, 0.95})
      for (double s : huge_magnitudes<S>()) {
        SCOPED_TRACE(::testing::Message() << "magnitude " << s << ", offset " << offset << ", scale " << scale);
        const Tensor3<S> x = scaled_pattern<S>(s / (1.0 + offset), offset);
        const Tensor3<S> y = ln.forward(x, mask);
        ln.zero_grad();
        const Tensor3<S>& dx = ln.backward(x, mask, dy);
        const auto want = seqattn::testing::layer_norm_reference(x, mask, ln.gamma(), ln.beta(), scale, true, 1e-3, dy);
        seqattn::testing::expect_matches(y.data(), want.y, is_float ? 1e-6 : 1e-14, "y");
        // dx is about 1 / s (subnormal in float above 1e38): compared relative to its largest value
        seqattn::testing::expect_matches(dx.data(), want.dx, is_float ? 1e-5 : 1e-13, "dx");
        const ParamList<S> params = ln.params();
        seqattn::testing::expect_matches(params.back().grad, want.dbeta, is_float ? 1e-6 : 1e-14, "dbeta");
        if (scale)
          seqattn::testing::expect_matches(params.front().grad, want.dgamma, is_float ? 1e-5 : 1e-13, "dgamma");
      }
  }
}

TYPED_TEST(LayerNormMagnitude, AllEqualHugeStepsGiveBeta) {
  using S = TypeParam;
  for (Index F : {4, 6, 13}) {
    LayerNorm<S> ln(F);
    ln.beta().setConstant(S(0.25));
    Tensor3<S> x(2, 1, F);
    x.setConstant(static_cast<S>(huge_magnitudes<S>()[1]));
    for (Index f = 0; f < F; ++f) x(1, 0, f) = -std::numeric_limits<S>::max();
    const Tensor3<S>& y = ln.forward(x);
    for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], S(0.25)) << "F " << F << " at " << i;
  }
}

TEST(LayerNorm, NonFiniteValuesAtPaddedStepsChangeNothing) {
  LayerNorm<float> ln(5);
  ln.gamma().setRandom();
  ln.beta().setRandom();
  const Mask mask = Mask::from_lengths({3, 1});
  const Tensor3<float> x = random_tensor(2, 4, 5, 3).cast<float>();
  Tensor3<float> bad = x;
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max()};
  for (Index b = 0; b < 2; ++b)
    for (Index t = mask.length(b, 4); t < 4; ++t)
      for (Index f = 0; f < 5; ++f) bad(b, t, f) = specials[(t + f) % 4];
  const Tensor3<float> dy = random_tensor(2, 4, 5, 4).cast<float>();
  LayerNorm<float> other(ln);
  const Tensor3<float> y1 = ln.forward(x, mask), dx1 = ln.backward(x, mask, dy);
  const Tensor3<float> y2 = other.forward(bad, mask), dx2 = other.backward(bad, mask, dy);
  for (Index i = 0; i < y1.size(); ++i) {
    EXPECT_EQ(y1.data()[i], y2.data()[i]) << "at " << i;
    EXPECT_EQ(dx1.data()[i], dx2.data()[i]) << "at " << i;
  }
  EXPECT_EQ(ln.params()[0].grads(), other.params()[0].grads());
  EXPECT_EQ(ln.params()[1].grads(), other.params()[1].grads());
}

TEST(LayerNorm, NonFiniteValueAtAValidStepMakesThatStepNaN) {
  LayerNorm<float> ln(4);
  Tensor3<float> x = random_tensor(1, 3, 4, 5).cast<float>();
  x(0, 1, 2) = std::numeric_limits<float>::infinity();
  x(0, 2, 0) = std::numeric_limits<float>::quiet_NaN();
  const Tensor3<float>& y = ln.forward(x);
  for (Index f = 0; f < 4; ++f) {
    EXPECT_TRUE(std::isfinite(y(0, 0, f)));
    EXPECT_TRUE(std::isnan(y(0, 1, f)));
    EXPECT_TRUE(std::isnan(y(0, 2, f)));
  }
}
