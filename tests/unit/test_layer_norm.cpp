// LayerNorm: torch.nn.LayerNorm reference (with and without gamma/beta) in float and double, masked gradients
// for every scale/center combination, padded steps, padding invariance, option errors.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/testing/gradient_check.hpp"
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
