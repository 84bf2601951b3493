// TemporalAttention with step masks (core/mask.hpp: holes, left padding), in double, shared or not, with or
// without bias:
//   - equals a naive reference written from the header's rule: z[f, t] = sum over kept i of x[i, f] W[i, t] + b[t]
//     for kept t (W indexed by position), softmax over the kept steps, masked steps 0 (outputs and attention());
//   - finite-difference gradients with random step masks;
//   - kept outputs bitwise unchanged when the values at masked steps become garbage (finite up to 1e3, NaN, Inf);
//     dx at kept steps and parameter gradients unchanged by finite garbage, dx exactly 0 at masked steps;
//   - the layer's error when a step mask does not fit the input.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

constexpr Index kB = 6, kT = 7, kF = 3;

TemporalAttention<double> make_layer(bool shared, bool use_bias) {
  TemporalAttention<double> layer(kF, kT, TemporalAttentionOptions().shared(shared).use_bias(use_bias).seed(4));
  if (use_bias) layer.bias().setRandom();
  return layer;
}

// Naive loops: the attention a (B, T, F) and output y of the header's rule, reading x only at kept steps.
std::pair<Tensor3<double>, Tensor3<double>> reference(TemporalAttention<double>& layer, const Tensor3<double>& x,
                                                      const Mask& mask) {
  Tensor3<double> a(kB, kT, kF), y(kB, kT, kF);
  a.setZero();
  y.setZero();
  const bool shared = layer.options().shared();
  for (Index b = 0; b < kB; ++b) {
    std::vector<std::vector<double>> p(kF, std::vector<double>(kT, 0.0));
    for (Index f = 0; f < kF; ++f) {
      double mx = -INFINITY;
      for (Index t = 0; t < kT; ++t) {
        if (!mask.valid(b, t, kT)) continue;
        double z = layer.options().use_bias() ? layer.bias()(t) : 0.0;
        for (Index i = 0; i < kT; ++i)
          if (mask.valid(b, i, kT)) z += x(b, i, f) * layer.kernel()(i, t);
        p[f][t] = z;
        mx = std::max(mx, z);
      }
      double sum = 0;
      for (Index t = 0; t < kT; ++t)
        if (mask.valid(b, t, kT)) sum += (p[f][t] = std::exp(p[f][t] - mx));
      for (Index t = 0; t < kT; ++t)
        if (mask.valid(b, t, kT)) p[f][t] /= sum;
    }
    for (Index t = 0; t < kT; ++t) {
      if (!mask.valid(b, t, kT)) continue;
      double mean = 0;
      for (Index f = 0; f < kF; ++f) mean += p[f][t] / kF;
      for (Index f = 0; f < kF; ++f) {
        a(b, t, f) = shared ? mean : p[f][t];
        y(b, t, f) = x(b, t, f) * a(b, t, f);
      }
    }
  }
  return {a, y};
}

}  // namespace

class TemporalAttentionStepMask : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(TemporalAttentionStepMask, EqualsNaiveReferenceOverKeptSteps) {
  const auto [shared, use_bias] = GetParam();
  TemporalAttention<double> layer = make_layer(shared, use_bias);
  for (std::uint64_t seed : {1, 2, 3}) {
    const Mask mask = random_step_mask(kB, kT, seed);
    const auto x = random_tensor(kB, kT, kF, 10 + seed);
    const Tensor3<double> y = layer.forward(x, mask);
    const auto [a_ref, y_ref] = reference(layer, x, mask);
    for (Index i = 0; i < y.size(); ++i) {
      EXPECT_NEAR(y.data()[i], y_ref.data()[i], 1e-14) << "y[" << i << "] mask seed " << seed;
      EXPECT_NEAR(layer.attention().data()[i], a_ref.data()[i], 1e-14) << "a[" << i << "] mask seed " << seed;
    }
    EXPECT_EQ(seqattn::testing::masked_nonzero(y, mask), "");
  }
}

TEST_P(TemporalAttentionStepMask, MatchesFiniteDifferences) {
  const auto [shared, use_bias] = GetParam();
  TemporalAttention<double> layer = make_layer(shared, use_bias);
  for (std::uint64_t seed : {4, 5}) {
    const auto result =
        check_layer_gradients(layer, random_tensor(kB, kT, kF, 30 + seed), random_step_mask(kB, kT, seed));
    EXPECT_TRUE(result.passed()) << layer.describe() << " mask seed " << seed << ": " << result.report();
  }
}

TEST_P(TemporalAttentionStepMask, KeptResultsIgnoreMaskedValues) {
  const auto [shared, use_bias] = GetParam();
  TemporalAttention<double> layer = make_layer(shared, use_bias);
  seqattn::testing::expect_masked_values_ignored(layer, random_tensor(kB, kT, kF, 40), random_step_mask(kB, kT, 6), 41);
}

INSTANTIATE_TEST_SUITE_P(SharedAndBias, TemporalAttentionStepMask,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(TemporalAttentionStepMaskErrors, StepMaskOfOtherTIsRefusedWithTheLayersName) {
  TemporalAttention<double> layer = make_layer(false, true);
  EXPECT_TRUE(layer.supports_step_masks());
  seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(kB, kT, kF, 50));
}
