// Activations: ActivationLayer gradients for every activation on a masked batch, PyTorch reference values
// (outputs and input gradients, tests/reference/gen_activations.py) in float and double, padding invariance,
// large-magnitude inputs, name round trip, Dense config round trip and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {
const Activation kAll[] = {Activation::Linear,      Activation::ReLU,    Activation::GELU,      Activation::Tanh,
                           Activation::Sigmoid,     Activation::Softmax, Activation::GELUTanh,  Activation::ELU,
                           Activation::SELU,        Activation::SiLU,    Activation::LeakyReLU, Activation::Softplus,
                           Activation::HardSigmoid, Activation::Mish};
}

class ActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGradient, MatchesFiniteDifferencesOnAMaskedBatch) {
  ActivationLayer<double> layer(5, GetParam());
  const auto x = random_tensor(3, 4, 5, 3);
  const auto result = check_layer_gradients(layer, x, Mask::from_lengths({4, 1, 0}));
  EXPECT_TRUE(result.passed()) << to_string(GetParam()) << ": " << result.report();
  EXPECT_TRUE(layer.params().empty());
}

// Inputs in [-5, 5): both sides of every kink but relu's (hard_sigmoid's at +-3 included, elu's and selu's
// exponential side far from 0), away from the kinks themselves.
TEST_P(ActivationGradient, MatchesFiniteDifferencesOverAWideRange) {
  ActivationLayer<double> layer(5, GetParam(), 0.07);
  Tensor3<double> x = random_tensor(2, 6, 5, 11) * 5.0;
  for (Index i = 0; i < x.size(); ++i)
    if (std::abs(std::abs(x.data()[i]) - 3.0) < 1e-3 || std::abs(x.data()[i]) < 1e-3) x.data()[i] += 0.01;
  const auto result = check_layer_gradients(layer, x, Mask::from_lengths({6, 4}));
  EXPECT_TRUE(result.passed()) << to_string(GetParam()) << ": " << result.report();
}

// Finite values of any magnitude give finite outputs and derivatives (no exp overflow, no inf * 0).
TEST_P(ActivationGradient, LargeInputsGiveFiniteOutputsAndGradients) {
  if (GetParam() == Activation::Softmax) return;
  for (float z : {-3e38f, -1e30f, -1e4f, -100.0f, -30.0f, 30.0f, 100.0f, 1e4f, 1e30f, 3e38f}) {
    const float y = activate<float>(GetParam(), z);
    const float d = activation_derivative<float>(GetParam(), z, y);
    EXPECT_TRUE(std::isfinite(y)) << to_string(GetParam()) << " at " << z << ": " << y;
    EXPECT_TRUE(std::isfinite(d)) << to_string(GetParam()) << "' at " << z << ": " << d;
  }
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
  const auto cases = [] {
    std::vector<std::pair<std::string, ActivationLayer<S>>> c;
    for (Activation a : kAll)
      if (a != Activation::Linear) c.emplace_back(to_string(a), ActivationLayer<S>(5, a));
    c.emplace_back("leaky_relu_001", ActivationLayer<S>(5, Activation::LeakyReLU, 0.01));  // torch's default
    return c;
  }();
  for (auto [name, layer] : cases) {
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
  EXPECT_EQ(activation_from_string("swish"), Activation::SiLU);
  EXPECT_EQ(to_string(Activation::SiLU), "silu");
  EXPECT_EQ(to_string(Activation::GELUTanh), "gelu_tanh");
  EXPECT_EQ(to_string(Activation::HardSigmoid), "hard_sigmoid");
  EXPECT_EQ(ActivationLayer<float>(3, Activation::GELU).describe(), "Activation(gelu)");
  EXPECT_EQ(ActivationLayer<float>(3, Activation::LeakyReLU).describe(), "Activation(leaky_relu)");
  EXPECT_EQ(ActivationLayer<float>(3, Activation::LeakyReLU, 0.01).describe(),
            "Activation(leaky_relu, negative_slope=0.01)");
}

// Every activation as a Dense option: written under its Keras name, rebuilt to the same layer (same outputs).
TEST(Activation, DenseConfigRoundTripsEveryActivation) {
  const Tensor3<double> x = random_tensor(2, 3, 4, 21) * 4.0;
  for (Activation a : kAll) {
    Dense<double> dense(4, 3, DenseOptions().activation(a).seed(5));
    const Config entry = layer_entry(dense);
    ASSERT_NE(entry.find("config"), nullptr);
    EXPECT_EQ(entry.find("config")->find("activation")->as_string(), to_string(a));
    const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, 4);
    EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
    rebuilt->assign(dense);
    const Tensor3<double> y = dense.forward(x);
    const Tensor3<double>& y2 = rebuilt->forward(x);
    for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], y2.data()[i]) << to_string(a);
  }
  // "swish" (Keras 2) reads as silu and is written back as "silu"
  Config entry = layer_entry(Dense<double>(4, 3, DenseOptions().activation(Activation::SiLU)));
  Config config = *entry.find("config");
  config.set("activation", "swish");
  entry.set("config", config);
  const auto rebuilt = build_layer<double>(entry, 4);
  EXPECT_EQ(layer_entry(*rebuilt).find("config")->find("activation")->as_string(), "silu");
}

// leaky_relu's slope of an ActivationLayer: written for leaky_relu only, read back, default 0.2.
TEST(Activation, LeakyReluSlopeRoundTrips) {
  const ActivationLayer<double> torch_default(3, Activation::LeakyReLU, 0.01);
  const Config entry = layer_entry(torch_default);
  EXPECT_EQ(entry.find("config")->find("negative_slope")->as_double(), 0.01);
  const auto rebuilt = build_layer<double>(entry, 3);
  EXPECT_EQ(static_cast<const ActivationLayer<double>&>(*rebuilt).negative_slope(), 0.01);
  EXPECT_EQ(layer_entry(ActivationLayer<double>(3, Activation::Tanh, 0.01)).find("config")->find("negative_slope"),
            nullptr);
  Config bare = layer_entry(ActivationLayer<double>(3, Activation::LeakyReLU));
  Config config = Config::object();
  config.set("activation", "leaky_relu");
  bare.set("config", config);
  EXPECT_EQ(static_cast<const ActivationLayer<double>&>(*build_layer<double>(bare, 3)).negative_slope(), 0.2);
  EXPECT_THROW(ActivationLayer<double>(3, Activation::LeakyReLU, std::nan("")), ConfigError);
}

TEST(Activation, UnknownNameErrorListsTheKnownNames) {
  try {
    activation_from_string("swich");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "activation: unknown name 'swich' (expected one of linear, relu, gelu, tanh, sigmoid, softmax, "
              "gelu_tanh, elu, selu, silu, swish, leaky_relu, softplus, hard_sigmoid, mish)");
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
