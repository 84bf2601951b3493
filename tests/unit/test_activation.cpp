// Activations: ActivationLayer gradients for every activation on a masked batch, PyTorch reference values
// (outputs and input gradients) in float and double, padding invariance, name round trip and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "seqattn/layers/activation.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {
const Activation kAll[] = {Activation::Linear, Activation::ReLU,    Activation::GELU,
                           Activation::Tanh,   Activation::Sigmoid, Activation::Softmax};
}

class ActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGradient, MatchesFiniteDifferencesOnAMaskedBatch) {
  ActivationLayer<double> layer(5, GetParam());
  const auto x = random_tensor(3, 4, 5, 3);
  const auto result = check_layer_gradients(layer, x, Mask::from_lengths({4, 1, 0}));
  EXPECT_TRUE(result.passed()) << to_string(GetParam()) << ": " << result.report();
  EXPECT_TRUE(layer.params().empty());
}

TEST_P(ActivationGradient, PaddedStepsDoNotChangeValidOutputs) {
  const Mask mask = Mask::from_lengths({2, 3});
  ActivationLayer<double> layer(4, GetParam());
  auto x = random_tensor(2, 3, 4, 5);
  const Tensor3<double> y = layer.forward(x, mask);
  for (Index f = 0; f < 4; ++f) x(0, 2, f) = 100.0 + static_cast<double>(f);
  const Tensor3<double>& y2 = layer.forward(x, mask);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < mask.length(b, 3); ++t)
      for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(b, t, f), y2(b, t, f));
}

INSTANTIATE_TEST_SUITE_P(AllActivations, ActivationGradient, ::testing::ValuesIn(kAll),
                         [](const ::testing::TestParamInfo<Activation>& info) { return to_string(info.param); });

template <class S>
class ActivationReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ActivationReference, Scalars);

TYPED_TEST(ActivationReference, MatchesPyTorchOutputsAndGradients) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
  const ReferenceData ref(data_path("activations.txt"));
  const Tensor3<S> x = ref.tensor<S>("x");
  const Tensor3<S> dy = ref.tensor<S>("dy");
  for (Activation a : kAll) {
    if (a == Activation::Linear) continue;
    const std::string name = to_string(a);
    ActivationLayer<S> layer(x.dimension(2), a);
    const Tensor3<S>& y = layer.forward(x);
    const Tensor3<S> expected_y = ref.tensor<S>(name);
    const Tensor3<S> expected_dx = ref.tensor<S>("grad_" + name);
    ASSERT_EQ(y.dimensions(), expected_y.dimensions());
    for (Index i = 0; i < y.size(); ++i)
      EXPECT_NEAR(y.data()[i], expected_y.data()[i], tol * (1.0 + std::abs(expected_y.data()[i])))
          << name << " output " << i;
    const Tensor3<S>& dx = layer.backward(x, Mask(), dy);
    for (Index i = 0; i < dx.size(); ++i)
      EXPECT_NEAR(dx.data()[i], expected_dx.data()[i], tol * (1.0 + std::abs(expected_dx.data()[i])))
          << name << " gradient " << i;
  }
}

TEST(Activation, SoftmaxIsStableForLargeLogits) {
  ActivationLayer<float> layer(3, Activation::Softmax);
  Tensor3<float> x(1, 2, 3);
  x.setValues({{{1e4f, -1e4f, 0.0f}, {5e3f, 5e3f, -5e3f}}});
  const auto& y = layer.forward(x);
  EXPECT_FLOAT_EQ(y(0, 0, 0), 1.0f);
  // SIMD exp saturates at a denormal (about 1e-39) instead of 0: both are zero to float precision.
  EXPECT_LT(y(0, 0, 1), 1e-37f);
  EXPECT_GE(y(0, 0, 1), 0.0f);
  EXPECT_FLOAT_EQ(y(0, 1, 0), 0.5f);
  EXPECT_FLOAT_EQ(y(0, 1, 1), 0.5f);
  EXPECT_LT(y(0, 1, 2), 1e-37f);
  EXPECT_GE(y(0, 1, 2), 0.0f);
}

TEST(Activation, NamesRoundTrip) {
  for (Activation a : kAll) EXPECT_EQ(activation_from_string(to_string(a)), a) << to_string(a);
  EXPECT_EQ(activation_from_string("none"), Activation::Linear);
  EXPECT_EQ(activation_from_string(""), Activation::Linear);
  EXPECT_EQ(ActivationLayer<float>(3, Activation::GELU).describe(), "Activation(gelu)");
}

TEST(Activation, UnknownNameErrorListsTheKnownNames) {
  try {
    activation_from_string("swish");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "activation: unknown name 'swish' (expected linear, relu, gelu, tanh, sigmoid or softmax)");
  }
}

TEST(Activation, RejectsWrongFeatureSizeNamingTheLayer) {
  ActivationLayer<float> layer(4, Activation::Tanh);
  Tensor3<float> x(1, 2, 5);
  x.setZero();
  try {
    layer.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Activation(tanh): input features expected 4 but got 5"), std::string::npos)
        << e.what();
  }
}
