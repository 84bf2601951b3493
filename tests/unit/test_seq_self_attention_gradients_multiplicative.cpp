// SeqSelfAttention (multiplicative): finite-difference gradients in double for every combination of width
// (none, 1..4), history_only, attention activation, the attention bias and the attention regularizer, on
// masked batches whose lengths include 0 and 1.
#include <gtest/gtest.h>

#include <tuple>

#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

// width (0 = none), history_only, activation, use_attention_bias, regularizer weight
using Case = std::tuple<Index, bool, Activation, bool, double>;

SeqSelfAttentionOptions options_of(const Case& c) {
  const auto [width, history_only, activation, attention_bias, reg] = c;
  SeqSelfAttentionOptions o;
  o.attention_type(AttentionType::Multiplicative).history_only(history_only).attention_activation(activation);
  o.use_attention_bias(attention_bias).attention_regularizer_weight(reg).seed(23);
  o.bias_init(Init::uniform(-0.5, 0.5));
  if (width > 0) o.attention_width(width);
  return o;
}

// With width 1 every valid query has one key (A = 1); with a linear activation the softmax ignores ba.
std::vector<std::string> allowed_zero(const Case& c) {
  if (std::get<0>(c) == 1) return {"Wa", "ba"};
  if (std::get<2>(c) == Activation::Linear) return {"ba"};
  return {};
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [width, history_only, activation, attention_bias, reg] = info.param;
  return (width ? "w" + std::to_string(width) : std::string("global")) + (history_only ? "_history" : "") + "_" +
         to_string(activation) + (attention_bias ? "_ba" : "") + (reg > 0 ? "_reg" : "");
}

}  // namespace

class SeqSelfAttentionMultiplicativeGradient : public ::testing::TestWithParam<Case> {};

TEST_P(SeqSelfAttentionMultiplicativeGradient, MatchesFiniteDifferencesOnMaskedBatches) {
  SeqSelfAttention<double> layer(4, options_of(GetParam()));
  const auto x = random_tensor(3, 6, 4, 12);
  for (const auto& lengths : {std::vector<Index>{6, 4, 1}, std::vector<Index>{5, 0, 2}}) {
    const auto result = check_layer_gradients(layer, x, Mask::from_lengths(lengths));
    EXPECT_TRUE(result.passed(allowed_zero(GetParam()))) << layer.describe() << " lengths " << lengths[0] << ","
                                                         << lengths[1] << "," << lengths[2] << ": " << result.report();
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptions, SeqSelfAttentionMultiplicativeGradient,
                         ::testing::Combine(::testing::Values(Index{0}, Index{1}, Index{2}, Index{3}, Index{4}),
                                            ::testing::Bool(),
                                            ::testing::Values(Activation::Linear, Activation::Sigmoid, Activation::Tanh,
                                                              Activation::ReLU, Activation::GELU),
                                            ::testing::Bool(), ::testing::Values(0.0, 0.3)),
                         case_name);

TEST(SeqSelfAttentionMultiplicative, UnmaskedBatchWithWeightRegularizers) {
  SeqSelfAttentionOptions o;
  o.attention_type(AttentionType::Multiplicative).attention_activation(Activation::Sigmoid).seed(6);
  o.kernel_regularizer({0.01, 0.02}).bias_regularizer({0.03, 0.04}).bias_init(Init::uniform(-0.5, 0.5));
  o.attention_regularizer_weight(0.1);
  SeqSelfAttention<double> layer(4, o);
  const auto result = check_layer_gradients(layer, random_tensor(2, 5, 4, 3));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_GT(layer.regularization_loss(), 0.0);
}

TEST(SeqSelfAttentionMultiplicative, LengthOneSequencesOnly) {
  SeqSelfAttention<double> layer(3, SeqSelfAttentionOptions().attention_type(AttentionType::Multiplicative).seed(9));
  const auto result = check_layer_gradients(layer, random_tensor(3, 4, 3, 5), Mask::from_lengths({1, 1, 0}));
  EXPECT_TRUE(result.passed({"Wa", "ba"})) << result.report();
  EXPECT_TRUE(result.zero("Wa"));  // a single key gets weight 1 whatever its score
}
