// SeqSelfAttention with step masks (core/mask.hpp: holes, left padding), in double, for both attention types,
// widths none, 1, 3, 4 and wider than T, history_only on and off, every activation, with and without biases and
// the attention regularizer:
//   - the fast path equals the naive loops of detail/seq_self_attention_reference.hpp, whose key rule also asks
//     both steps to be kept (outputs, dense attention weights, attention penalty);
//   - finite-difference gradients (input, every parameter, the regularizer) with random step masks;
//   - kept outputs bitwise unchanged when the values at masked steps become garbage (finite up to 1e3, NaN, Inf);
//     dx at kept steps and parameter gradients unchanged by finite garbage, dx exactly 0 at masked steps;
//   - attention() is 0 in masked rows and columns, kept rows sum to 1;
//   - global attention (with or without history_only) on the kept steps equals the layer on the compacted batch
//     (kept steps only, as lengths): outputs, penalty, dx at kept steps, parameter gradients;
//   - the layer's error when a step mask does not fit the input.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/detail/seq_self_attention_reference.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::compact_kept;
using seqattn::testing::kept_steps;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

// attention type, width (0 = none), history_only, activation, biases (additive and attention), regularizer weight
using Case = std::tuple<AttentionType, Index, bool, Activation, bool, double>;

SeqSelfAttentionOptions options_of(const Case& c) {
  const auto [type, width, history_only, activation, biases, reg] = c;
  SeqSelfAttentionOptions o;
  o.attention_type(type).units(3).history_only(history_only).attention_activation(activation);
  o.use_additive_bias(biases).use_attention_bias(biases).attention_regularizer_weight(reg).seed(23);
  o.bias_init(Init::uniform(0.2, 1.0));  // ba > 0: ReLU keeps some scores
  if (width > 0) o.attention_width(width);
  return o;
}

// Parameters whose gradient is exactly 0 by construction: with width 1 a kept query has one key (A = 1), and with
// a linear activation the softmax is invariant to ba. Additive ReLU without ba: the few kept scores of some
// masks are all negative (the test data cannot avoid it for every mask), so the weights are flat; with ba (> 0)
// they are often all positive, where ReLU is linear and the softmax invariant to ba.
std::vector<std::string> allowed_zero(const Case& c) {
  if (std::get<1>(c) == 1) return {"Wt", "Wx", "bh", "Wa", "ba"};
  if (std::get<3>(c) == Activation::ReLU && !std::get<4>(c) && std::get<0>(c) == AttentionType::Additive)
    return {"Wt", "Wx", "Wa"};
  if (std::get<3>(c) == Activation::Linear) return {"ba"};
  if (std::get<3>(c) == Activation::ReLU) return {"ba"};  // ReLU of scores all above 0 is linear
  return {};
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [type, width, history_only, activation, biases, reg] = info.param;
  return to_string(type) + (width ? "_w" + std::to_string(width) : std::string("_global")) +
         (history_only ? "_history" : "") + "_" + to_string(activation) + (biases ? "_biases" : "") +
         (reg > 0 ? "_reg" : "");
}

double max_diff(const Tensor3<double>& a, const Tensor3<double>& b) {
  double worst = 0.0;
  for (Index i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a.data()[i] - b.data()[i]));
  return worst;
}

constexpr Index kB = 5, kT = 7, kF = 3;

}  // namespace

class SeqSelfAttentionStepMask : public ::testing::TestWithParam<Case> {};

TEST_P(SeqSelfAttentionStepMask, EqualsNaiveReferenceWithKeptSteps) {
  SeqSelfAttention<double> layer(kF, options_of(GetParam()));
  const auto x = random_tensor(kB, kT, kF, 41);
  for (std::uint64_t seed : {1, 2, 3}) {
    const Mask mask = random_step_mask(kB, kT, seed);
    ASSERT_TRUE(mask.has_holes());
    const Tensor3<double> y = layer.forward(x, mask);
    const auto ref = detail::seq_self_attention_reference(layer, x, mask);
    EXPECT_LE(max_diff(y, ref.y), 1e-13) << layer.describe() << " mask seed " << seed;
    EXPECT_LE(max_diff(layer.attention(), ref.A), 1e-13) << layer.describe() << " mask seed " << seed;
    EXPECT_NEAR(layer.regularization_loss(), ref.attention_penalty, 1e-13 * (1 + std::abs(ref.attention_penalty)));
  }
}

TEST_P(SeqSelfAttentionStepMask, MatchesFiniteDifferences) {
  SeqSelfAttention<double> layer(kF, options_of(GetParam()));
  const auto x = random_tensor(kB, kT, kF, 43);
  for (std::uint64_t seed : {4, 5}) {
    const auto result = check_layer_gradients(layer, x, random_step_mask(kB, kT, seed));
    EXPECT_TRUE(result.passed(allowed_zero(GetParam())))
        << layer.describe() << " mask seed " << seed << ": " << result.report();
  }
}

TEST_P(SeqSelfAttentionStepMask, KeptResultsIgnoreMaskedValues) {
  SeqSelfAttention<double> layer(kF, options_of(GetParam()));
  const auto x = random_tensor(kB, kT, kF, 47);
  const Mask mask = random_step_mask(kB, kT, 6);
  seqattn::testing::expect_masked_values_ignored(layer, x, mask, 8);
  // the attention regularizer too (it sums over kept rows and columns only)
  layer.forward(x, mask);
  const double clean = layer.regularization_loss();
  layer.forward(seqattn::testing::with_masked_values(x, mask, [](Index) { return std::nan(""); }), mask);
  EXPECT_TRUE(seqattn::testing::same_bits(clean, layer.regularization_loss()));
}

TEST_P(SeqSelfAttentionStepMask, AttentionIsZeroAtMaskedStepsAndKeptRowsSumToOne) {
  SeqSelfAttention<double> layer(kF, options_of(GetParam()));
  const Mask mask = random_step_mask(kB, kT, 9);
  layer.forward(random_tensor(kB, kT, kF, 53), mask);
  const Tensor3<double> A = layer.attention();
  for (Index b = 0; b < kB; ++b)
    for (Index t = 0; t < kT; ++t) {
      double sum = 0;
      for (Index s = 0; s < kT; ++s) {
        if (!mask.valid(b, t, kT) || !mask.valid(b, s, kT)) {
          EXPECT_EQ(A(b, t, s), 0.0) << b << ", " << t << ", " << s;
        }
        sum += A(b, t, s);
      }
      // a kept query always keeps itself as a key
      if (mask.valid(b, t, kT)) {
        EXPECT_NEAR(sum, 1.0, 1e-14) << "row " << b << ", " << t;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(AllOptions, SeqSelfAttentionStepMask,
                         ::testing::Combine(::testing::Values(AttentionType::Additive, AttentionType::Multiplicative),
                                            ::testing::Values(Index{0}, Index{1}, Index{3}, Index{4}, Index{20}),
                                            ::testing::Bool(),
                                            ::testing::Values(Activation::Linear, Activation::Sigmoid, Activation::Tanh,
                                                              Activation::ReLU, Activation::GELU),
                                            ::testing::Bool(), ::testing::Values(0.0, 0.3)),
                         case_name);

// Global attention (keys: every kept step, or with history_only the kept steps up to t) is the same on the
// compacted batch: the kept steps moved to the front, in order, as lengths.
class SeqSelfAttentionStepMaskCompaction
    : public ::testing::TestWithParam<std::tuple<AttentionType, bool, Activation, bool>> {};

TEST_P(SeqSelfAttentionStepMaskCompaction, EqualsLayerOnKeptStepsAsLengths) {
  const auto [type, history_only, activation, biases] = GetParam();
  SeqSelfAttention<double> layer(kF, options_of({type, 0, history_only, activation, biases, 0.3}));
  const auto x = random_tensor(kB, kT, kF, 59);
  for (std::uint64_t seed : {10, 11, 12}) {
    SCOPED_TRACE("mask seed " + std::to_string(seed));
    const Mask mask = random_step_mask(kB, kT, seed);
    const auto [xc, mc] = compact_kept(x, mask);
    const Tensor3<double> dy = random_tensor(kB, kT, kF, seed + 100);
    Tensor3<double> dyc = random_tensor(kB, kT, kF, seed + 200);  // other values at the compacted padding
    for (Index b = 0; b < kB; ++b) {
      const auto kept = kept_steps(mask, b, kT);
      for (size_t k = 0; k < kept.size(); ++k)
        for (Index f = 0; f < kF; ++f) dyc(b, Index(k), f) = dy(b, kept[k], f);
    }
    const auto a = seqattn::testing::run_with_gradients(layer, x, mask, dy);
    const double penalty = layer.regularization_loss();
    const auto c = seqattn::testing::run_with_gradients(layer, xc, mc, dyc);
    EXPECT_NEAR(penalty, layer.regularization_loss(), 1e-13 * (1 + penalty));
    for (Index b = 0; b < kB; ++b) {
      const auto kept = kept_steps(mask, b, kT);
      for (Index t = 0; t < kT; ++t)
        if (!mask.valid(b, t, kT))
          for (Index f = 0; f < kF; ++f) {
            EXPECT_EQ(a.y(b, t, f), 0.0) << "output at masked step " << b << ", " << t;
            EXPECT_EQ(a.dx(b, t, f), 0.0) << "dx at masked step " << b << ", " << t;
          }
      for (size_t k = 0; k < kept.size(); ++k)
        for (Index f = 0; f < kF; ++f) {
          EXPECT_NEAR(a.y(b, kept[k], f), c.y(b, Index(k), f), 1e-14) << b << ", " << kept[k];
          EXPECT_NEAR(a.dx(b, kept[k], f), c.dx(b, Index(k), f), 1e-13) << b << ", " << kept[k];
        }
    }
    ASSERT_EQ(a.grads.size(), c.grads.size());
    for (size_t i = 0; i < a.grads.size(); ++i)
      for (size_t j = 0; j < a.grads[i].size(); ++j)
        EXPECT_NEAR(a.grads[i][j], c.grads[i][j], 1e-13 * (1 + std::abs(c.grads[i][j])))
            << "param " << i << "[" << j << "]";
  }
}

INSTANTIATE_TEST_SUITE_P(Global, SeqSelfAttentionStepMaskCompaction,
                         ::testing::Combine(::testing::Values(AttentionType::Additive, AttentionType::Multiplicative),
                                            ::testing::Bool(),
                                            ::testing::Values(Activation::Linear, Activation::Tanh, Activation::GELU),
                                            ::testing::Bool()));

TEST(SeqSelfAttentionStepMaskErrors, StepMaskOfOtherTIsRefusedWithTheLayersName) {
  for (AttentionType type : {AttentionType::Additive, AttentionType::Multiplicative}) {
    SeqSelfAttention<double> layer(kF, SeqSelfAttentionOptions().attention_type(type).units(3).seed(1));
    EXPECT_TRUE(layer.supports_step_masks());
    seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(kB, kT, kF, 61));
  }
}

// Windows count positions, not kept steps: with width 3 and history_only, query 4 of {1, 0, 0, 1, 1} sees the
// kept steps of [2, 4] only (3 and 4), not step 0 although it is the third kept step back.
TEST(SeqSelfAttentionStepMaskWindow, WindowsCountPositions) {
  SeqSelfAttention<double> layer(kF, SeqSelfAttentionOptions().units(3).attention_width(3).history_only(true).seed(2));
  layer.forward(random_tensor(1, 5, kF, 67), Mask::from_steps({{1, 0, 0, 1, 1}}));
  const Tensor3<double> A = layer.attention();
  EXPECT_EQ(A(0, 4, 0), 0.0);
  EXPECT_GT(A(0, 4, 3), 0.0);
  EXPECT_GT(A(0, 4, 4), 0.0);
  EXPECT_EQ(A(0, 3, 0), 0.0);  // [1, 3]: steps 1 and 2 masked, so only 3 itself
  EXPECT_EQ(A(0, 3, 3), 1.0);
  EXPECT_EQ(A(0, 0, 0), 1.0);
}
