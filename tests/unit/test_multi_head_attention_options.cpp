// MultiHeadAttention options of torch.nn.MultiheadAttention and keras-multi-head (issue 22 item 2):
//   - need_weights=false: attention(), attention(b, h) and attention_band() refuse with a UsageError; outputs and
//     every gradient are bitwise those of need_weights=true (self, causal, windowed, cross, step masks, dropout);
//   - output_activation: y = act_o(ctx Wo + bo) equals act_o of the linear layer's output on live rows and is
//     exactly 0 on dead rows; finite-difference gradients in double for every input and parameter (self, causal,
//     attention_window, cross, step masks); the stream form applies it too; a non-elementwise one is refused;
//   - the named weight accessors are the parameters of params();
//   - config() / from_config() round trip of the new options (describe() identical, same outputs);
//   - explicit attention masks (set_attention_mask): finite-difference gradients for boolean and additive masks of
//     (Tq, Tk) and (B*H, Tq, Tk) with causal, attention_window, cross-attention, step masks and dropout; an all-allowed
//     mask equals no mask; blocked keys get weight exactly 0; rows blocked in one head have a zero context there,
//     rows blocked in every head output 0 and pass no gradient; kept outputs bitwise ignore masked input values
//     (NaN included); clear_attention_mask() gives the fast path back bitwise; the errors (shapes, NaN, a mask
//     changed between forward and backward, streams).
#include <gtest/gtest.h>
#include <cmath>
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
using seqattn::testing::bitwise_equal;
using seqattn::testing::check_mha_gradients;
using seqattn::testing::mha_backward;
using seqattn::testing::mha_forward;
using seqattn::testing::mha_inputs;
using seqattn::testing::MhaCall;
using seqattn::testing::random_tensor;

namespace {

struct OptCase {
  const char* name;
  bool causal = false;
  Index window = 0;
  bool cross = false;
  bool steps = false;  // random step masks (holes, left padding) on the queries and keys
  double dropout = 0.0;
};

MultiHeadAttentionOptions options_of(const OptCase& c) {
  return MultiHeadAttentionOptions()
      .key_features(c.cross ? 5 : 6)
      .causal(c.causal)
      .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
      .attention_dropout(c.dropout)
      .bias_init(Init::uniform(-0.5, 0.5))
      .seed(11);
}

using Inputs = seqattn::testing::MhaInputs;

Inputs make_inputs(const OptCase& c, Index out_features) {
  return mha_inputs(c.cross ? MhaCall::Cross : MhaCall::Self, c.steps, out_features);
}

const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const OptCase& c, const Inputs& in) {
  const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
  if (c.dropout > 0) mha.set_dropout_seed(77);
  return mha_forward(mha, in, mode);
}
const Tensor3<double>& run_backward(MultiHeadAttention<double>& mha, const OptCase&, const Inputs& in) {
  return mha_backward(mha, in, in.dy);
}

const OptCase kCases[] = {
    {"self"},
    {"causal", true},
    {"window", true, 2},
    {"cross", false, 0, true},
    {"cross_causal", true, 0, true},
    {"steps", false, 0, false, true},
    {"steps_window", true, 3, false, true},
    {"steps_cross", false, 0, true, true},
    {"dropout", true, 0, false, false, 0.3},
};

using seqattn::testing::error_of;

TEST(MultiHeadAttentionOptions, NeedWeightsFalseRefusesAttentionAndChangesNothingElse) {
  for (const OptCase& c : kCases) {
    SCOPED_TRACE(c.name);
    MultiHeadAttention<double> with(6, 2, options_of(c));
    MultiHeadAttention<double> without(6, 2, options_of(c).need_weights(false));
    const Inputs in = make_inputs(c, with.out_features());
    const Tensor3<double> y1 = run_forward(with, c, in);
    const Tensor3<double> y2 = run_forward(without, c, in);
    EXPECT_TRUE(bitwise_equal(y1.data(), y2.data(), y1.size()));
    EXPECT_NO_THROW(with.attention());
    const std::string expected = without.describe() + ": attention() is not available with need_weights=false";
    EXPECT_NE(error_of<UsageError>([&] { without.attention(); }).find(expected), std::string::npos)
        << error_of<UsageError>([&] { without.attention(); });
    EXPECT_THROW(without.attention(0, 1), UsageError);
    EXPECT_NE(error_of<UsageError>([&] { without.attention_band(); }).find("attention_band() is not available"),
              std::string::npos);
    with.zero_grad();
    without.zero_grad();
    const Tensor3<double> dx1 = run_backward(with, c, in);
    const Tensor3<double> dx2 = run_backward(without, c, in);
    EXPECT_TRUE(bitwise_equal(dx1.data(), dx2.data(), dx1.size()));
    if (c.cross) {
      EXPECT_TRUE(
          bitwise_equal(with.key_input_grad().data(), without.key_input_grad().data(), with.key_input_grad().size()));
    }
    ParamList<double> p1 = with.params(), p2 = without.params();
    ASSERT_EQ(p1.size(), p2.size());
    for (size_t k = 0; k < p1.size(); ++k)
      EXPECT_TRUE(bitwise_equal(p1[k].grad, p2[k].grad, p1[k].size())) << p1[k].name;
  }
}

TEST(MultiHeadAttentionOptions, OutputActivationIsAppliedToLiveRowsOnly) {
  for (const OptCase& c : kCases) {
    SCOPED_TRACE(c.name);
    for (const Activation act : {Activation::Tanh, Activation::ReLU, Activation::Sigmoid}) {
      MultiHeadAttention<double> linear(6, 2, options_of(c));
      MultiHeadAttention<double> activated(6, 2, options_of(c).output_activation(act));
      const Inputs in = make_inputs(c, linear.out_features());
      const Tensor3<double> y0 = run_forward(linear, c, in);
      const Tensor3<double> y = run_forward(activated, c, in);
      Index live = 0;
      for (Index b = 0; b < y.dimension(0); ++b)
        for (Index t = 0; t < y.dimension(1); ++t) {
          bool dead = true;  // a dead row of the linear layer is exactly 0 (as are bo's contributions there)
          for (Index f = 0; f < y.dimension(2); ++f) dead = dead && y0(b, t, f) == 0.0;
          for (Index f = 0; f < y.dimension(2); ++f) {
            if (dead) {
              ASSERT_EQ(y(b, t, f), 0.0) << "dead row (" << b << ", " << t << ")";
            } else {
              ASSERT_NEAR(y(b, t, f), activate<double>(act, y0(b, t, f), 0.2), 1e-14);
            }
          }
          live += !dead;
        }
      EXPECT_GT(live, 0);
    }
  }
  EXPECT_NE(error_of<ConfigError>([] {
              MultiHeadAttention<double>(6, 2, MultiHeadAttentionOptions().output_activation(Activation::Softmax));
            }).find("output_activation must be elementwise but got softmax"),
            std::string::npos);
}

TEST(MultiHeadAttentionOptions, OutputActivationMatchesFiniteDifferences) {
  for (const OptCase& c : kCases) {
    if (c.dropout > 0) continue;  // the dropout masks are replayed by run_forward, but the kernels are the same
    SCOPED_TRACE(c.name);
    MultiHeadAttention<double> mha(6, 2,
                                   options_of(c).output_activation(Activation::Tanh).activation(Activation::GELU));
    Inputs in = make_inputs(c, mha.out_features());
    const auto result =
        check_mha_gradients(mha, in, [&]() -> const Tensor3<double>& { return run_forward(mha, c, in); });
    EXPECT_TRUE(result.passed({"bk"})) << result.report();
  }
}

TEST(MultiHeadAttentionOptions, StreamAppliesTheOutputActivation) {
  for (const Index window : {Index(0), Index(2)}) {
    SCOPED_TRACE(window);
    MultiHeadAttention<double> mha(6, 2,
                                   MultiHeadAttentionOptions()
                                       .causal(true)
                                       .attention_window(window > 0 ? std::optional<Index>(window) : std::nullopt)
                                       .output_activation(Activation::Tanh)
                                       .seed(3));
    const Tensor3<double> x = random_tensor(2, 5, 6, 9);
    const Tensor3<double> y = mha.forward(x, Mask(), Mode::Infer);
    std::unique_ptr<LayerStream<double>> stream = mha.open_stream(2, StreamOptions());
    Tensor3<double> ys(2, 1, 6);
    for (Index t = 0; t < 5; ++t) {
      Tensor3<double> xt(2, 1, 6);
      for (Index b = 0; b < 2; ++b)
        for (Index f = 0; f < 6; ++f) xt(b, 0, f) = x(b, t, f);
      stream->step(xt, std::vector<Index>{t, t}, ys);
      for (Index b = 0; b < 2; ++b)
        for (Index f = 0; f < 6; ++f) EXPECT_NEAR(ys(b, 0, f), y(b, t, f), 1e-12) << b << " " << t << " " << f;
    }
  }
}

TEST(MultiHeadAttentionOptions, NamedWeightsAreTheParameters) {
  MultiHeadAttention<double> mha(6, 2, MultiHeadAttentionOptions().key_features(5).output_features(4).seed(1));
  ParamList<double> params = mha.params();
  auto value_of = [&](const std::string& name) -> const double* {
    for (const auto& p : params)
      if (p.name == name) return p.value;
    return nullptr;
  };
  EXPECT_EQ(mha.query_kernel().data(), value_of("Wq"));
  EXPECT_EQ(mha.key_kernel().data(), value_of("Wk"));
  EXPECT_EQ(mha.value_kernel().data(), value_of("Wv"));
  EXPECT_EQ(mha.output_kernel().data(), value_of("Wo"));
  EXPECT_EQ(mha.query_bias().data(), value_of("bq"));
  EXPECT_EQ(mha.key_bias().data(), value_of("bk"));
  EXPECT_EQ(mha.value_bias().data(), value_of("bv"));
  EXPECT_EQ(mha.output_bias().data(), value_of("bo"));
  EXPECT_EQ(mha.key_kernel().rows(), 5);
  EXPECT_EQ(mha.output_kernel().cols(), 4);
  EXPECT_EQ(mha.output_bias().size(), 4);
  const MultiHeadAttention<double>& cref = mha;
  EXPECT_EQ(cref.value_kernel().data(), value_of("Wv"));
  // writes through the accessor reach the layer
  mha.output_bias().setConstant(0.25);
  EXPECT_EQ(value_of("bo")[3], 0.25);
  MultiHeadAttention<double> nobias(6, 2, MultiHeadAttentionOptions().use_bias(false));
  EXPECT_EQ(nobias.query_bias().size(), 0);
}

TEST(MultiHeadAttentionOptions, ConfigRoundTrip) {
  const MultiHeadAttentionOptions o = MultiHeadAttentionOptions()
                                          .causal(true)
                                          .activation(Activation::Tanh)
                                          .output_activation(Activation::GELU)
                                          .need_weights(false)
                                          .seed(5);
  MultiHeadAttention<double> mha(6, 3, o);
  EXPECT_EQ(mha.describe(),
            "MultiHeadAttention(heads=3, causal=true, activation=tanh, output_activation=gelu, need_weights=false)");
  const Config config = mha.config();
  std::unique_ptr<Layer<double>> copy = MultiHeadAttention<double>::from_config(6, config);
  EXPECT_EQ(copy->describe(), mha.describe());
  auto* rebuilt = dynamic_cast<MultiHeadAttention<double>*>(copy.get());
  ASSERT_NE(rebuilt, nullptr);
  EXPECT_EQ(rebuilt->options().output_activation(), Activation::GELU);
  EXPECT_FALSE(rebuilt->options().need_weights());
  const Tensor3<double> x = random_tensor(2, 4, 6, 3);
  const Tensor3<double> y1 = mha.forward(x, Mask(), Mode::Infer);
  const Tensor3<double> y2 = copy->forward(x, Mask(), Mode::Infer);
  EXPECT_TRUE(bitwise_equal(y1.data(), y2.data(), y1.size()));
  // the defaults round trip too
  MultiHeadAttention<double> plain(6, 3, MultiHeadAttentionOptions().seed(5));
  const std::unique_ptr<Layer<double>> plain_copy = MultiHeadAttention<double>::from_config(6, plain.config());
  EXPECT_EQ(plain_copy->describe(), "MultiHeadAttention(heads=3)");
  EXPECT_TRUE(dynamic_cast<MultiHeadAttention<double>&>(*plain_copy).options().need_weights());
}

using BoolTensor = Eigen::Tensor<bool, 3, Eigen::RowMajor>;
using BoolMatrix = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A random explicit mask for case c: kind 0 boolean (Tq, Tk), 1 boolean (B*H, Tq, Tk), 2 additive (B*H, Tq, Tk)
// with some -inf, 3 additive (Tq, Tk) without -inf. Blocks about a third of the keys.
void set_random_mask(MultiHeadAttention<double>& mha, Index B, Index Tq, Index Tk, int kind, std::uint64_t seed) {
  Rng rng(seed);
  const Index rows = kind == 0 || kind == 3 ? 1 : B * mha.heads();
  BoolTensor blocked(rows, Tq, Tk);
  Tensor3<double> add(rows, Tq, Tk);
  for (Index i = 0; i < blocked.size(); ++i) {
    blocked.data()[i] = rng.uniform() < 0.33;
    add.data()[i] = blocked.data()[i] && kind == 2 ? -std::numeric_limits<double>::infinity() : rng.uniform(-2.0, 2.0);
  }
  if (kind == 0) {
    BoolMatrix m = Eigen::Map<const BoolMatrix>(blocked.data(), Tq, Tk);
    mha.set_attention_mask(m);
  } else if (kind == 1) {
    mha.set_attention_mask(blocked);
  } else if (kind == 2) {
    mha.set_additive_attention_mask(add);
  } else {
    Matrix<double> m = Eigen::Map<const Matrix<double>>(add.data(), Tq, Tk);
    mha.set_additive_attention_mask(m);
  }
}

Index key_steps(const OptCase& c) { return c.cross ? 4 : 5; }

TEST(MultiHeadAttentionOptions, AttentionMaskMatchesFiniteDifferences) {
  for (const OptCase& c : kCases)
    for (int kind = 0; kind < 4; ++kind) {
      SCOPED_TRACE(std::string(c.name) + " mask kind " + std::to_string(kind));
      MultiHeadAttention<double> mha(6, 2, options_of(c).output_activation(Activation::Tanh));
      Inputs in = make_inputs(c, mha.out_features());
      set_random_mask(mha, 3, 5, key_steps(c), kind, 100 + kind);
      std::vector<Tensor3<double>> dx;  // dxq (and dxk)
      const auto result =
          check_mha_gradients(mha, in, [&]() -> const Tensor3<double>& { return run_forward(mha, c, in); }, &dx);
      EXPECT_TRUE(result.passed({"bk"})) << result.report();
      EXPECT_EQ(seqattn::testing::masked_nonzero(dx[0], in.mq), "");
    }
}

TEST(MultiHeadAttentionOptions, AttentionMaskBlocksKeysAndRows) {
  const OptCase c{"causal", true};
  const Index B = 3, Tq = 5, Tk = 5, H = 2;
  MultiHeadAttention<double> plain(6, H, options_of(c));
  MultiHeadAttention<double> masked(6, H, options_of(c));
  const Inputs in = make_inputs(c, plain.out_features());
  // all allowed: the plain loops equal the tiled kernels (up to rounding)
  masked.set_attention_mask(BoolMatrix::Zero(Tq, Tk));
  const Tensor3<double> y0 = run_forward(plain, c, in);
  const Tensor3<double> y1 = run_forward(masked, c, in);
  for (Index i = 0; i < y0.size(); ++i) ASSERT_NEAR(y1.data()[i], y0.data()[i], 1e-13);
  // head 1 of sample 0: query 2 blocked everywhere; sample 1: query 1 blocked in both heads; key 0 blocked for
  // every query of head 0 of sample 2
  BoolTensor blocked(B * H, Tq, Tk);
  blocked.setConstant(false);
  for (Index s = 0; s < Tk; ++s) {
    blocked(0 * H + 1, 2, s) = true;
    blocked(1 * H + 0, 1, s) = true;
    blocked(1 * H + 1, 1, s) = true;
  }
  for (Index t = 0; t < Tq; ++t) blocked(2 * H + 0, t, 0) = true;
  masked.set_attention_mask(blocked);
  const Tensor3<double> y = run_forward(masked, c, in);
  EXPECT_EQ(masked.attention(0, 1).row(2).cwiseAbs().sum(), 0.0);
  EXPECT_GT(masked.attention(0, 0).row(2).cwiseAbs().sum(), 0.0);
  for (Index t = 0; t < Tq; ++t) EXPECT_EQ(masked.attention(2, 0)(t, 0), 0.0);
  EXPECT_EQ(masked.attention(2, 1)(0, 0), 1.0);  // query 0 of head 1 has only key 0
  for (Index f = 0; f < y.dimension(2); ++f) {
    EXPECT_EQ(y(1, 1, f), 0.0) << "a row without an allowed key in every head outputs 0";
  }
  EXPECT_GT(std::abs(y(0, 2, 0)) + std::abs(y(0, 2, 1)), 0.0);
  // query 0 of sample 2, head 0: its only key is blocked, head 1 still attends: the row is live
  EXPECT_EQ(masked.attention(2, 0).row(0).cwiseAbs().sum(), 0.0);
  // a dead row passes no gradient: dy there changes nothing
  masked.zero_grad();
  const Tensor3<double> dx0 = run_backward(masked, c, in);
  std::vector<std::vector<double>> g0;
  for (const auto& p : masked.params()) g0.emplace_back(p.grad, p.grad + p.size());
  Inputs changed = in;
  for (Index f = 0; f < changed.dy.dimension(2); ++f) changed.dy(1, 1, f) = 1e3;
  run_forward(masked, c, changed);
  masked.zero_grad();
  const Tensor3<double> dx1 = run_backward(masked, c, changed);
  EXPECT_TRUE(bitwise_equal(dx0.data(), dx1.data(), dx0.size()));
  ParamList<double> p1 = masked.params();
  for (size_t k = 0; k < p1.size(); ++k) EXPECT_TRUE(bitwise_equal(g0[k].data(), p1[k].grad, p1[k].size()));
  // clear: the tiled kernels again, bitwise
  masked.clear_attention_mask();
  EXPECT_FALSE(masked.has_attention_mask());
  const Tensor3<double> y2 = run_forward(masked, c, in);
  EXPECT_TRUE(bitwise_equal(y2.data(), y0.data(), y0.size()));
}

TEST(MultiHeadAttentionOptions, AttentionMaskKeptOutputsIgnoreMaskedValues) {
  for (const OptCase& c : kCases) {
    if (!c.steps) continue;
    for (int kind = 0; kind < 4; ++kind) {
      SCOPED_TRACE(std::string(c.name) + " mask kind " + std::to_string(kind));
      MultiHeadAttention<double> mha(6, 2, options_of(c));
      Inputs in = make_inputs(c, mha.out_features());
      set_random_mask(mha, 3, 5, key_steps(c), kind, 200 + kind);
      const Tensor3<double> y0 = run_forward(mha, c, in);
      for (const double garbage :
           {1e3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        Inputs g = in;
        g.xq = seqattn::testing::with_masked_values(in.xq, in.mq, [&](Index) { return garbage; });
        g.xk = c.cross ? seqattn::testing::with_masked_values(in.xk, in.mkv, [&](Index) { return garbage; }) : g.xq;
        const Tensor3<double>& y = run_forward(mha, c, g);
        EXPECT_TRUE(seqattn::testing::same_kept_steps(y, in.mq, y0, in.mq)) << garbage;
      }
    }
  }
}

TEST(MultiHeadAttentionOptions, AttentionMaskErrors) {
  MultiHeadAttention<double> mha(6, 2, MultiHeadAttentionOptions().causal(true).seed(1));
  const Tensor3<double> x = random_tensor(3, 5, 6, 1);
  BoolTensor wrong_batch(4, 5, 5);
  wrong_batch.setConstant(false);  // the values are read (copied) even though the shape is refused later
  mha.set_attention_mask(wrong_batch);
  EXPECT_EQ(
      error_of<ShapeError>([&] { mha.forward(x, Mask(), Mode::Infer); }),
      mha.describe() + ": attention mask expected (Tq, Tk) = (5, 5) or (B*H, Tq, Tk) = (6, 5, 5) but got (4, 5, 5)");
  mha.set_attention_mask(BoolMatrix::Zero(5, 4));
  EXPECT_EQ(error_of<ShapeError>([&] { mha.forward(x, Mask(), Mode::Infer); }),
            mha.describe() + ": attention mask expected (Tq, Tk) = (5, 5) or (B*H, Tq, Tk) = (6, 5, 5) but got (5, 4)");
  Matrix<double> bad = Matrix<double>::Zero(5, 5);
  bad(1, 2) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(error_of<ShapeError>([&] {
              mha.set_additive_attention_mask(bad);
            }).find("additive attention mask expected finite values or -inf but got nan at index 7"),
            std::string::npos);
  bad(1, 2) = std::numeric_limits<double>::infinity();
  EXPECT_THROW(mha.set_additive_attention_mask(bad), ShapeError);
  EXPECT_THROW(mha.set_additive_attention_mask(Matrix<double>(0, 5)), ShapeError);
  // backward needs the forward's mask
  mha.set_attention_mask(BoolMatrix::Zero(5, 5));
  const Tensor3<double> y = mha.forward(x, Mask(), Mode::Train);
  mha.clear_attention_mask();
  EXPECT_NE(error_of<UsageError>([&] {
              mha.backward(x, Mask(), y);
            }).find("the attention mask was set or cleared between forward and backward"),
            std::string::npos);
  mha.forward(x, Mask(), Mode::Train);
  mha.set_attention_mask(BoolMatrix::Zero(5, 5));
  EXPECT_THROW(mha.backward(x, Mask(), y), UsageError);
  // streams take no mask
  EXPECT_NE(error_of<ConfigError>([&] {
              mha.open_stream(1, StreamOptions());
            }).find("cannot be streamed while an attention mask is set"),
            std::string::npos);
  mha.clear_attention_mask();
  EXPECT_NO_THROW(mha.open_stream(1, StreamOptions()));
}

}  // namespace
