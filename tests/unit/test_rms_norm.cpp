// RMSNorm: PyTorch reference values (outputs, input and gamma gradients; tests/reference/gen_activations.py),
// finite-difference gradients on masked batches, padding, large magnitudes, config round trip, streams, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/rms_norm.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

template <class S>
class RMSNormReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RMSNormReference, Scalars);

TYPED_TEST(RMSNormReference, MatchesPyTorchOutputsAndGradients) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 5e-6 : 1e-13;
  const ReferenceData ref(data_path("activations.txt"));
  const Tensor3<S> x = ref.tensor<S>("x");
  const Tensor3<S> dy = ref.tensor<S>("dy");
  const Tensor3<S> expected_y = ref.tensor<S>("rms_norm");
  const Tensor3<S> expected_dx = ref.tensor<S>("grad_rms_norm");
  const Tensor3<S> gamma = ref.tensor<S>("rms_gamma");
  const Tensor3<S> expected_dgamma = ref.tensor<S>("grad_rms_gamma");
  RMSNorm<S> layer(5);
  for (Index f = 0; f < 5; ++f) layer.gamma()(f) = gamma.data()[f];
  const Tensor3<S>& y = layer.forward(x);
  for (Index i = 0; i < y.size(); ++i)
    EXPECT_NEAR(y.data()[i], expected_y.data()[i], tol * (1.0 + std::abs(expected_y.data()[i]))) << "output " << i;
  layer.zero_grad();
  const Tensor3<S>& dx = layer.backward(x, Mask(), dy);
  for (Index i = 0; i < dx.size(); ++i)
    EXPECT_NEAR(dx.data()[i], expected_dx.data()[i], tol * (1.0 + std::abs(expected_dx.data()[i]))) << "dx " << i;
  const auto params = layer.params();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].name, "gamma");
  for (Index f = 0; f < 5; ++f)
    EXPECT_NEAR(params[0].grad[f], expected_dgamma.data()[f], tol * (1.0 + std::abs(expected_dgamma.data()[f])))
        << "dgamma " << f;
}

TEST(RMSNorm, MatchesFiniteDifferencesOnMaskedBatches) {
  for (const RMSNormOptions& o : {RMSNormOptions(), RMSNormOptions().scale(false), RMSNormOptions().eps(0.5)}) {
    RMSNorm<double> layer(5, o);
    for (Index f = 0; f < 5; ++f) layer.gamma()(f) = 0.5 + 0.3 * static_cast<double>(f);
    const auto x = random_tensor(3, 4, 5, 7);
    const auto result = check_layer_gradients(layer, x, Mask::from_lengths({4, 2, 0}));
    EXPECT_TRUE(result.passed()) << layer.describe() << ": " << result.report();
  }
}

TEST(RMSNorm, PaddedStepsOutputZeroAndDoNotReachGradients) {
  RMSNorm<double> layer(3);
  auto x = random_tensor(2, 4, 3, 9);
  const Mask mask = Mask::from_lengths({4, 2});
  const Tensor3<double> y = layer.forward(x, mask);
  for (Index f = 0; f < 3; ++f) x(1, 3, f) = std::numeric_limits<double>::quiet_NaN();
  const Tensor3<double>& y2 = layer.forward(x, mask);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], y2.data()[i]) << i;
  for (Index t = 2; t < 4; ++t)
    for (Index f = 0; f < 3; ++f) EXPECT_EQ(y2(1, t, f), 0.0);
  layer.zero_grad();
  Tensor3<double> dy(2, 4, 3);
  dy.setConstant(1.0);
  for (Index f = 0; f < 3; ++f) dy(1, 3, f) = std::numeric_limits<double>::quiet_NaN();
  const Tensor3<double>& dx = layer.backward(x, mask, dy);
  for (Index f = 0; f < 3; ++f) EXPECT_EQ(dx(1, 3, f), 0.0);
  const auto params = layer.params();
  for (Index f = 0; f < 3; ++f) EXPECT_TRUE(std::isfinite(params[0].grad[f])) << f;
}

// Steps whose sum of squares overflows float are normalized from scaled values: the output is that of double.
TEST(RMSNorm, LargeFiniteStepsGiveTheDoubleResult) {
  Tensor3<float> xf(1, 2, 4);
  xf.setValues({{{3e38f, -2e38f, 1e38f, 0.5f}, {1e20f, 2e20f, -3e20f, 1.0f}}});
  Tensor3<double> xd = xf.cast<double>();
  RMSNorm<float> lf(4);
  RMSNorm<double> ld(4);
  const Tensor3<float>& yf = lf.forward(xf);
  const Tensor3<double>& yd = ld.forward(xd);
  for (Index i = 0; i < yf.size(); ++i) {
    ASSERT_TRUE(std::isfinite(yf.data()[i])) << i;
    EXPECT_NEAR(yf.data()[i], yd.data()[i], 1e-6) << i;
  }
  Tensor3<float> dy(1, 2, 4);
  dy.setConstant(1.0f);
  const Tensor3<float>& dx = lf.backward(xf, Mask(), dy);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_TRUE(std::isfinite(dx.data()[i])) << i;
}

TEST(RMSNorm, ConfigRoundTripsThroughTheRegistry) {
  RMSNorm<double> layer(6, RMSNormOptions().eps(1.1920928955078125e-07).scale(false));
  const Config entry = layer_entry(layer);
  EXPECT_EQ(entry.find("class_name")->as_string(), "RMSNorm");
  EXPECT_EQ(entry.find("config")->dump(), R"({"epsilon":1.1920928955078125e-07,"scale":false})");
  const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, 6);
  EXPECT_EQ(layer_entry(*rebuilt), entry);
  EXPECT_EQ(rebuilt->describe(), "RMSNorm(eps=1.19209e-07, scale=false)");
  EXPECT_EQ(RMSNorm<float>(3).describe(), "RMSNorm(eps=1e-06)");
}

TEST(RMSNorm, RejectsBadEpsAndShapesNamingTheLayer) {
  EXPECT_THROW(RMSNorm<float>(3, RMSNormOptions().eps(0.0)), ConfigError);
  EXPECT_THROW(RMSNorm<float>(3, RMSNormOptions().eps(std::nan(""))), ConfigError);
  RMSNorm<float> layer(4);
  Tensor3<float> x(1, 2, 5);
  x.setZero();
  try {
    layer.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("RMSNorm(eps=1e-06): input features expected 4 but got 5"), std::string::npos)
        << e.what();
  }
}

// A stream of RMSNorm alone is bitwise predict; behind a Dense (whose stream product differs in the last bits),
// to rounding.
TEST(RMSNorm, StreamMatchesPredict) {
  for (const RMSNormOptions& o : {RMSNormOptions(), RMSNormOptions().scale(false).eps(1e-3)}) {
    Sequential<float> model(5);
    model.add<RMSNorm<float>>(o);
    auto& norm = static_cast<RMSNorm<float>&>(model.layer(0));
    for (Index f = 0; f < 5; ++f) norm.gamma()(f) = 0.25f + 0.5f * static_cast<float>(f);
    seqattn::testing::StreamCheck check;
    EXPECT_TRUE(seqattn::testing::stream_matches_predict(model, check, 0.0)) << norm.describe();
    Sequential<float> deep(5);
    deep.add<Dense<float>>(4, DenseOptions().seed(2));
    deep.add<RMSNorm<float>>(o);
    deep.add<Dense<float>>(3, DenseOptions().seed(3));
    EXPECT_TRUE(seqattn::testing::stream_matches_predict(deep, check, 2e-6)) << norm.describe();
  }
}
