// SeqSelfAttention (additive): finite-difference gradients in double for every combination of width
// (none, 1..4), history_only, attention activation, each bias and the attention regularizer, on masked
// batches whose lengths include 0 and 1.
#include <gtest/gtest.h>

#include <tuple>

#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

// width (0 = none), history_only, activation, use_additive_bias, use_attention_bias, regularizer weight
using Case = std::tuple<Index, bool, Activation, bool, bool, double>;

SeqSelfAttentionOptions options_of(const Case& c) {
  const auto [width, history_only, activation, additive_bias, attention_bias, reg] = c;
  SeqSelfAttentionOptions o;
  o.units(3).history_only(history_only).attention_activation(activation).use_additive_bias(additive_bias);
  o.use_attention_bias(attention_bias).attention_regularizer_weight(reg).seed(17);
  o.bias_init(Init::uniform(-0.5, 0.5));
  if (width > 0) o.attention_width(width);
  return o;
}

// Parameters whose gradient is exactly zero by construction: with width 1 every valid query has one key
// (A = 1), and with a linear activation the softmax is invariant to ba.
std::vector<std::string> allowed_zero(const Case& c) {
  if (std::get<0>(c) == 1) return {"Wt", "Wx", "bh", "Wa", "ba"};
  if (std::get<2>(c) == Activation::Linear) return {"ba"};
  return {};
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [width, history_only, activation, additive_bias, attention_bias, reg] = info.param;
  return (width ? "w" + std::to_string(width) : std::string("global")) + (history_only ? "_history" : "") + "_" +
         to_string(activation) + (additive_bias ? "_bh" : "") + (attention_bias ? "_ba" : "") + (reg > 0 ? "_reg" : "");
}

}  // namespace

class SeqSelfAttentionAdditiveGradient : public ::testing::TestWithParam<Case> {};

TEST_P(SeqSelfAttentionAdditiveGradient, MatchesFiniteDifferencesOnMaskedBatches) {
  SeqSelfAttention<double> layer(4, options_of(GetParam()));
  const auto x = random_tensor(3, 6, 4, 11);
  for (const auto& lengths : {std::vector<Index>{6, 4, 1}, std::vector<Index>{5, 0, 2}}) {
    const auto result = check_layer_gradients(layer, x, Mask::from_lengths(lengths));
    EXPECT_TRUE(result.passed(allowed_zero(GetParam()))) << layer.describe() << " lengths " << lengths[0] << ","
                                                         << lengths[1] << "," << lengths[2] << ": " << result.report();
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptions, SeqSelfAttentionAdditiveGradient,
                         ::testing::Combine(::testing::Values(Index{0}, Index{1}, Index{2}, Index{3}, Index{4}),
                                            ::testing::Bool(),
                                            ::testing::Values(Activation::Linear, Activation::Sigmoid, Activation::Tanh,
                                                              Activation::ReLU, Activation::GELU),
                                            ::testing::Bool(), ::testing::Bool(), ::testing::Values(0.0, 0.3)),
                         case_name);

TEST(SeqSelfAttentionAdditive, UnmaskedBatchWithWeightRegularizers) {
  SeqSelfAttentionOptions o;
  o.units(3).attention_width(3).attention_activation(Activation::Tanh).seed(5);
  o.kernel_regularizer({0.01, 0.02}).bias_regularizer({0.03, 0.04}).bias_init(Init::uniform(-0.5, 0.5));
  SeqSelfAttention<double> layer(4, o);
  const auto result = check_layer_gradients(layer, random_tensor(2, 5, 4, 3));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_GT(layer.regularization_loss(), 0.0);
}

TEST(SeqSelfAttentionAdditive, SingleStepAndAllPaddedBatches) {
  SeqSelfAttention<double> layer(3, SeqSelfAttentionOptions().units(2).seed(8));
  // One step: A = 1, y = x.
  auto one = check_layer_gradients(layer, random_tensor(2, 1, 3, 4));
  EXPECT_TRUE(one.passed({"Wt", "Wx", "bh", "Wa", "ba"})) << one.report();
  // Every sequence empty: no gradient at all, and it must not be NaN.
  auto empty = check_layer_gradients(layer, random_tensor(2, 3, 3, 4), Mask::from_lengths({0, 0}));
  EXPECT_TRUE(empty.ok) << empty.report();
  EXPECT_EQ(empty.zero_gradients.size(), layer.params().size() + 1);  // x and every parameter
}
