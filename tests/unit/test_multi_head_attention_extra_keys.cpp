// MultiHeadAttention add_bias_kv and add_zero_attn (torch.nn.MultiheadAttention's options; the torch references
// are in test_multi_head_attention_torch.cpp):
//   - finite-difference gradients in double of every input and parameter (bias_k, bias_v included) for each option
//     alone and both, in self-attention, causal, attention_window, cross-attention, step masks (holes, left
//     padding; kept queries without a kept key in their range), attention dropout and an explicit attention mask;
//   - the extra keys are allowed for every valid query: a query without a key of its own (key/value length 0, or
//     a kept query whose range holds no kept key) attends to them only (add_zero_attn alone: y = act_o(bo));
//     padded and masked query rows still output exactly 0;
//   - kept outputs are bitwise independent of the values at masked steps (NaN and Inf included);
//   - attention() has Tk + E columns (the extra keys last), also built from the band with attention_window;
//   - the other parameters and the dropout stream are those of the layer without the options (same seed);
//     config() / from_config() round trip; the stream form refuses them (ConfigError with the reason).
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
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

struct ExtraCase {
  const char* name;
  bool causal = false;
  Index window = 0;
  bool cross = false;
  bool steps = false;  // random step masks on the queries and keys
  double dropout = 0.0;
  bool attn_mask = false;  // a random additive (B*H, Tq, Tk) attention mask
};

const ExtraCase kCases[] = {
    {"self"},
    {"causal", true},
    {"window", true, 2},
    {"cross", false, 0, true},
    {"cross_causal", true, 0, true},
    {"steps", false, 0, false, true},
    {"steps_causal", true, 0, false, true},
    {"steps_window", true, 2, false, true},
    {"steps_cross", false, 0, true, true},
    {"dropout", true, 0, false, false, 0.3},
    {"attn_mask", true, 0, false, false, 0.0, true},
    {"attn_mask_steps_cross", false, 0, true, true, 0.0, true},
};

struct Flags {
  bool bias_kv, zero_attn;
};
const Flags kFlags[] = {{true, false}, {false, true}, {true, true}};

MultiHeadAttentionOptions options_of(const ExtraCase& c, const Flags& f) {
  return MultiHeadAttentionOptions()
      .key_features(c.cross ? 5 : 6)
      .causal(c.causal)
      .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
      .attention_dropout(c.dropout)
      .output_activation(Activation::Tanh)
      .add_bias_kv(f.bias_kv)
      .add_zero_attn(f.zero_attn)
      .bias_init(Init::uniform(-0.5, 0.5))
      .seed(11);
}

struct Inputs {
  Tensor3<double> xq, xkv, dy;
  Mask mq, mkv;
};

constexpr Index kB = 3, kTq = 5;
Index key_steps(const ExtraCase& c) { return c.cross ? 4 : 5; }

Inputs make_inputs(const ExtraCase& c, Index out_features) {
  Inputs in;
  const Index Tk = key_steps(c);
  in.xq = random_tensor(kB, kTq, 6, 1);
  in.xkv = c.cross ? random_tensor(kB, Tk, 5, 2) : in.xq;
  in.mq = c.steps ? random_step_mask(kB, kTq, 3) : Mask::from_lengths({5, 3, 1});
  in.mkv = c.cross ? (c.steps ? random_step_mask(kB, Tk, 4) : Mask::from_lengths({4, 0, 3})) : in.mq;
  in.dy = random_tensor(kB, kTq, out_features, 5);
  return in;
}

void set_mask(MultiHeadAttention<double>& mha, const ExtraCase& c) {
  if (!c.attn_mask) return;
  Rng rng(31);
  Tensor3<double> add(kB * mha.heads(), kTq, key_steps(c));
  for (Index i = 0; i < add.size(); ++i)
    add.data()[i] = rng.uniform() < 0.4 ? -std::numeric_limits<double>::infinity() : rng.uniform(-2.0, 2.0);
  mha.set_additive_attention_mask(add);
}

const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const ExtraCase& c, const Inputs& in) {
  const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
  if (c.dropout > 0) mha.set_dropout_seed(77);
  return c.cross ? mha.forward(in.xq, in.mq, in.xkv, in.mkv, mode) : mha.forward(in.xq, in.mq, mode);
}
const Tensor3<double>& run_backward(MultiHeadAttention<double>& mha, const ExtraCase& c, const Inputs& in) {
  return c.cross ? mha.backward_cross(in.xq, in.mq, in.xkv, in.mkv, in.dy) : mha.backward(in.xq, in.mq, in.dy);
}

std::string label(const ExtraCase& c, const Flags& f) {
  return std::string(c.name) + (f.bias_kv ? " add_bias_kv" : "") + (f.zero_attn ? " add_zero_attn" : "");
}

TEST(MultiHeadAttentionExtraKeys, MatchesFiniteDifferences) {
  for (const ExtraCase& c : kCases)
    for (const Flags& f : kFlags) {
      SCOPED_TRACE(label(c, f));
      MultiHeadAttention<double> mha(6, 2, options_of(c, f));
      Inputs in = make_inputs(c, mha.out_features());
      set_mask(mha, c);
      auto loss = [&]() {
        const Tensor3<double>& y = run_forward(mha, c, in);
        double l = 0;
        for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * in.dy.data()[i];
        return l;
      };
      loss();
      mha.zero_grad();
      const Tensor3<double> dxq = run_backward(mha, c, in);
      const Tensor3<double> dxkv = c.cross ? mha.key_input_grad() : Tensor3<double>();
      ParamList<double> params = mha.params();
      ASSERT_EQ(params.size(), f.bias_kv ? 10u : 8u);
      std::vector<std::vector<double>> grads;
      for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
      std::vector<GradTarget> targets{{"xq", in.xq.data(), dxq.data(), in.xq.size()}};
      if (c.cross) targets.push_back({"xkv", in.xkv.data(), dxkv.data(), in.xkv.size()});
      for (size_t k = 0; k < params.size(); ++k)
        targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
      const auto result = check_gradients(loss, targets);
      EXPECT_TRUE(result.passed()) << result.report();
      EXPECT_EQ(seqattn::testing::masked_nonzero(dxq, in.mq), "");
    }
}

// A query with no key of its own attends to the extra keys only; padded rows stay 0.
TEST(MultiHeadAttentionExtraKeys, QueriesWithoutKeysAttendToTheExtraKeys) {
  // cross-attention, key/value length 0 for sample 1
  for (const Flags& f : kFlags) {
    SCOPED_TRACE(label({"lk0"}, f));
    const ExtraCase c{"cross", false, 0, true};
    MultiHeadAttention<double> mha(6, 2, options_of(c, f));
    Inputs in = make_inputs(c, mha.out_features());
    const Tensor3<double> y = run_forward(mha, c, in);
    const Index E = mha.extra_keys(), Tk = key_steps(c);
    for (Index t = 0; t < kTq; ++t)
      for (Index j = 0; j < mha.out_features(); ++j) {
        if (t < 3) {
          if (!f.bias_kv) {  // add_zero_attn alone: context 0, y = act_o(bo)
            EXPECT_EQ(y(1, t, j), std::tanh(mha.output_bias()(j)));
          } else {
            EXPECT_NE(y(1, t, j), std::tanh(mha.output_bias()(j)));
          }
        } else {
          EXPECT_EQ(y(1, t, j), 0.0);  // padded query rows
        }
      }
    for (Index h = 0; h < 2; ++h) {
      const auto a = mha.attention(1, h);
      ASSERT_EQ(a.cols(), Tk + E);
      for (Index t = 0; t < 3; ++t) {
        double sum = 0;
        for (Index s = 0; s < Tk; ++s) EXPECT_EQ(a(t, s), 0.0);
        for (Index e = 0; e < E; ++e) sum += a(t, Tk + e);
        EXPECT_NEAR(sum, 1.0, 1e-14);
        if (E == 2) {  // zero key: weight exp(0) against exp(q.bias_k / sqrt(dh))
          EXPECT_GT(a(t, Tk + 1), 0.0);
        }
      }
    }
  }
  // causal cross-attention with a step mask on the keys: queries 0 and 1 (kept) have no kept key at or before them
  const Mask mq = Mask::from_steps({{1, 1, 0, 1, 1}});
  const Mask mkv = Mask::from_steps({{0, 0, 1, 1, 1}});
  const Tensor3<double> xq = random_tensor(1, 5, 6, 8), xkv = random_tensor(1, 5, 5, 9);
  for (const Flags& f : kFlags) {
    SCOPED_TRACE(label({"steps"}, f));
    MultiHeadAttention<double> mha(6, 2, options_of({"cross_causal", true, 0, true}, f));
    const Tensor3<double> y = mha.forward(xq, mq, xkv, mkv, Mode::Infer);
    for (Index j = 0; j < 6; ++j) {
      EXPECT_EQ(y(0, 2, j), 0.0);  // masked query
      for (Index t = 0; t < 2; ++t) {
        if (!f.bias_kv) {
          EXPECT_EQ(y(0, t, j), std::tanh(mha.output_bias()(j)));
        }
        EXPECT_NE(y(0, t, j), 0.0);
      }
    }
  }
}

TEST(MultiHeadAttentionExtraKeys, KeptOutputsIgnoreMaskedValues) {
  for (const ExtraCase& c : kCases) {
    if (!c.steps) continue;
    for (const Flags& f : kFlags) {
      SCOPED_TRACE(label(c, f));
      MultiHeadAttention<double> mha(6, 2, options_of(c, f));
      Inputs in = make_inputs(c, mha.out_features());
      set_mask(mha, c);
      const Tensor3<double> y0 = run_forward(mha, c, in);
      for (const double garbage :
           {1e3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        Inputs g = in;
        g.xq = seqattn::testing::with_masked_values(in.xq, in.mq, [&](Index) { return garbage; });
        g.xkv = c.cross ? seqattn::testing::with_masked_values(in.xkv, in.mkv, [&](Index) { return garbage; }) : g.xq;
        const Tensor3<double>& y = run_forward(mha, c, g);
        EXPECT_TRUE(seqattn::testing::same_kept_steps(y, in.mq, y0, in.mq)) << garbage;
      }
    }
  }
}

// With attention_window the band holds min(w, Tk) + E columns; attention() puts the extra keys after Tk.
TEST(MultiHeadAttentionExtraKeys, WindowedAttentionMapHasTheExtraColumns) {
  const ExtraCase c{"window", true, 2};
  MultiHeadAttention<double> mha(6, 2, options_of(c, {true, true}));
  Inputs in = make_inputs(c, mha.out_features());
  run_forward(mha, c, in);
  ASSERT_EQ(mha.attention_band().dimension(2), 4);
  const Tensor3<double>& a = mha.attention();
  ASSERT_EQ(a.dimension(2), 7);
  for (Index bh = 0; bh < a.dimension(0); ++bh)
    for (Index t = 0; t < kTq; ++t) {
      for (Index e = 0; e < 2; ++e) EXPECT_EQ(a(bh, t, 5 + e), mha.attention_band()(bh, t, 2 + e));
      for (Index s = 0; s < t - 1; ++s) EXPECT_EQ(a(bh, t, s), 0.0);
    }
}

TEST(MultiHeadAttentionExtraKeys, OtherParametersConfigAndStreams) {
  const MultiHeadAttentionOptions base = MultiHeadAttentionOptions().causal(true).seed(4);
  MultiHeadAttention<double> plain(6, 2, base);
  MultiHeadAttention<double> both(6, 2, MultiHeadAttentionOptions(base).add_bias_kv(true).add_zero_attn(true));
  EXPECT_TRUE(plain.query_kernel() == both.query_kernel());
  EXPECT_TRUE(plain.output_kernel() == both.output_kernel());
  EXPECT_EQ(both.bias_k().size(), 6);
  EXPECT_EQ(both.bias_v().size(), 6);
  EXPECT_GT(both.bias_k().norm(), 0.0);
  EXPECT_EQ(plain.bias_k().size(), 0);
  ParamList<double> params = both.params();
  EXPECT_EQ(params[8].name, "bias_k");
  EXPECT_EQ(params[8].value, both.bias_k().data());
  EXPECT_EQ(params[9].name, "bias_v");
  EXPECT_EQ(both.describe(), "MultiHeadAttention(heads=2, causal=true, add_bias_kv=true, add_zero_attn=true)");

  std::unique_ptr<Layer<double>> rebuilt = MultiHeadAttention<double>::from_config(6, both.config());
  EXPECT_EQ(rebuilt->describe(), both.describe());
  EXPECT_TRUE(static_cast<MultiHeadAttention<double>&>(*rebuilt).bias_k() == both.bias_k());
  const Tensor3<double> x = random_tensor(2, 4, 6, 3);
  const Tensor3<double> y = both.forward(x, Mask(), Mode::Infer);
  const Tensor3<double>& y2 = rebuilt->forward(x, Mask(), Mode::Infer);
  EXPECT_EQ(std::memcmp(y.data(), y2.data(), sizeof(double) * size_t(y.size())), 0);

  for (const Flags& f : kFlags) {
    MultiHeadAttention<double> mha(6, 2,
                                   MultiHeadAttentionOptions(base).add_bias_kv(f.bias_kv).add_zero_attn(f.zero_attn));
    try {
      mha.open_stream(2, StreamOptions());
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("add_bias_kv and add_zero_attn"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
