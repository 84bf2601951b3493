// MultiHeadAttention against torch.nn.MultiheadAttention (tests/reference/gen_multi_head_attention.py):
// outputs, per-head attention weights on valid query rows, and gradients of the inputs and of every
// parameter, in float and in double; self-attention (masked, causal, without bias) and cross-attention
// (kdim != embed_dim, Tq != Tk, causal); attention_window (torch: an attn_mask of s > t or s < t - w + 1) with
// w = 1, 3, 4, without bias and in cross-attention; step masks (holes, left padding; torch: an attn_mask with the
// masked keys) in self-attention (plain, causal, windowed) and cross-attention (plain, causal); explicit attention
// masks (set_attention_mask, set_additive_attention_mask; torch's attn_mask), boolean (Tq, Tk) with causal, additive
// (B*H, Tq, Tk) with key lengths, boolean (B*H, Tq, Tk) in windowed cross-attention, additive (Tq, Tk) with step masks;
// add_bias_kv and add_zero_attn (attention with Tk + 1 or Tk + 2 columns, gradients of bias_k and bias_v), alone and
// both, with key lengths (one of 0: only the extra keys), causal, attention_window, cross-attention, step masks (a
// kept query whose range holds no kept key) and an additive (B*H, Tq, Tk) attention mask; separate key and value
// inputs (torch's kdim != vdim: forward(xq, mq, xk, xv, mkv), value_input_grad()), with lengths and with step masks.
#include <gtest/gtest.h>
#include <limits>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

namespace {

const ReferenceData& data() {
  static const ReferenceData d(data_path("multi_head_attention.txt"));
  return d;
}

template <class S>
double tolerance() {
  return sizeof(S) == sizeof(double) ? 1e-11 : 3e-5;
}

// |actual - expected| <= tol * (1 + |expected|) for every coefficient.
template <class S>
void expect_close(const S* actual, const std::vector<double>& expected, const std::string& what) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double err = std::abs(double(actual[i]) - expected[i]) / (1.0 + std::abs(expected[i]));
    if (err > worst) worst = err, at = i;
  }
  EXPECT_LE(worst, tolerance<S>()) << what << "[" << at << "]: " << actual[at] << " vs torch " << expected[at];
}

Mask lengths(const std::string& name) {
  std::vector<Index> l;
  for (double v : data().values(name)) l.push_back(static_cast<Index>(v));
  return Mask::from_lengths(l);
}

// The mask of `name` (B, T keep flags) as a step mask.
Mask keep_mask(const std::string& name) {
  const auto& shape = data().shape(name);
  std::vector<std::uint8_t> keep;
  for (double v : data().values(name)) keep.push_back(v != 0.0);
  return Mask::from_steps(shape[0], shape[1], keep);
}

struct TorchCase {
  const char* prefix;
  Index heads;
  bool causal, bias, cross;
  Index window = 0;  // attention_window (0: none)
  bool add_bias_kv = false, add_zero_attn = false;
};

template <class S>
void run_case(const TorchCase& c) {
  SCOPED_TRACE(c.prefix);
  const ReferenceData& d = data();
  const std::string p = std::string(c.prefix) + ".";
  const Tensor3<S> xq = d.tensor<S>(p + "x");
  const Tensor3<S> xkv = c.cross ? d.tensor<S>(p + "xkv") : xq;
  const Tensor3<S> R = d.tensor<S>(p + "R");
  const bool split = d.has(p + "xv");  // separate value input
  const Tensor3<S> xv = split ? d.tensor<S>(p + "xv") : xkv;
  const bool steps = d.has(p + "q_keep");
  const Mask mq = steps ? keep_mask(p + "q_keep") : lengths(p + "q_lengths");
  const Mask mkv = steps ? keep_mask(p + (c.cross ? "kv_keep" : "q_keep")) : lengths(p + "kv_lengths");
  if (steps) {
    ASSERT_TRUE(mq.has_holes() && mkv.has_holes());
  }
  const Index B = xq.dimension(0), Tq = xq.dimension(1), Tk = xkv.dimension(1), H = c.heads;

  MultiHeadAttention<S> mha(xq.dimension(2), H,
                            MultiHeadAttentionOptions()
                                .key_features(xkv.dimension(2))
                                .value_features(xv.dimension(2))
                                .causal(c.causal)
                                .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
                                .use_bias(c.bias)
                                .add_bias_kv(c.add_bias_kv)
                                .add_zero_attn(c.add_zero_attn));
  const Index E = Index(c.add_bias_kv) + Index(c.add_zero_attn), Tke = Tk + E;  // extra keys after the Tk keys
  // explicit attention mask: attn_blocked (1 = not allowed), attn_add (additive values; -inf where blocked)
  const bool user = d.has(p + "attn_blocked");
  std::vector<double> blocked;
  Index mask_rows = 1;
  if (user) {
    blocked = d.values(p + "attn_blocked");
    const auto& shape = d.shape(p + "attn_blocked");
    const bool two_d = shape.size() == 2;
    mask_rows = two_d ? 1 : shape[0];
    const bool additive = d.has(p + "attn_add");
    const std::vector<double> add = additive ? d.values(p + "attn_add") : std::vector<double>();
    if (two_d && additive) {
      Matrix<S> m(Tq, Tk);
      for (Index i = 0; i < m.size(); ++i)
        m.data()[i] = blocked[size_t(i)] != 0 ? -std::numeric_limits<S>::infinity() : S(add[size_t(i)]);
      mha.set_additive_attention_mask(m);
    } else if (two_d) {
      Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(Tq, Tk);
      for (Index i = 0; i < m.size(); ++i) m.data()[i] = blocked[size_t(i)] != 0;
      mha.set_attention_mask(m);
    } else if (additive) {
      Tensor3<S> m(mask_rows, Tq, Tk);
      for (Index i = 0; i < m.size(); ++i)
        m.data()[i] = blocked[size_t(i)] != 0 ? -std::numeric_limits<S>::infinity() : S(add[size_t(i)]);
      mha.set_additive_attention_mask(m);
    } else {
      Eigen::Tensor<bool, 3, Eigen::RowMajor> m(mask_rows, Tq, Tk);
      for (Index i = 0; i < m.size(); ++i) m.data()[i] = blocked[size_t(i)] != 0;
      mha.set_attention_mask(m);
    }
  }
  auto user_blocked = [&](Index bh, Index t, Index s) {
    return user && blocked[size_t(((mask_rows == 1 ? 0 : bh) * Tq + t) * Tk + s)] != 0;
  };
  for (auto& param : mha.params()) {
    ASSERT_EQ(d.shape(p + param.name), param.shape) << param.name;
    const auto& v = d.values(p + param.name);
    for (Index i = 0; i < param.size(); ++i) param.value[i] = S(v[static_cast<size_t>(i)]);
  }

  const Tensor3<S>& y = split     ? mha.forward(xq, mq, xkv, xv, mkv, Mode::Train)
                        : c.cross ? mha.forward(xq, mq, xkv, mkv, Mode::Train)
                                  : mha.forward(xq, mq, Mode::Train);
  expect_close(y.data(), d.values(p + "y"), "y");  // torch's padded rows are zeroed by the generator

  // attention (B, H, Tq, Tk) on valid query rows; masked keys are exactly 0
  const auto& attn = d.values(p + "attention");
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < mq.length(b, Tq); ++t) {
        if (!mq.valid(b, t, Tq)) continue;
        const auto first = attn.begin() + ((b * H + h) * Tq + t) * Tke;
        const std::vector<double> row(first, first + Tke);
        ASSERT_EQ(mha.attention(b, h).cols(), Tke);
        expect_close(mha.attention(b, h).data() + t * Tke, row,
                     "attention(" + std::to_string(b) + ", " + std::to_string(h) + ")");
        for (Index s = 0; s < Tk; ++s) {
          const bool masked = !mkv.valid(b, s, Tk) || (c.causal && s > t) || (c.window > 0 && s < t - c.window + 1) ||
                              user_blocked(b * H + h, t, s);
          if (masked) {
            EXPECT_EQ(mha.attention(b, h)(t, s), S(0));
          }
        }
      }

  mha.zero_grad();
  const Tensor3<S>& dx = split     ? mha.backward_cross(xq, mq, xkv, xv, mkv, R)
                         : c.cross ? mha.backward_cross(xq, mq, xkv, mkv, R)
                                   : mha.backward(xq, mq, R);
  expect_close(dx.data(), d.values(p + "dx"), "dx");
  if (c.cross) expect_close(mha.key_input_grad().data(), d.values(p + "dxkv"), "dxkv");
  if (split) {
    ASSERT_EQ(mha.value_input_grad().dimensions(), xv.dimensions());
    expect_close(mha.value_input_grad().data(), d.values(p + "dxv"), "dxv");
  }
  for (auto& param : mha.params()) expect_close(param.grad, d.values(p + "d" + param.name), "d" + param.name);
}

const TorchCase kCases[] = {{"self", 2, false, true, false},
                            {"causal", 3, true, true, false},
                            {"nobias", 4, false, false, false},
                            {"cross", 2, false, true, true},
                            {"cross_causal", 2, true, true, true},
                            {"window", 2, true, true, false, 3},
                            {"window_one", 3, true, true, false, 1},
                            {"window_nobias", 4, true, false, false, 4},
                            {"cross_window", 2, true, true, true, 2},
                            {"steps", 2, false, true, false},
                            {"steps_causal", 3, true, true, false},
                            {"steps_window", 2, true, false, false, 2},
                            {"steps_cross", 2, false, true, true},
                            {"steps_cross_causal", 2, true, true, true},
                            {"attn_bool", 2, true, true, false},
                            {"attn_add_heads", 2, false, true, false},
                            {"attn_cross_window", 2, true, true, true, 2},
                            {"attn_steps_add", 2, false, false, false},
                            {"kv_bias", 2, false, true, false, 0, true, false},
                            {"kv_zero_causal", 3, true, true, false, 0, false, true},
                            {"kv_both_cross", 2, false, true, true, 0, true, true},
                            {"kv_both_window", 2, true, false, false, 2, true, true},
                            {"kv_both_steps", 2, true, true, true, 0, true, true},
                            {"kv_bias_attn", 2, true, true, false, 0, true, false},
                            {"vdim_cross", 2, false, true, true},
                            {"vdim_steps_causal", 2, true, true, true, 0, false, true}};

TEST(MultiHeadAttentionTorch, MatchesTorchInDouble) {
  for (const auto& c : kCases) run_case<double>(c);
}

TEST(MultiHeadAttentionTorch, MatchesTorchInFloat) {
  for (const auto& c : kCases) run_case<float>(c);
}

}  // namespace
