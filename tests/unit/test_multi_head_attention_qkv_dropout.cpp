// MultiHeadAttention qkv_dropout (issue 22 item 2: dropout on the projected queries, keys and values):
//   - finite-difference gradients in double with the masks replayed (set_dropout_seed before every forward) for
//     self-attention, causal, attention_window, cross-attention (keys are values, and separate key and value
//     inputs), step masks (self and cross), an explicit attention mask, add_bias_kv / add_zero_attn, a tanh
//     projection activation and together with attention_dropout;
//   - qkv_dropout(0) is bitwise the layer without the option (outputs, every gradient, attention dropout's masks);
//   - Mode::Infer is unaffected (bitwise the layer without the option), and so is the stream form;
//   - the kept fraction of each of q, k and v over many draws is within 0.02 of 1 - p, the masks of q, k and v
//     are independent, and a dropped value passes no gradient and does not reach the output (with identity
//     projections, dxq, dxk, dxv are dq, dk, dv element by element);
//   - config() / from_config() round trip, describe(), model files without the key, the option's errors;
//   - TransformerEncoderBlock passes qkv_dropout to its attention (Train changes, Infer does not; config; errors).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/testing/gradient_check.hpp"
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

struct QkvCase {
  const char* name;
  bool causal = false;
  Index window = 0;
  int cross = 0;  // 0 self-attention, 1 forward(xq, mq, xkv, mkv), 2 forward(xq, mq, xk, xv, mkv)
  bool steps = false;
  double attention_dropout = 0.0;
  Activation activation = Activation::Linear;
  bool bias_kv = false, zero_attn = false;
  int explicit_mask = -1;  // -1 none, 0 boolean (Tq, Tk), 1 additive (B*H, Tq, Tk)
};

std::ostream& operator<<(std::ostream& out, const QkvCase& c) { return out << c.name; }

MultiHeadAttentionOptions options_of(const QkvCase& c, double qkv) {
  const Index key_features = c.cross ? 5 : 6, value_features = c.cross == 2 ? 3 : key_features;
  return MultiHeadAttentionOptions()
      .key_features(key_features)
      .value_features(value_features)
      .causal(c.causal)
      .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
      .attention_dropout(c.attention_dropout)
      .qkv_dropout(qkv)
      .activation(c.activation)
      .add_bias_kv(c.bias_kv)
      .add_zero_attn(c.zero_attn)
      .bias_init(Init::uniform(-0.5, 0.5))
      .seed(11);
}

using Inputs = seqattn::testing::MhaInputs;

MhaCall call_of(const QkvCase& c) {
  return c.cross == 2 ? MhaCall::CrossSeparateValues : c.cross == 1 ? MhaCall::Cross : MhaCall::Self;
}

Inputs make_inputs(const QkvCase& c, Index out_features) { return mha_inputs(call_of(c), c.steps, out_features); }

void set_explicit_mask(MultiHeadAttention<double>& mha, const QkvCase& c, const Inputs& in) {
  if (c.explicit_mask < 0) return;
  const Index B = in.xq.dimension(0), Tq = in.xq.dimension(1), Tk = in.xk.dimension(1);
  Rng rng(19);
  if (c.explicit_mask == 0) {
    Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> blocked(Tq, Tk);
    for (Index i = 0; i < blocked.size(); ++i) blocked.data()[i] = rng.uniform() < 0.3;
    mha.set_attention_mask(blocked);
  } else {
    Tensor3<double> add(B * mha.heads(), Tq, Tk);
    for (Index i = 0; i < add.size(); ++i)
      add.data()[i] = rng.uniform() < 0.3 ? -std::numeric_limits<double>::infinity() : rng.uniform(-2.0, 2.0);
    mha.set_additive_attention_mask(add);
  }
}

// The forward of case c with the dropout Rng restarted at `seed` (the same masks on every call).
const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const QkvCase&, const Inputs& in, Mode mode,
                                   std::uint64_t seed = 77) {
  mha.set_dropout_seed(seed);
  return mha_forward(mha, in, mode);
}
const Tensor3<double>& run_backward(MultiHeadAttention<double>& mha, const QkvCase&, const Inputs& in,
                                    const Tensor3<double>& dy) {
  return mha_backward(mha, in, dy);
}

const QkvCase kCases[] = {
    {"self"},
    {"causal", true},
    {"window", true, 2},
    {"cross", false, 0, 1},
    {"cross_separate_values", false, 0, 2},
    {"cross_separate_values_causal", true, 0, 2},
    {"steps", false, 0, 0, true},
    {"steps_window", true, 3, 0, true},
    {"steps_cross_separate_values", false, 0, 2, true},
    {"with_attention_dropout", true, 0, 0, false, 0.3},
    {"tanh_projections", false, 0, 1, false, 0.0, Activation::Tanh},
    {"bias_kv_zero_attn", true, 0, 0, true, 0.0, Activation::Linear, true, true},
    {"explicit_boolean_mask_cross", false, 0, 1, false, 0.0, Activation::Linear, false, false, 0},
    {"explicit_additive_mask_steps", true, 0, 0, true, 0.2, Activation::Linear, false, true, 1},
};

class MultiHeadAttentionQkvDropoutGradient : public ::testing::TestWithParam<QkvCase> {};

// L = sum(y * dy) with the masks replayed: the finite differences see the same masks as the backward.
TEST_P(MultiHeadAttentionQkvDropoutGradient, MatchesFiniteDifferencesWithReplayedMasks) {
  const QkvCase& c = GetParam();
  MultiHeadAttention<double> mha(6, 2, options_of(c, 0.4));
  Inputs in = make_inputs(c, mha.out_features());
  set_explicit_mask(mha, c, in);
  const auto result =
      check_mha_gradients(mha, in, [&]() -> const Tensor3<double>& { return run_forward(mha, c, in, Mode::Train); });
  // bk shifts every score of a query row by the same amount: 0 up to rounding (as without dropout)
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
}

INSTANTIATE_TEST_SUITE_P(Paths, MultiHeadAttentionQkvDropoutGradient, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<QkvCase>& info) { return std::string(info.param.name); });

// The masks are drawn: two seeds give different outputs, the same seed the same bits.
TEST(MultiHeadAttentionQkvDropout, SeededMasksAreReproducibleAndDiffer) {
  const QkvCase c{"cross_separate_values", false, 0, 2};
  MultiHeadAttention<double> mha(6, 2, options_of(c, 0.4));
  MultiHeadAttention<double> twin(6, 2, options_of(c, 0.4));
  const Inputs in = make_inputs(c, mha.out_features());
  const Tensor3<double> y1 = run_forward(mha, c, in, Mode::Train, 5);
  const Tensor3<double> y2 = run_forward(twin, c, in, Mode::Train, 5);
  const Tensor3<double> y3 = run_forward(mha, c, in, Mode::Train, 6);
  EXPECT_TRUE(bitwise_equal(y1.data(), y2.data(), y1.size()));
  EXPECT_FALSE(bitwise_equal(y1.data(), y3.data(), y1.size()));
  // without a reseed the next forward draws new masks
  const Tensor3<double> y4 = mha.forward(in.xq, in.mq, in.xk, in.xv, in.mkv, Mode::Train);
  EXPECT_FALSE(bitwise_equal(y3.data(), y4.data(), y3.size()));
}

// qkv_dropout(0) draws nothing: bitwise the layer without the option in Train (attention dropout's masks
// included); any qkv_dropout is bitwise the layer without it in Infer.
TEST(MultiHeadAttentionQkvDropout, ZeroRateAndInferAreBitwiseTheLayerWithoutIt) {
  for (const QkvCase& c : kCases) {
    SCOPED_TRACE(c.name);
    for (const double rate : {0.0, 0.5}) {
      SCOPED_TRACE(rate);
      const Mode mode = rate == 0.0 ? Mode::Train : Mode::Infer;
      MultiHeadAttention<double> plain(6, 2, options_of(c, 0.0));
      MultiHeadAttention<double> with(6, 2, options_of(c, rate));
      const Inputs in = make_inputs(c, plain.out_features());
      set_explicit_mask(plain, c, in);
      set_explicit_mask(with, c, in);
      const Tensor3<double> y1 = run_forward(plain, c, in, mode);
      const Tensor3<double> y2 = run_forward(with, c, in, mode);
      ASSERT_TRUE(bitwise_equal(y1.data(), y2.data(), y1.size()));
      plain.zero_grad();
      with.zero_grad();
      const Tensor3<double> dx1 = run_backward(plain, c, in, in.dy);
      const Tensor3<double> dx2 = run_backward(with, c, in, in.dy);
      EXPECT_TRUE(bitwise_equal(dx1.data(), dx2.data(), dx1.size()));
      if (c.cross) {
        EXPECT_TRUE(
            bitwise_equal(plain.key_input_grad().data(), with.key_input_grad().data(), plain.key_input_grad().size()));
      }
      if (c.cross == 2) {
        EXPECT_TRUE(bitwise_equal(plain.value_input_grad().data(), with.value_input_grad().data(),
                                  plain.value_input_grad().size()));
      }
      ParamList<double> p1 = plain.params(), p2 = with.params();
      ASSERT_EQ(p1.size(), p2.size());
      for (size_t k = 0; k < p1.size(); ++k)
        EXPECT_TRUE(bitwise_equal(p1[k].grad, p2[k].grad, p1[k].size())) << p1[k].name;
    }
  }
}

// A layer of identity projections (in = key = value features = H*dh, no bias, linear): in cross-attention with
// separate key and value inputs, dxq = dq, dxk = dk and dxv = dv element by element, so a value's gradient is 0
// where its projection was dropped (and, with every query seeing every key, almost never elsewhere: dq of a kept
// value is 0 only when the same feature of every key was dropped, dk when that of every query was).
MultiHeadAttention<double> identity_layer(double rate, Index F) {
  MultiHeadAttention<double> mha(F, 2, MultiHeadAttentionOptions().qkv_dropout(rate).use_bias(false).seed(3));
  const Matrix<double> I = Matrix<double>::Identity(F, F);
  mha.query_kernel() = I;
  mha.key_kernel() = I;
  mha.value_kernel() = I;
  return mha;
}

TEST(MultiHeadAttentionQkvDropout, KeptFractionIsOneMinusRateForQueriesKeysAndValues) {
  const Index B = 4, T = 16, F = 8;
  for (const double rate : {0.1, 0.3, 0.6}) {
    SCOPED_TRACE(rate);
    MultiHeadAttention<double> mha = identity_layer(rate, F);
    Index values = 0, dropped_q = 0, dropped_k = 0, dropped_v = 0, same_kv = 0;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
      const Tensor3<double> xq = random_tensor(B, T, F, 100 + seed), xk = random_tensor(B, T, F, 200 + seed);
      const Tensor3<double> xv = random_tensor(B, T, F, 300 + seed), dy = random_tensor(B, T, F, 400 + seed);
      const Mask m;
      mha.set_dropout_seed(seed);
      mha.forward(xq, m, xk, xv, m, Mode::Train);
      const Tensor3<double> dxq = mha.backward_cross(xq, m, xk, xv, m, dy);
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < T; ++t)
          for (Index f = 0; f < F; ++f) {
            dropped_q += dxq(b, t, f) == 0.0;
            dropped_k += mha.key_input_grad()(b, t, f) == 0.0;
            dropped_v += mha.value_input_grad()(b, t, f) == 0.0;
            same_kv += (mha.key_input_grad()(b, t, f) == 0.0) == (mha.value_input_grad()(b, t, f) == 0.0);
            ++values;
          }
    }
    const double n = double(values);
    EXPECT_NEAR(dropped_q / n, rate, 0.02);
    EXPECT_NEAR(dropped_k / n, rate, 0.02);
    EXPECT_NEAR(dropped_v / n, rate, 0.02);
    // independent masks agree on a value with probability rate^2 + (1 - rate)^2
    EXPECT_NEAR(same_kv / n, rate * rate + (1 - rate) * (1 - rate), 0.02);
  }
}

// Where the gradient of a value is 0 (dropped), changing that input value leaves the output bitwise unchanged
// (same masks); where it is not, the output changes: the forward drops what the backward masks.
TEST(MultiHeadAttentionQkvDropout, DroppedValuesDoNotReachTheOutputNorPassGradient) {
  const Index B = 2, T = 6, F = 4;
  MultiHeadAttention<double> mha = identity_layer(0.5, F);
  Tensor3<double> xq = random_tensor(B, T, F, 1), xk = random_tensor(B, T, F, 2), xv = random_tensor(B, T, F, 3);
  const Tensor3<double> dy = random_tensor(B, T, F, 4);
  const Mask mq = Mask::from_lengths({6, 4}), mkv = Mask::from_lengths({6, 5});
  auto forward = [&]() -> Tensor3<double> {
    mha.set_dropout_seed(8);
    return mha.forward(xq, mq, xk, xv, mkv, Mode::Train);
  };
  const Tensor3<double> y0 = forward();
  const Tensor3<double> dxq = mha.backward_cross(xq, mq, xk, xv, mkv, dy);
  const Tensor3<double> dxk = mha.key_input_grad(), dxv = mha.value_input_grad();
  Index dropped = 0, kept = 0;
  for (auto [x, dx] : {std::pair<Tensor3<double>*, const Tensor3<double>*>{&xq, &dxq}, {&xk, &dxk}, {&xv, &dxv}}) {
    const Mask& m = x == &xq ? mq : mkv;
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < m.length(b, T); ++t)  // the valid rows
        for (Index f = 0; f < F; ++f) {
          const double saved = (*x)(b, t, f);
          (*x)(b, t, f) = saved + 0.25;
          const Tensor3<double> y = forward();
          (*x)(b, t, f) = saved;
          const bool unchanged = bitwise_equal(y.data(), y0.data(), y.size());
          if ((*dx)(b, t, f) == 0.0) {
            ++dropped;
            EXPECT_TRUE(unchanged) << "(" << b << ", " << t << ", " << f << ")";
          } else {
            ++kept;
            EXPECT_FALSE(unchanged) << "(" << b << ", " << t << ", " << f << ")";
          }
        }
  }
  EXPECT_GT(dropped, 10);
  EXPECT_GT(kept, 10);
}

// Streams run in Mode::Infer: a causal layer with qkv_dropout opens its stream and matches its Infer forward.
TEST(MultiHeadAttentionQkvDropout, StreamIsTheInferForward) {
  MultiHeadAttention<double> mha(6, 2, MultiHeadAttentionOptions().causal(true).qkv_dropout(0.5).seed(3));
  const Tensor3<double> x = random_tensor(2, 5, 6, 9);
  const Tensor3<double> y = mha.forward(x, Mask(), Mode::Infer);
  std::unique_ptr<LayerStream<double>> stream = mha.open_stream(2, StreamOptions());
  Tensor3<double> ys(2, 1, 6), xt(2, 1, 6);
  for (Index t = 0; t < 5; ++t) {
    for (Index b = 0; b < 2; ++b)
      for (Index f = 0; f < 6; ++f) xt(b, 0, f) = x(b, t, f);
    stream->step(xt, std::vector<Index>{t, t}, ys);
    for (Index b = 0; b < 2; ++b)
      for (Index f = 0; f < 6; ++f) EXPECT_NEAR(ys(b, 0, f), y(b, t, f), 1e-12) << b << " " << t << " " << f;
  }
}

TEST(MultiHeadAttentionQkvDropout, ConfigRoundTrip) {
  const QkvCase c{"causal", true};
  MultiHeadAttention<double> mha(6, 2, options_of(c, 0.25).key_features(std::nullopt).value_features(std::nullopt));
  EXPECT_NE(mha.describe().find(", qkv_dropout=0.25"), std::string::npos) << mha.describe();
  const Config config = mha.config();
  ASSERT_NE(config.find("qkv_dropout"), nullptr);
  EXPECT_EQ(config.find("qkv_dropout")->as_double(), 0.25);
  std::unique_ptr<Layer<double>> copy = MultiHeadAttention<double>::from_config(6, config);
  EXPECT_EQ(copy->describe(), mha.describe());
  auto& rebuilt = dynamic_cast<MultiHeadAttention<double>&>(*copy);
  EXPECT_EQ(rebuilt.options().qkv_dropout(), 0.25);
  const Inputs in = make_inputs(c, mha.out_features());
  const Tensor3<double> y1 = run_forward(mha, c, in, Mode::Train);
  const Tensor3<double> y2 = run_forward(rebuilt, c, in, Mode::Train);
  EXPECT_TRUE(bitwise_equal(y1.data(), y2.data(), y1.size()));
  // a model file written before the option (no key) reads as qkv_dropout 0, not shown by describe()
  Config old = Config::object();
  for (size_t i = 0; i < config.keys().size(); ++i)
    if (config.keys()[i] != "qkv_dropout") old.set(config.keys()[i], config.elements()[i]);
  std::unique_ptr<Layer<double>> old_copy = MultiHeadAttention<double>::from_config(6, old);
  EXPECT_EQ(dynamic_cast<MultiHeadAttention<double>&>(*old_copy).options().qkv_dropout(), 0.0);
  EXPECT_EQ(old_copy->describe().find("qkv_dropout"), std::string::npos) << old_copy->describe();
}

TEST(MultiHeadAttentionQkvDropout, RateOutsideZeroOneIsAConfigError) {
  for (const double rate : {1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    SCOPED_TRACE(rate);
    std::string message;
    try {
      MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().qkv_dropout(rate));
    } catch (const ConfigError& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("MultiHeadAttention(heads=2"), std::string::npos) << message;
    EXPECT_NE(message.find("qkv_dropout must be in [0, 1) but got " + detail::cat(rate)), std::string::npos) << message;
  }
  // the same check for a model file
  Config config = MultiHeadAttention<float>(8, 2).config();
  config.set("qkv_dropout", 1.0);
  EXPECT_THROW(MultiHeadAttention<float>::from_config(8, config), ConfigError);
  config.set("qkv_dropout", "half");
  EXPECT_THROW(MultiHeadAttention<float>::from_config(8, config), ConfigError);
}

TEST(MultiHeadAttentionQkvDropout, TransformerEncoderBlockPassesItToItsAttention) {
  const auto options = [](double rate) { return TransformerEncoderOptions().qkv_dropout(rate).causal(true).seed(4); };
  TransformerEncoderBlock<double> plain(6, 2, 8, options(0.0)), with(6, 2, 8, options(0.4));
  EXPECT_EQ(with.attention_layer().options().qkv_dropout(), 0.4);
  const Tensor3<double> x = random_tensor(2, 5, 6, 1);
  const Mask mask = Mask::from_lengths({5, 3});
  const Tensor3<double> infer1 = plain.forward(x, mask, Mode::Infer), infer2 = with.forward(x, mask, Mode::Infer);
  EXPECT_TRUE(bitwise_equal(infer1.data(), infer2.data(), infer1.size()));
  const Tensor3<double> train1 = plain.forward(x, mask, Mode::Train), train2 = with.forward(x, mask, Mode::Train);
  EXPECT_TRUE(bitwise_equal(train1.data(), infer1.data(), train1.size()));  // no dropout at all in plain
  EXPECT_FALSE(bitwise_equal(train2.data(), infer2.data(), train2.size()));
  const Config config = with.config();
  ASSERT_NE(config.find("qkv_dropout"), nullptr);
  std::unique_ptr<Layer<double>> copy = TransformerEncoderBlock<double>::from_config(6, config);
  EXPECT_EQ(dynamic_cast<TransformerEncoderBlock<double>&>(*copy).attention_layer().options().qkv_dropout(), 0.4);
  std::string message;
  try {
    TransformerEncoderBlock<double>(6, 2, 8, options(1.0));
  } catch (const ConfigError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("TransformerEncoderBlock: qkv_dropout must be in [0, 1) but got 1"), std::string::npos)
      << message;
}

}  // namespace
