// FeatureAttention with step masks (core/mask.hpp: holes, left padding), in double, shared or not, with or
// without bias:
//   - the layer on the kept steps equals the layer on the compacted batch (kept steps moved to the front, as
//     lengths): the softmax is per step and the shared mean runs over the kept steps; outputs bitwise, dx at kept
//     steps and parameter gradients to rounding; 0 at masked output steps, dx exactly 0 there;
//   - finite-difference gradients with random step masks;
//   - kept outputs bitwise unchanged when the values at masked steps become garbage (finite up to 1e3, NaN, Inf);
//     dx at kept steps and parameter gradients unchanged by finite garbage;
//   - attention() is 0 at masked steps;
//   - the layer's error when a step mask does not fit the input.
#include <gtest/gtest.h>

#include <tuple>

#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

constexpr Index kB = 6, kT = 7, kF = 4;

FeatureAttention<double> make_layer(bool shared, bool use_bias) {
  FeatureAttention<double> layer(kF, FeatureAttentionOptions().shared(shared).use_bias(use_bias).seed(9));
  if (use_bias) layer.bias().setRandom();
  return layer;
}

}  // namespace

class FeatureAttentionStepMask : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(FeatureAttentionStepMask, EqualsLayerOnCompactedKeptSteps) {
  const auto [shared, use_bias] = GetParam();
  FeatureAttention<double> layer = make_layer(shared, use_bias);
  for (std::uint64_t seed : {1, 2, 3})
    seqattn::testing::expect_compaction_equivalent(layer, random_tensor(kB, kT, kF, 10 + seed),
                                                   random_step_mask(kB, kT, seed), 20 + seed);
}

TEST_P(FeatureAttentionStepMask, MatchesFiniteDifferences) {
  const auto [shared, use_bias] = GetParam();
  FeatureAttention<double> layer = make_layer(shared, use_bias);
  for (std::uint64_t seed : {4, 5}) {
    const auto result =
        check_layer_gradients(layer, random_tensor(kB, kT, kF, 30 + seed), random_step_mask(kB, kT, seed));
    EXPECT_TRUE(result.passed()) << layer.describe() << " mask seed " << seed << ": " << result.report();
  }
}

TEST_P(FeatureAttentionStepMask, KeptResultsIgnoreMaskedValues) {
  const auto [shared, use_bias] = GetParam();
  FeatureAttention<double> layer = make_layer(shared, use_bias);
  const Mask mask = random_step_mask(kB, kT, 6);
  const auto x = random_tensor(kB, kT, kF, 40);
  seqattn::testing::expect_masked_values_ignored(layer, x, mask, 41);
  layer.forward(x, mask);
  const Tensor3<double>& a = layer.attention();
  for (Index b = 0; b < kB; ++b)
    for (Index t = 0; t < kT; ++t)
      for (Index f = 0; f < kF; ++f)
        if (!mask.valid(b, t, kT)) {
          EXPECT_EQ(a(b, t, f), 0.0) << b << ", " << t << ", " << f;
        }
}

INSTANTIATE_TEST_SUITE_P(SharedAndBias, FeatureAttentionStepMask,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(FeatureAttentionStepMaskErrors, StepMaskOfOtherTIsRefusedWithTheLayersName) {
  FeatureAttention<double> layer = make_layer(true, true);
  EXPECT_TRUE(layer.supports_step_masks());
  seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(kB, kT, kF, 50));
}
