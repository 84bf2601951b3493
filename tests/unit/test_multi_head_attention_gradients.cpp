// MultiHeadAttention: finite-difference gradients in double for every option that changes the math
// (heads, head_size, output_features, causal, bias, projection activation), with masked batches (lengths
// 0 and 1), self-attention through check_layer_gradients and cross-attention (Tq != Tk) through
// check_gradients, and attention dropout with a replayed mask. attention_window (causal sliding windows, banded):
// w = 1, 2, 3, w >= T and w far above T, several strips of query rows, heads > 1, masks with lengths 0 and 1,
// cross-attention with queries past the last key's window, and with attention dropout.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::random_tensor;

namespace {

struct SelfCase {
  const char* name;
  Index features, heads;
  std::optional<Index> head_size, output_features;
  bool causal, use_bias;
  Activation activation;
  Index T;
  std::vector<Index> lengths;  // empty: no mask
  std::optional<Index> window = std::nullopt;
};

std::ostream& operator<<(std::ostream& out, const SelfCase& c) { return out << c.name; }

class MultiHeadAttentionSelfGradient : public ::testing::TestWithParam<SelfCase> {};

TEST_P(MultiHeadAttentionSelfGradient, MatchesFiniteDifferences) {
  const SelfCase& c = GetParam();
  MultiHeadAttention<double> mha(c.features, c.heads,
                                 MultiHeadAttentionOptions()
                                     .head_size(c.head_size)
                                     .output_features(c.output_features)
                                     .causal(c.causal)
                                     .attention_window(c.window)
                                     .use_bias(c.use_bias)
                                     .activation(c.activation)
                                     .bias_init(Init::uniform(-0.5, 0.5))
                                     .seed(3));
  const Index B = c.lengths.empty() ? 2 : static_cast<Index>(c.lengths.size());
  const auto x = random_tensor(B, c.T, c.features, 17);
  const Mask mask = c.lengths.empty() ? Mask() : Mask::from_lengths(c.lengths);
  const auto result = check_layer_gradients(mha, x, mask);
  // bk only shifts every score of a query row by the same amount (softmax is shift invariant): its gradient
  // is 0 up to rounding without an activation on k. A window of one key gives every weight 1: the scores, so
  // q and k, do not reach the output.
  if (c.window == Index{1}) {
    EXPECT_TRUE(result.passed({"bk", "Wq", "bq", "Wk"})) << result.report();
    return;
  }
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
  if (c.activation != Activation::Linear && c.use_bias) {
    EXPECT_FALSE(result.zero("bk")) << result.report();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Options, MultiHeadAttentionSelfGradient,
    ::testing::Values(
        SelfCase{"one_head", 4, 1, std::nullopt, std::nullopt, false, true, Activation::Linear, 4, {}},
        SelfCase{
            "three_heads_masked", 6, 3, std::nullopt, std::nullopt, false, true, Activation::Linear, 5, {5, 2, 0, 1}},
        SelfCase{"head_size_and_output_features", 5, 2, 3, 4, false, true, Activation::Linear, 4, {4, 1, 3}},
        SelfCase{"causal_masked", 4, 2, std::nullopt, std::nullopt, true, true, Activation::Linear, 5, {5, 3, 1, 0}},
        SelfCase{"causal_no_bias", 6, 2, std::nullopt, std::nullopt, true, false, Activation::Linear, 4, {4, 2}},
        SelfCase{"no_bias_masked", 4, 4, std::nullopt, std::nullopt, false, false, Activation::Linear, 4, {3, 0, 4}},
        SelfCase{"tanh_projections", 4, 2, std::nullopt, std::nullopt, false, true, Activation::Tanh, 4, {4, 2, 1}},
        SelfCase{"gelu_projections_causal", 4, 2, std::nullopt, std::nullopt, true, true, Activation::GELU, 4, {3, 4}},
        SelfCase{"sigmoid_projections", 3, 1, 2, std::nullopt, false, true, Activation::Sigmoid, 3, {3, 1}},
        // more steps than one causal block (64 rows), so the blocked score GEMMs are checked too
        SelfCase{
            "causal_several_blocks", 2, 1, std::nullopt, std::nullopt, true, true, Activation::Linear, 70, {70, 66}},
        SelfCase{"window_one_masked", 4, 2, {}, {}, true, true, Activation::Linear, 5, {5, 3, 1, 0}, 1},
        SelfCase{"window_two_three_heads", 6, 3, {}, {}, true, true, Activation::Linear, 6, {6, 4, 2, 1}, 2},
        SelfCase{"window_three_tanh_no_bias", 4, 2, {}, {}, true, false, Activation::Tanh, 6, {6, 5, 0}, 3},
        SelfCase{"window_head_size_output_features", 5, 2, 3, 4, true, true, Activation::Linear, 6, {6, 3, 1}, 2},
        SelfCase{"window_equal_to_T", 4, 2, {}, {}, true, true, Activation::GELU, 5, {5, 2}, 5},
        SelfCase{"window_far_above_T", 4, 2, {}, {}, true, true, Activation::Linear, 4, {4, 3, 1}, 1000000000},
        // 40 steps: strips of 12 query rows, so a key's gradient sums over two strips
        SelfCase{"window_several_strips", 2, 1, {}, {}, true, true, Activation::Linear, 40, {40, 29}, 4}),
    [](const ::testing::TestParamInfo<SelfCase>& info) { return std::string(info.param.name); });

// Checks dxq, dxkv and every parameter gradient of a cross-attention call against finite differences.
seqattn::testing::GradCheckResult check_cross(MultiHeadAttention<double>& mha, Tensor3<double> xq, const Mask& mq,
                                              Tensor3<double> xkv, const Mask& mkv, Mode mode = Mode::Infer,
                                              std::optional<std::uint64_t> dropout_seed = std::nullopt) {
  const Tensor3<double> R = random_tensor(xq.dimension(0), xq.dimension(1), mha.out_features(), 99);  // L = sum(y * R)
  auto loss = [&]() {
    if (dropout_seed) mha.set_dropout_seed(*dropout_seed);
    const Tensor3<double>& y = mha.forward(xq, mq, xkv, mkv, mode);
    double l = 0;
    for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * R.data()[i];
    return l;
  };
  loss();
  mha.zero_grad();
  const Tensor3<double> dxq = mha.backward_cross(xq, mq, xkv, mkv, R);
  const Tensor3<double> dxkv = mha.key_input_grad();
  ParamList<double> params = mha.params();
  std::vector<std::vector<double>> grads;
  for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
  std::vector<GradTarget> targets{{"xq", xq.data(), dxq.data(), xq.size()},
                                  {"xkv", xkv.data(), dxkv.data(), xkv.size()}};
  for (size_t k = 0; k < params.size(); ++k)
    targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
  return check_gradients(loss, targets);
}

TEST(MultiHeadAttentionCrossGradient, QueriesShorterThanKeysWithMasks) {
  MultiHeadAttention<double> mha(
      4, 2, MultiHeadAttentionOptions().key_features(3).output_features(5).seed(5).bias_init(Init::uniform(-0.5, 0.5)));
  const auto xq = random_tensor(3, 3, 4, 21);
  const auto xkv = random_tensor(3, 6, 3, 22);
  const auto result = check_cross(mha, xq, Mask::from_lengths({3, 1, 2}), xkv, Mask::from_lengths({6, 1, 0}));
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
}

TEST(MultiHeadAttentionCrossGradient, CausalQueriesLongerThanKeys) {
  MultiHeadAttention<double> mha(
      3, 3, MultiHeadAttentionOptions().key_features(5).head_size(2).causal(true).activation(Activation::Tanh).seed(6));
  const auto xq = random_tensor(2, 6, 3, 23);
  const auto xkv = random_tensor(2, 4, 5, 24);
  const auto result = check_cross(mha, xq, Mask::from_lengths({6, 5}), xkv, Mask::from_lengths({4, 2}));
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(MultiHeadAttentionCrossGradient, WithoutBiasOrMasks) {
  MultiHeadAttention<double> mha(4, 4, MultiHeadAttentionOptions().key_features(2).use_bias(false).seed(8));
  const auto result = check_cross(mha, random_tensor(2, 2, 4, 25), Mask(), random_tensor(2, 5, 2, 26), Mask());
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(mha.params().size(), 4u);
}

// With the dropout Rng reseeded before every forward, each forward draws the same mask, so finite
// differences check the backward through the dropped probabilities.
TEST(MultiHeadAttentionCrossGradient, AttentionDropoutWithReplayedMask) {
  MultiHeadAttention<double> mha(4, 2, MultiHeadAttentionOptions().attention_dropout(0.4).key_features(3).seed(9));
  const auto xq = random_tensor(2, 4, 4, 27);
  const auto xkv = random_tensor(2, 5, 3, 28);
  const auto result =
      check_cross(mha, xq, Mask::from_lengths({4, 3}), xkv, Mask::from_lengths({5, 2}), Mode::Train, 1234);
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
}

// Queries past the last key's window (t >= len_kv + w - 1) have no key: dead rows, as without keys.
TEST(MultiHeadAttentionCrossGradient, CausalWindowWithQueriesPastTheKeys) {
  MultiHeadAttention<double> mha(3, 2,
                                 MultiHeadAttentionOptions()
                                     .key_features(5)
                                     .head_size(2)
                                     .causal(true)
                                     .attention_window(2)
                                     .bias_init(Init::uniform(-0.5, 0.5))
                                     .seed(10));
  const auto xq = random_tensor(3, 7, 3, 29);
  const auto xkv = random_tensor(3, 4, 5, 30);
  const auto result = check_cross(mha, xq, Mask::from_lengths({7, 5, 2}), xkv, Mask::from_lengths({4, 2, 0}));
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
}

TEST(MultiHeadAttentionCrossGradient, WindowWithAttentionDropoutAndReplayedMask) {
  MultiHeadAttention<double> mha(
      4, 2,
      MultiHeadAttentionOptions().attention_dropout(0.3).causal(true).attention_window(3).key_features(3).seed(11));
  const auto xq = random_tensor(2, 6, 4, 31);
  const auto xkv = random_tensor(2, 6, 3, 32);
  const auto result =
      check_cross(mha, xq, Mask::from_lengths({6, 4}), xkv, Mask::from_lengths({6, 5}), Mode::Train, 4321);
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
}

}  // namespace
