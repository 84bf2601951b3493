// MultiHeadAttention options of torch.nn.MultiheadAttention and keras-multi-head (issue 22 item 2):
//   - need_weights=false: attention(), attention(b, h) and attention_band() refuse with a UsageError; outputs and
//     every gradient are bitwise those of need_weights=true (self, causal, windowed, cross, step masks, dropout);
//   - output_activation: y = act_o(ctx Wo + bo) equals act_o of the linear layer's output on live rows and is
//     exactly 0 on dead rows; finite-difference gradients in double for every input and parameter (self, causal,
//     attention_window, cross, step masks); the stream form applies it too; a non-elementwise one is refused;
//   - the named weight accessors are the parameters of params();
//   - config() / from_config() round trip of the new options (describe() identical, same outputs).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../support/step_masks.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::random_step_mask;
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

struct Inputs {
  Tensor3<double> xq, xkv, dy;
  Mask mq, mkv;
};

Inputs make_inputs(const OptCase& c, Index out_features) {
  Inputs in;
  const Index B = 3, Tq = 5, Tk = c.cross ? 4 : 5;
  in.xq = random_tensor(B, Tq, 6, 1);
  in.xkv = c.cross ? random_tensor(B, Tk, 5, 2) : in.xq;
  in.mq = c.steps ? random_step_mask(B, Tq, 3) : Mask::from_lengths({5, 3, 1});
  in.mkv = c.cross ? (c.steps ? random_step_mask(B, Tk, 4) : Mask::from_lengths({4, 2, 3})) : in.mq;
  in.dy = random_tensor(B, Tq, out_features, 5);
  return in;
}

const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const OptCase& c, const Inputs& in) {
  const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
  if (c.dropout > 0) mha.set_dropout_seed(77);
  return c.cross ? mha.forward(in.xq, in.mq, in.xkv, in.mkv, mode) : mha.forward(in.xq, in.mq, mode);
}
const Tensor3<double>& run_backward(MultiHeadAttention<double>& mha, const OptCase& c, const Inputs& in) {
  return c.cross ? mha.backward_cross(in.xq, in.mq, in.xkv, in.mkv, in.dy) : mha.backward(in.xq, in.mq, in.dy);
}

bool bitwise_equal(const double* a, const double* b, Index n) {
  return n == 0 || std::memcmp(a, b, sizeof(double) * static_cast<size_t>(n)) == 0;
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

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

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
    std::vector<std::vector<double>> grads;
    for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
    std::vector<GradTarget> targets{{"xq", in.xq.data(), dxq.data(), in.xq.size()}};
    if (c.cross) targets.push_back({"xkv", in.xkv.data(), dxkv.data(), in.xkv.size()});
    for (size_t k = 0; k < params.size(); ++k)
      targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
    const auto result = check_gradients(loss, targets);
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

}  // namespace
