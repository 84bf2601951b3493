// Numerical robustness of random models (tests/support/random_model.hpp) with the finite-check mode on, so a
// failure names the first layer producing a NaN or Inf. For kModels models each, in Mode::Infer and in a
// Mode::Train step (forward, masked MSE, backward), no output, input gradient or parameter gradient is NaN or
// Inf (the inputs have none) for:
//   - inputs of huge magnitude (uniform in [-1e4, 1e4]), masked with lengths including 0 and 1;
//   - all-equal inputs (every value 0.75: every attention score of a step equal, zero variances);
//   - T = 1 and B = 1 (models built for one step; no BatchNorm in Train, which needs two valid steps);
//   - every sequence of length 0 (Infer: outputs are finite, mostly zeros);
//   - inputs of magnitude 1e30 and 3.3e38 (all of one sign: their sums overflow float too) into the random
//     models behind a LayerNorm, or behind a BatchNorm with momentum 0 in Train (a variance beyond the range of
//     float cannot enter a running variance); tests/unit/test_property_norm_magnitudes.cpp checks the norm layers
//     themselves against a long double reference at every magnitude.
#include <gtest/gtest.h>

#include "seqattn/loss/mean_squared_error.hpp"
#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 60;

// Train step with the finite check on; returns "" or what was not finite.
std::string train_step(Sequential<float> model, const Tensor3<float>& x, const Mask& mask) {
  model.set_check_finite(true);
  model.zero_grad();
  const Tensor3<float>& y = model.forward(x, mask, Mode::Train);
  std::string bad = first_non_finite(y);
  if (!bad.empty()) return "train output: " + bad;
  Tensor3<float> target(y.dimension(0), y.dimension(1), y.dimension(2));
  target.setConstant(0.25f);
  MeanSquaredError<float> loss;
  const float value = loss.forward(y, target, model.output_mask());
  if (!std::isfinite(value)) return "loss not finite";
  bad = first_non_finite(model.backward(loss.grad()));
  if (!bad.empty()) return "input gradient: " + bad;
  for (const auto& p : model.params()) {
    bad = first_non_finite(p.grad, p.size());
    if (!bad.empty()) return "gradient of " + p.name + ": " + bad;
  }
  return "";
}

std::string infer(Sequential<float>& model, const Tensor3<float>& x, const Mask& mask) {
  model.set_check_finite(true);
  const std::string bad = first_non_finite(model.predict(x, mask));
  return bad.empty() ? "" : "infer output: " + bad;
}

TEST(NumericalRobustness, HugeMagnitudesGiveFiniteOutputsAndGradients) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 4;
    RandomModel<float> m = random_model<float>(40000 + seed, RandomModelOptions().steps(T).allow_embedding(false).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 40000 + seed << ":" << m.recipe);
    Tensor3<float> x = random_input(m, B, T, 15000 + seed);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] *= 1e4f;
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 16000 + seed));
    EXPECT_EQ(infer(m.model, x, mask), "");
    EXPECT_EQ(train_step(m.model, x, mask), "");
  }
}

TEST(NumericalRobustness, AllEqualInputsGiveFiniteOutputsAndGradients) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 3;
    RandomModel<float> m = random_model<float>(50000 + seed, RandomModelOptions().steps(T).allow_embedding(false).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 50000 + seed << ":" << m.recipe);
    Tensor3<float> x(B, T, m.model.in_features());
    x.setConstant(0.75f);
    for (const Mask& mask : {Mask(), Mask::from_lengths({T, T, 1})}) {
      EXPECT_EQ(infer(m.model, x, mask), "");
      EXPECT_EQ(train_step(m.model, x, mask), "");
    }
  }
}

TEST(NumericalRobustness, OneStepAndOneSequenceGiveFiniteOutputsAndGradients) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    RandomModel<float> m =
        random_model<float>(60000 + seed, RandomModelOptions().steps(1).fixed_time(true).allow_batch_norm(false));
    SCOPED_TRACE(::testing::Message() << "model seed " << 60000 + seed << ":" << m.recipe);
    const Tensor3<float> x = random_input(m, 1, 1, 17000 + seed);
    EXPECT_EQ(infer(m.model, x, Mask()), "");
    EXPECT_EQ(train_step(m.model, x, Mask()), "");
    const Tensor3<float> x2 = random_input(m, 1, 1, 18000 + seed);
    EXPECT_EQ(infer(m.model, x2, Mask::from_lengths({0})), "");
  }
}

TEST(NumericalRobustness, ExtremeMagnitudesBehindANormLayerGiveFiniteOutputsAndGradients) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 4;
    RandomModel<float> m =
        random_model<float>(80000 + seed, RandomModelOptions().steps(T).allow_embedding(false).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 80000 + seed << ":" << m.recipe);
    const Index F = m.model.in_features();
    Sequential<float> model(F);
    if (seed % 2)
      model.add<LayerNorm<float>>();
    else
      model.add<BatchNorm<float>>(BatchNormOptions().momentum(0.0));
    model.add(m.model.clone());
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 16000 + seed));
    for (float magnitude : {1e30f, 3.3e38f}) {
      Tensor3<float> x = random_input(m, B, T, 15000 + seed);
      for (Index i = 0; i < x.size(); ++i) x.data()[i] = magnitude * (0.5f + 0.5f * std::abs(x.data()[i]));
      if (seed % 2) {  // BatchNorm: Train only (its Infer uses the running statistics, of magnitude 1)
        EXPECT_EQ(infer(model, x, mask), "") << "magnitude " << magnitude;
      }
      EXPECT_EQ(train_step(model, x, mask), "") << "magnitude " << magnitude;
    }
  }
}

TEST(NumericalRobustness, SequencesOfLengthZeroGiveFiniteOutputs) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 2;
    RandomModel<float> m = random_model<float>(70000 + seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 70000 + seed << ":" << m.recipe);
    const Tensor3<float> x = random_input(m, B, T, 19000 + seed);
    EXPECT_EQ(infer(m.model, x, Mask::from_lengths({0, 0})), "");
    EXPECT_EQ(infer(m.model, x, Mask::from_lengths({0, 1})), "");
  }
}

}  // namespace
