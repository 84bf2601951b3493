// The CNN self-attention encoder write-up's pooling heads and residual convolution: GatedMeanPool
// ('weighted_mean'), BertPool ('bert'), Conv1D residual(true). Finite-difference gradients with lengths and step
// masks, naive references written from the formulas, the step-mask properties (compaction, garbage at masked
// steps), config round trips, streams, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/gated_pooling.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

template <class E>
void expect_error(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << want;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

void round_trip(const Layer<double>& layer) {
  SCOPED_TRACE(layer.describe());
  const Config entry = layer_entry(layer);
  ASSERT_TRUE(LayerRegistry<double>::instance().contains(layer.class_name()));
  const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, layer.in_features());
  EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
  EXPECT_EQ(rebuilt->describe(), layer.describe());
}

void check_step_mask_properties(Layer<double>& layer, Index F) {
  for (std::uint64_t seed : {31, 32, 33}) {
    const Tensor3<double> x = random_tensor(6, 7, F, seed);
    const Mask mask = random_step_mask(6, 7, seed);
    const auto grads = check_layer_gradients(layer, x, mask);
    EXPECT_TRUE(grads.passed()) << grads.report();
    seqattn::testing::expect_masked_values_ignored(layer, x, mask, seed);
    seqattn::testing::expect_masked_values_ignored(layer, x, Mask::from_lengths({7, 3, 0, 1, 5, 2}), seed);
  }
  seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(3, 4, F, 9));
}

TEST(GatedMeanPool, GradientsAndStepMasks) {
  GatedMeanPool<double> pool(4, GatedMeanPoolOptions().bias_init(Init::constant(0.3)).seed(2));
  const auto lengths = check_layer_gradients(pool, random_tensor(4, 5, 4, 1), Mask::from_lengths({5, 2, 0, 1}));
  EXPECT_TRUE(lengths.passed()) << lengths.report();
  check_step_mask_properties(pool, 4);
  for (std::uint64_t seed : {41, 42})
    seqattn::testing::expect_compaction_equivalent(pool, random_tensor(6, 7, 4, seed), random_step_mask(6, 7, seed),
                                                   seed);
}

TEST(GatedMeanPool, MatchesTheFormula) {
  GatedMeanPool<double> pool(3, GatedMeanPoolOptions().bias_init(Init::constant(-0.2)).seed(5));
  const Tensor3<double> x = random_tensor(3, 5, 3, 6);
  const Mask mask = Mask::from_steps({{1, 0, 1, 1, 0}, {0, 0, 0, 0, 0}, {0, 1, 0, 0, 1}});
  const Tensor3<double> y = pool.forward(x, mask);
  EXPECT_EQ(y.dimension(1), 1);
  for (Index b = 0; b < 3; ++b) {
    double G = 0, N[3] = {0, 0, 0};
    for (Index t = 0; t < 5; ++t) {
      if (!mask.valid(b, t, 5)) continue;
      double s = pool.bias()(0);
      for (Index f = 0; f < 3; ++f) s += x(b, t, f) * pool.kernel()(f, 0);
      const double g = 1 / (1 + std::exp(-s));
      EXPECT_NEAR(pool.gates()(b, t), g, 1e-15);
      G += g;
      for (Index f = 0; f < 3; ++f) N[f] += g * x(b, t, f);
    }
    for (Index f = 0; f < 3; ++f) EXPECT_NEAR(y(b, 0, f), G > 0 ? N[f] / G : 0.0, 1e-15) << b << "," << f;
  }
  EXPECT_EQ(pool.gates()(0, 1), 0.0);
  EXPECT_TRUE(pool.out_mask(mask, 5).empty());
}

// use_bias(false): the write-up's gate Dense(1) without bias: no bias parameter, b0 = 0 in the gate, and the gradient
// check covers the kernel alone.
TEST(GatedMeanPool, WithoutBiasIsTheWriteUpsGate) {
  GatedMeanPool<double> pool(3, GatedMeanPoolOptions().use_bias(false).bias_init(Init::constant(0.7)).seed(5));
  EXPECT_EQ(pool.describe(), "GatedMeanPool(use_bias=false)");
  const ParamList<double> params = pool.params();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].name, "kernel");
  EXPECT_EQ(pool.bias()(0), 0.0);  // bias_init is not used
  const Tensor3<double> x = random_tensor(2, 4, 3, 6);
  const Tensor3<double> y = pool.forward(x, Mask::from_lengths({4, 2}));
  for (Index b = 0; b < 2; ++b) {
    double G = 0, N[3] = {0, 0, 0};
    for (Index t = 0; t < (b == 0 ? 4 : 2); ++t) {
      double s = 0;
      for (Index f = 0; f < 3; ++f) s += x(b, t, f) * pool.kernel()(f, 0);
      const double g = 1 / (1 + std::exp(-s));
      G += g;
      for (Index f = 0; f < 3; ++f) N[f] += g * x(b, t, f);
    }
    for (Index f = 0; f < 3; ++f) EXPECT_NEAR(y(b, 0, f), N[f] / G, 1e-15) << b << "," << f;
  }
  const auto grads = check_layer_gradients(pool, random_tensor(3, 5, 3, 2), random_step_mask(3, 5, 3));
  EXPECT_TRUE(grads.passed()) << grads.report();
  round_trip(pool);
}

TEST(BertPool, GradientsAndStepMasks) {
  BertPool<double> pool(4, BertPoolOptions().units(3).bias_init(Init::constant(0.1)).seed(2));
  const auto lengths = check_layer_gradients(pool, random_tensor(4, 5, 4, 1), Mask::from_lengths({5, 2, 0, 1}));
  EXPECT_TRUE(lengths.passed()) << lengths.report();
  check_step_mask_properties(pool, 4);
  for (std::uint64_t seed : {41, 42})
    seqattn::testing::expect_compaction_equivalent(pool, random_tensor(6, 7, 4, seed), random_step_mask(6, 7, seed),
                                                   seed);
}

TEST(BertPool, IsDenseTanhOfTheFirstKeptStep) {
  BertPool<double> pool(3, BertPoolOptions().bias_init(Init::uniform(-1, 1)).seed(7));
  EXPECT_EQ(pool.out_features(), 3);  // units 0: the input features
  const Tensor3<double> x = random_tensor(3, 4, 3, 8);
  const Mask mask = Mask::from_steps({{0, 0, 1, 1}, {0, 0, 0, 0}, {1, 0, 1, 0}});
  const Tensor3<double> y = pool.forward(x, mask);
  const Index first[] = {2, -1, 0};
  for (Index b = 0; b < 3; ++b)
    for (Index u = 0; u < 3; ++u) {
      double h = pool.bias()(u);
      if (first[b] >= 0)
        for (Index f = 0; f < 3; ++f) h += x(b, first[b], f) * pool.kernel()(f, u);
      EXPECT_NEAR(y(b, 0, u), first[b] >= 0 ? std::tanh(h) : 0.0, 1e-15) << b << "," << u;
    }
}

TEST(GatedPooling, ConfigRoundTripAndErrors) {
  round_trip(GatedMeanPool<double>(3, GatedMeanPoolOptions().kernel_init(Init::he_uniform()).seed(4)));
  round_trip(BertPool<double>(3, BertPoolOptions().units(5).seed(4)));
  round_trip(BertPool<double>(3));
  expect_error<ConfigError>([] { BertPool<double>(3, BertPoolOptions().units(-2)); },
                            "BertPool: units expected 0 (the input features) or a positive integer but got -2");
  GatedMeanPool<double> pool(3);
  expect_error<ShapeError>([&] { pool.forward(random_tensor(2, 4, 5, 1)); }, "GatedMeanPool()");
  expect_error<ConfigError>([&] { pool.open_stream(2, StreamOptions()); },
                            "GatedMeanPool(): cannot be streamed: its stream form is not implemented");
}

// Conv1D residual(true): act(conv(x) + x) = act(z of the same convolution without the skip, plus x).
TEST(Conv1DResidual, IsTheConvolutionPlusItsInput) {
  for (Padding padding : {Padding::Same, Padding::Causal}) {
    const Conv1DOptions o = Conv1DOptions().padding(padding).dilation(2).activation(Activation::Tanh).seed(3);
    Conv1D<double> residual(3, 3, 3, Conv1DOptions(o).residual(true));
    Conv1D<double> plain(3, 3, 3, Conv1DOptions(o).activation(Activation::Linear));
    EXPECT_EQ(residual.kernel(), plain.kernel());
    const Tensor3<double> x = random_tensor(3, 6, 3, 4);
    const Mask mask = random_step_mask(3, 6, 4);
    const Tensor3<double> y = residual.forward(x, mask);
    const Tensor3<double> z = plain.forward(x, mask);
    for (Index b = 0; b < 3; ++b)
      for (Index t = 0; t < 6; ++t)
        for (Index f = 0; f < 3; ++f) {
          const double want = mask.valid(b, t, 6) ? std::tanh(z(b, t, f) + x(b, t, f)) : 0.0;
          EXPECT_NEAR(y(b, t, f), want, 1e-14) << b << "," << t << "," << f;
        }
    const auto lengths = check_layer_gradients(residual, x, Mask::from_lengths({6, 2, 0}));
    EXPECT_TRUE(lengths.passed()) << lengths.report();
    check_step_mask_properties(residual, 3);
    round_trip(residual);
    EXPECT_EQ(plain.config().find("residual"), nullptr);  // written only when true
  }
}

TEST(Conv1DResidual, CausalStreamsMatchPredict) {
  Sequential<double> model(2);
  model.add<Conv1D<double>>(2, 3, Conv1DOptions().padding(Padding::Causal).residual(true).seed(1));
  seqattn::testing::StreamCheck check;
  EXPECT_TRUE(seqattn::testing::stream_matches_predict(model, check, 1e-12));
}

TEST(Conv1DResidual, Errors) {
  expect_error<ConfigError>([] { Conv1D<double>(3, 4, 3, Conv1DOptions().padding(Padding::Same).residual(true)); },
                            "residual expected filters == input features 3 but got 4");
  expect_error<ConfigError>([] { Conv1D<double>(3, 3, 3, Conv1DOptions().residual(true)); },
                            "residual expected padding same or causal but got valid");
  expect_error<ConfigError>(
      [] { Conv1D<double>(3, 3, 3, Conv1DOptions().padding(Padding::Same).stride(2).residual(true)); },
      "Conv1D(filters=3, kernel_size=3, stride=2, padding=same, residual): residual expected stride 1 but got 2");
}

}  // namespace
