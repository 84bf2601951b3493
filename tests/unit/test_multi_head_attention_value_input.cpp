// MultiHeadAttention with separate key and value inputs (value_features, torch's kdim != vdim; the torch references
// are in test_multi_head_attention_torch.cpp):
//   - finite-difference gradients in double of xq, xk, xv and every parameter: lengths, causal, attention_window,
//     step masks, attention dropout, add_zero_attn, an explicit attention mask;
//   - forward(xq, mq, xkv, xkv, mkv) is bitwise forward(xq, mq, xkv, mkv), and dxk + dxv is its dxkv;
//   - kept outputs are bitwise independent of the values at masked steps of xv (NaN included);
//   - the errors: xk and xv of different B or T (ShapeError naming both), wrong value features, self-attention and
//     the four-input forward with value_features differing, backward of the other form, streams; config round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/mha_inputs.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_mha_gradients;
using seqattn::testing::mha_forward;
using seqattn::testing::mha_inputs;
using seqattn::testing::MhaCall;
using seqattn::testing::random_tensor;

namespace {

struct ValueCase {
  const char* name;
  bool causal = false;
  Index window = 0;
  bool steps = false;
  double dropout = 0.0;
  bool zero_attn = false;
  bool attn_mask = false;
};

const ValueCase kCases[] = {
    {"plain"},
    {"causal", true},
    {"window", true, 2},
    {"steps", false, 0, true},
    {"steps_causal", true, 0, true},
    {"dropout", false, 0, false, 0.3},
    {"zero_attn_steps", true, 0, true, 0.0, true},
    {"attn_mask", false, 0, false, 0.0, false, true},
};

constexpr Index kB = 3, kTq = 5, kTk = 4, kIn = 6, kKey = 5, kValue = 3;

MultiHeadAttentionOptions options_of(const ValueCase& c) {
  return MultiHeadAttentionOptions()
      .key_features(kKey)
      .value_features(kValue)
      .causal(c.causal)
      .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
      .attention_dropout(c.dropout)
      .add_zero_attn(c.zero_attn)
      .output_activation(Activation::Tanh)
      .bias_init(Init::uniform(-0.5, 0.5))
      .seed(13);
}

using Inputs = seqattn::testing::MhaInputs;

Inputs make_inputs(const ValueCase& c) {
  return mha_inputs(MhaCall::CrossSeparateValues, c.steps, kIn, kKey, kValue, {5, 3, 2});
}

void set_mask(MultiHeadAttention<double>& mha, const ValueCase& c) {
  if (!c.attn_mask) return;
  Rng rng(41);
  Tensor3<double> add(kB * mha.heads(), kTq, kTk);
  for (Index i = 0; i < add.size(); ++i)
    add.data()[i] = rng.uniform() < 0.3 ? -std::numeric_limits<double>::infinity() : rng.uniform(-2.0, 2.0);
  mha.set_additive_attention_mask(add);
}

const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const ValueCase& c, const Inputs& in) {
  const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
  if (c.dropout > 0) mha.set_dropout_seed(77);
  return mha_forward(mha, in, mode);
}

using seqattn::testing::error_of;

TEST(MultiHeadAttentionValueInput, MatchesFiniteDifferences) {
  for (const ValueCase& c : kCases) {
    SCOPED_TRACE(c.name);
    MultiHeadAttention<double> mha(kIn, 2, options_of(c));
    ASSERT_EQ(mha.value_kernel().rows(), kValue);
    Inputs in = make_inputs(c);
    set_mask(mha, c);
    std::vector<Tensor3<double>> dx;  // dxq, dxk, dxv
    const auto result =
        check_mha_gradients(mha, in, [&]() -> const Tensor3<double>& { return run_forward(mha, c, in); }, &dx);
    ASSERT_EQ(dx.size(), 3u);
    const Tensor3<double>& dxv = dx[2];
    ASSERT_EQ(dxv.dimensions(), in.xv.dimensions());
    EXPECT_TRUE(result.passed({"bk"})) << result.report();
    EXPECT_EQ(seqattn::testing::masked_nonzero(dxv, in.mkv), "");
  }
}

TEST(MultiHeadAttentionValueInput, SameInputIsTheFourInputForm) {
  for (const ValueCase& c : kCases) {
    SCOPED_TRACE(c.name);
    MultiHeadAttention<double> mha(kIn, 2, options_of(c).value_features(std::nullopt));
    Inputs in = make_inputs(c);
    set_mask(mha, c);
    const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
    mha.set_dropout_seed(5);
    const Tensor3<double> y4 = mha.forward(in.xq, in.mq, in.xk, in.mkv, mode);
    const Tensor3<double> dx4 = mha.backward_cross(in.xq, in.mq, in.xk, in.mkv, in.dy);
    const Tensor3<double> dkv4 = mha.key_input_grad();
    mha.set_dropout_seed(5);
    const Tensor3<double> y5 = mha.forward(in.xq, in.mq, in.xk, in.xk, in.mkv, mode);
    ASSERT_EQ(std::memcmp(y4.data(), y5.data(), sizeof(double) * size_t(y4.size())), 0);
    const Tensor3<double> dx5 = mha.backward_cross(in.xq, in.mq, in.xk, in.xk, in.mkv, in.dy);
    EXPECT_EQ(std::memcmp(dx4.data(), dx5.data(), sizeof(double) * size_t(dx4.size())), 0);
    for (Index i = 0; i < dkv4.size(); ++i)
      EXPECT_NEAR(mha.key_input_grad().data()[i] + mha.value_input_grad().data()[i], dkv4.data()[i], 1e-13);
  }
}

TEST(MultiHeadAttentionValueInput, KeptOutputsIgnoreMaskedValues) {
  for (const ValueCase& c : kCases) {
    if (!c.steps) continue;
    SCOPED_TRACE(c.name);
    MultiHeadAttention<double> mha(kIn, 2, options_of(c));
    Inputs in = make_inputs(c);
    const Tensor3<double> y0 = run_forward(mha, c, in);
    for (const double garbage :
         {1e3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      Inputs g = in;
      g.xv = seqattn::testing::with_masked_values(in.xv, in.mkv, [&](Index) { return garbage; });
      g.xk = seqattn::testing::with_masked_values(in.xk, in.mkv, [&](Index) { return garbage; });
      const Tensor3<double>& y = run_forward(mha, c, g);
      EXPECT_TRUE(seqattn::testing::same_kept_steps(y, in.mq, y0, in.mq)) << garbage;
    }
  }
}

TEST(MultiHeadAttentionValueInput, Errors) {
  MultiHeadAttention<double> mha(kIn, 2, options_of({"causal", true}));
  const Inputs in = make_inputs({"plain"});
  const std::string t =
      error_of<ShapeError>([&] { mha.forward(in.xq, in.mq, in.xk, random_tensor(kB, kTk + 1, kValue, 1), in.mkv); });
  EXPECT_NE(t.find("(3, 4, 5)"), std::string::npos) << t;
  EXPECT_NE(t.find("(3, 5, 3)"), std::string::npos) << t;
  const std::string b =
      error_of<ShapeError>([&] { mha.forward(in.xq, in.mq, in.xk, random_tensor(kB - 1, kTk, kValue, 1), in.mkv); });
  EXPECT_NE(b.find("value input expected the batch and steps of the key input"), std::string::npos) << b;
  const std::string f =
      error_of<ShapeError>([&] { mha.forward(in.xq, in.mq, in.xk, random_tensor(kB, kTk, kValue + 1, 1), in.mkv); });
  EXPECT_NE(f.find("value features expected 3 but got 4"), std::string::npos) << f;
  const std::string four = error_of<ConfigError>([&] { mha.forward(in.xq, in.mq, in.xk, in.mkv); });
  EXPECT_NE(four.find("value_features (3) differs from key_features (5)"), std::string::npos) << four;
  MultiHeadAttention<double> self(kIn, 2, MultiHeadAttentionOptions().causal(true).value_features(4));
  const std::string s = error_of<ConfigError>([&] { self.forward(in.xq, in.mq); });
  EXPECT_NE(s.find("self-attention needs value_features == input features (6) but value_features is 4"),
            std::string::npos)
      << s;
  const std::string st = error_of<ConfigError>([&] { self.open_stream(1, StreamOptions()); });
  EXPECT_NE(st.find("value_features differs"), std::string::npos) << st;
  // backward of the other form
  MultiHeadAttention<double> same(kIn, 2, options_of({"plain"}).value_features(std::nullopt));
  same.forward(in.xq, in.mq, in.xk, in.xk, in.mkv);
  const std::string bw = error_of<ShapeError>([&] { same.backward_cross(in.xq, in.mq, in.xk, in.mkv, in.dy); });
  EXPECT_NE(bw.find("separate key and value inputs"), std::string::npos) << bw;
  same.forward(in.xq, in.mq, in.xk, in.mkv);
  const std::string bw5 = error_of<ShapeError>([&] { same.backward_cross(in.xq, in.mq, in.xk, in.xk, in.mkv, in.dy); });
  EXPECT_NE(bw5.find("backward key and value inputs expected"), std::string::npos) << bw5;
  // config round trip
  std::unique_ptr<Layer<double>> rebuilt = MultiHeadAttention<double>::from_config(kIn, mha.config());
  EXPECT_EQ(rebuilt->describe(), mha.describe());
  EXPECT_NE(mha.describe().find("value_features=3"), std::string::npos) << mha.describe();
}

}  // namespace
