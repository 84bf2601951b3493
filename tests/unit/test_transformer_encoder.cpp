// TransformerEncoderBlock: gradient checks for post-norm and pre-norm, GELU and ReLU, causal, masked batches;
// padding invariance; option errors; attention_window (gradients for w = 1, 2 and w >= T, post- and pre-norm,
// errors, the description).
#include <gtest/gtest.h>

#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

class TransformerEncoderGradient : public ::testing::TestWithParam<std::tuple<bool, Activation, bool>> {};

TEST_P(TransformerEncoderGradient, MatchesFiniteDifferences) {
  const auto [norm_first, activation, causal] = GetParam();
  TransformerEncoderBlock<double> block(
      4, 2, 6, TransformerEncoderOptions().norm_first(norm_first).activation(activation).causal(causal).seed(5));
  // Non-zero biases: with zero biases a padded (all-zero) step sits exactly on ReLU's kink.
  seqattn::Rng rng(9);
  for (auto& p : block.params())
    for (Index i = 0; i < p.size(); ++i) p.value[i] += rng.uniform(-0.2, 0.2);
  const auto result = check_layer_gradients(block, random_tensor(3, 4, 4, 17), Mask::from_lengths({4, 1, 0}));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(block.params().size(), 16u);
}

INSTANTIATE_TEST_SUITE_P(PrePostActCausal, TransformerEncoderGradient,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(Activation::GELU, Activation::ReLU),
                                            ::testing::Bool()));

class TransformerEncoderWindowGradient : public ::testing::TestWithParam<std::tuple<bool, Index>> {};

TEST_P(TransformerEncoderWindowGradient, MatchesFiniteDifferences) {
  const auto [norm_first, window] = GetParam();
  TransformerEncoderBlock<double> block(
      4, 2, 6, TransformerEncoderOptions().norm_first(norm_first).causal(true).attention_window(window).seed(6));
  seqattn::Rng rng(10);
  for (auto& p : block.params())
    for (Index i = 0; i < p.size(); ++i) p.value[i] += rng.uniform(-0.2, 0.2);
  const auto result = check_layer_gradients(block, random_tensor(4, 5, 4, 18), Mask::from_lengths({5, 4, 1, 0}));
  // one key per query: every weight is 1, the scores (so q and k) do not reach the output
  if (window == 1)
    EXPECT_TRUE(result.passed({"mha.Wq", "mha.bq", "mha.Wk", "mha.bk"})) << result.report();
  else
    EXPECT_TRUE(result.passed()) << result.report();
}

INSTANTIATE_TEST_SUITE_P(PrePostWindow, TransformerEncoderWindowGradient,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(Index{1}, Index{2}, Index{5})));

TEST(TransformerEncoder, ValidOutputsIgnorePadding) {
  for (bool norm_first : {false, true}) {
    TransformerEncoderBlock<double> block(4, 2, 8, TransformerEncoderOptions().norm_first(norm_first).seed(3));
    const auto x = random_tensor(2, 3, 4, 1);
    const Tensor3<double> y = block.forward(x, Mask::from_lengths({3, 2}));
    auto padded = random_tensor(2, 6, 4, 2);  // longer, with different padded values
    for (Index b = 0; b < 2; ++b)
      for (Index t = 0; t < 3; ++t)
        for (Index f = 0; f < 4; ++f) padded(b, t, f) = x(b, t, f);
    const Tensor3<double>& y2 = block.forward(padded, Mask::from_lengths({3, 2}));
    for (Index b = 0; b < 2; ++b)
      for (Index t = 0; t < (b == 0 ? 3 : 2); ++t)
        for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(b, t, f), y2(b, t, f)) << "b=" << b << " t=" << t;
  }
}

TEST(TransformerEncoder, CausalOutputsIgnoreTheFuture) {
  TransformerEncoderBlock<double> block(4, 2, 8, TransformerEncoderOptions().causal(true).seed(3));
  auto x = random_tensor(1, 5, 4, 1);
  const Tensor3<double> y = block.forward(x);
  for (Index f = 0; f < 4; ++f) x(0, 4, f) += 1.0;
  const Tensor3<double>& y2 = block.forward(x);
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(0, t, f), y2(0, t, f));
  EXPECT_NE(y(0, 4, 0), y2(0, 4, 0));
}

TEST(TransformerEncoder, DropoutOnlyInTrain) {
  TransformerEncoderBlock<double> block(4, 2, 8, TransformerEncoderOptions().dropout(0.5).seed(3));
  TransformerEncoderBlock<double> plain(4, 2, 8, TransformerEncoderOptions().seed(3));
  const auto x = random_tensor(2, 3, 4, 1);
  const Tensor3<double> infer = block.forward(x, Mask(), Mode::Infer);
  const Tensor3<double>& ref = plain.forward(x, Mask(), Mode::Infer);
  for (Index i = 0; i < infer.size(); ++i) EXPECT_EQ(infer.data()[i], ref.data()[i]);
  const Tensor3<double>& train = block.forward(x, Mask(), Mode::Train);
  double diff = 0;
  for (Index i = 0; i < train.size(); ++i) diff += std::abs(train.data()[i] - ref.data()[i]);
  EXPECT_GT(diff, 1e-3);
}

TEST(TransformerEncoder, RejectsBadOptions) {
  EXPECT_THROW(TransformerEncoderBlock<double>(6, 4, 8), ConfigError);  // 6 not divisible by 4 heads
  try {
    TransformerEncoderBlock<double>(4, 2, 8, TransformerEncoderOptions().activation(Activation::Tanh));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("activation must be gelu, gelu_tanh or relu but got tanh"), std::string::npos);
  }
  EXPECT_THROW(TransformerEncoderBlock<double>(4, 2, 0), ConfigError);
  try {
    TransformerEncoderBlock<double>(4, 2, 8, TransformerEncoderOptions().attention_window(3));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TransformerEncoderBlock: attention_window needs causal"), std::string::npos)
        << e.what();
  }
  try {
    TransformerEncoderBlock<double>(4, 2, 8, TransformerEncoderOptions().causal(true).attention_window(0));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TransformerEncoderBlock: attention_window must be at least 1 but got 0"),
              std::string::npos)
        << e.what();
  }
  const TransformerEncoderBlock<double> windowed(4, 2, 8, TransformerEncoderOptions().causal(true).attention_window(3));
  EXPECT_EQ(windowed.describe(),
            "TransformerEncoderBlock(d_model=4, heads=2, ff_dim=8, post-norm, causal, attention_window=3)");
  EXPECT_EQ(*windowed.attention_layer().options().attention_window(), 3);
}
