// MultiHeadAttention with step masks (core/mask.hpp: holes, left padding), in double, for self-attention,
// causal, attention_window, cross-attention (a step mask on the queries, on the keys/values or both), several
// heads, head_size, projection activations and attention dropout:
//   - the fast path equals the naive reference (detail/multi_head_attention_reference.hpp, which skips masked
//     queries and keys) in outputs, every attention weight (masked ones exactly 0), input and parameter gradients;
//   - finite-difference gradients with a random step mask;
//   - kept outputs, and dx at kept steps, are bitwise unchanged when the values at masked steps become garbage
//     (finite up to 1e3, NaN, Inf); dx at masked steps is exactly 0; parameter gradients are unchanged by finite
//     garbage;
//   - rows without an allowed key (a sample with no kept step, cross-attention keys all masked or left-padded past
//     a causal query or its window) output exactly 0 and pass no gradient;
//   - the layer's error when a step mask does not fit the input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/detail/multi_head_attention_reference.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::masked_nonzero;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

struct StepCase {
  const char* name;
  Index B, Tq, Tk, D, Dk, heads;
  std::optional<Index> head_size;
  bool causal = false;
  Index window = 0;  // attention_window (0: none)
  bool cross = false;
  Activation activation = Activation::Linear;
  bool q_steps = true, kv_steps = true;  // cross: a step mask (else lengths) on the queries / keys
  double dropout = 0.0;                  // attention dropout (Train, the dropout Rng replayed)
  std::uint64_t seed = 1;
};

std::ostream& operator<<(std::ostream& out, const StepCase& c) { return out << c.name; }

MultiHeadAttention<double> make_layer(const StepCase& c) {
  return MultiHeadAttention<double>(c.D, c.heads,
                                    MultiHeadAttentionOptions()
                                        .head_size(c.head_size)
                                        .key_features(c.Dk)
                                        .causal(c.causal)
                                        .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
                                        .activation(c.activation)
                                        .attention_dropout(c.dropout)
                                        .bias_init(Init::uniform(-0.5, 0.5))
                                        .seed(7 + c.seed));
}

Mask lengths_mask(Index B, Index T) {
  std::vector<Index> lengths;
  for (Index b = 0; b < B; ++b) lengths.push_back(T - b % (T + 1));
  return Mask::from_lengths(lengths);
}

struct Inputs {
  Tensor3<double> xq, xkv, dy;
  Mask mq, mkv;
};

// Random inputs and masks of a case; dy is 0 at masked query steps when `zero_masked_dy`.
Inputs make_inputs(const StepCase& c, Index out_features, bool zero_masked_dy = false) {
  Inputs in;
  in.xq = random_tensor(c.B, c.Tq, c.D, 31 + c.seed);
  in.mq = c.q_steps ? random_step_mask(c.B, c.Tq, 41 + c.seed) : lengths_mask(c.B, c.Tq);
  if (c.cross) {
    in.xkv = random_tensor(c.B, c.Tk, c.Dk, 32 + c.seed);
    in.mkv = c.kv_steps ? random_step_mask(c.B, c.Tk, 42 + c.seed) : lengths_mask(c.B, c.Tk);
  } else {
    in.xkv = in.xq;
    in.mkv = in.mq;
  }
  in.dy = random_tensor(c.B, c.Tq, out_features, 33 + c.seed);
  if (zero_masked_dy) in.dy = with_masked_values(in.dy, in.mq, [](Index) { return 0.0; });
  return in;
}

const Tensor3<double>& run_forward(MultiHeadAttention<double>& mha, const StepCase& c, const Inputs& in) {
  const Mode mode = c.dropout > 0 ? Mode::Train : Mode::Infer;
  if (c.dropout > 0) mha.set_dropout_seed(77);
  return c.cross ? mha.forward(in.xq, in.mq, in.xkv, in.mkv, mode) : mha.forward(in.xq, in.mq, mode);
}
const Tensor3<double>& run_backward(MultiHeadAttention<double>& mha, const StepCase& c, const Inputs& in) {
  return c.cross ? mha.backward_cross(in.xq, in.mq, in.xkv, in.mkv, in.dy) : mha.backward(in.xq, in.mq, in.dy);
}

void expect_close(const double* a, const double* b, Index n, const std::string& what) {
  double worst = 0;
  Index at = 0;
  for (Index i = 0; i < n; ++i) {
    const double err = std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i]));
    if (!(err <= worst)) worst = err, at = i;
  }
  EXPECT_LE(worst, 1e-12) << what << "[" << at << "]: fast " << a[at] << " naive " << b[at];
}

detail::MhaReferenceParams<double> reference_params(MultiHeadAttention<double>& mha, const StepCase& c) {
  detail::MhaReferenceParams<double> ref;
  ref.heads = c.heads;
  ref.head_size = mha.head_size();
  ref.causal = c.causal;
  ref.window = c.window;
  ref.activation = c.activation;
  for (auto& p : mha.params()) {
    const Index rows = p.shape[0], cols = p.shape.size() > 1 ? p.shape[1] : 1;
    Matrix<double> m = Eigen::Map<Matrix<double>>(p.value, rows, cols);
    if (p.name == "Wq") ref.Wq = m;
    if (p.name == "Wk") ref.Wk = m;
    if (p.name == "Wv") ref.Wv = m;
    if (p.name == "Wo") ref.Wo = m;
    if (p.name == "bq") ref.bq = m.col(0);
    if (p.name == "bk") ref.bk = m.col(0);
    if (p.name == "bv") ref.bv = m.col(0);
    if (p.name == "bo") ref.bo = m.col(0);
  }
  return ref;
}

class MultiHeadAttentionStepMask : public ::testing::TestWithParam<StepCase> {};

TEST_P(MultiHeadAttentionStepMask, EqualsNaiveReference) {
  const StepCase& c = GetParam();
  if (c.dropout > 0) GTEST_SKIP() << "the reference has no dropout (the gradient and garbage tests cover it)";
  MultiHeadAttention<double> mha = make_layer(c);
  const Inputs in = make_inputs(c, mha.out_features());
  ASSERT_TRUE(in.mq.has_holes() || in.mkv.has_holes());
  const detail::MhaReferenceParams<double> ref = reference_params(mha, c);
  Tensor3<double> y_ref, a_ref;
  detail::mha_reference_forward(ref, in.xq, in.mq, in.xkv, in.mkv, y_ref, a_ref);
  detail::MhaReferenceGrads<double> g;
  detail::mha_reference_backward(ref, in.xq, in.mq, in.xkv, in.mkv, in.dy, g);

  const Tensor3<double>& y = run_forward(mha, c, in);
  ASSERT_EQ(y.dimensions(), y_ref.dimensions());
  expect_close(y.data(), y_ref.data(), y.size(), "y");
  const Tensor3<double>& a = mha.attention();
  ASSERT_EQ(a.dimensions(), a_ref.dimensions());
  expect_close(a.data(), a_ref.data(), a.size(), "attention");
  const Index H = c.heads;
  for (Index bh = 0; bh < a.dimension(0); ++bh)
    for (Index t = 0; t < c.Tq; ++t)
      for (Index s = 0; s < c.Tk; ++s)
        if (!in.mq.valid(bh / H, t, c.Tq) || !in.mkv.valid(bh / H, s, c.Tk)) {
          ASSERT_EQ(a(bh, t, s), 0.0) << "weight of a masked query or key, (" << bh << ", " << t << ", " << s << ")";
        }
  EXPECT_EQ(masked_nonzero(y, in.mq), "");

  mha.zero_grad();
  if (c.cross) {
    const Tensor3<double>& dxq = mha.backward_cross(in.xq, in.mq, in.xkv, in.mkv, in.dy);
    expect_close(dxq.data(), g.dxq.data(), dxq.size(), "dxq");
    expect_close(mha.key_input_grad().data(), g.dxkv.data(), g.dxkv.size(), "dxkv");
  } else {
    const Tensor3<double>& dx = mha.backward(in.xq, in.mq, in.dy);
    const Tensor3<double> dx_ref = g.dxq + g.dxkv;
    expect_close(dx.data(), dx_ref.data(), dx.size(), "dx");
  }
  for (auto& p : mha.params()) {
    const double* r = p.name == "Wq"   ? g.dWq.data()
                      : p.name == "Wk" ? g.dWk.data()
                      : p.name == "Wv" ? g.dWv.data()
                      : p.name == "Wo" ? g.dWo.data()
                      : p.name == "bq" ? g.dbq.data()
                      : p.name == "bk" ? g.dbk.data()
                      : p.name == "bv" ? g.dbv.data()
                                       : g.dbo.data();
    expect_close(p.grad, r, p.size(), "d" + p.name);
  }
}

TEST_P(MultiHeadAttentionStepMask, MatchesFiniteDifferences) {
  const StepCase& c = GetParam();
  if (c.Tq * c.Tk > 400) GTEST_SKIP() << "long case: the reference test covers it";
  MultiHeadAttention<double> mha = make_layer(c);
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
  // bk shifts every score of a query row alike (softmax is shift invariant): 0 up to rounding when linear.
  EXPECT_TRUE(result.passed({"bk"})) << result.report();
  // the finite differences of the masked inputs are 0: so must dx be there, exactly
  EXPECT_EQ(masked_nonzero(dxq, in.mq), "");
  if (c.cross) {
    EXPECT_EQ(masked_nonzero(dxkv, in.mkv), "");
  }
}

TEST_P(MultiHeadAttentionStepMask, KeptResultsIgnoreMaskedValues) {
  const StepCase& c = GetParam();
  MultiHeadAttention<double> mha = make_layer(c);
  const Inputs in = make_inputs(c, mha.out_features(), /*zero_masked_dy=*/true);
  const Tensor3<double> y0 = run_forward(mha, c, in);
  mha.zero_grad();
  const Tensor3<double> dx0 = run_backward(mha, c, in);
  const Tensor3<double> dkv0 = c.cross ? mha.key_input_grad() : Tensor3<double>();
  std::vector<std::vector<double>> grads0;
  for (const auto& p : mha.params()) grads0.emplace_back(p.grad, p.grad + p.size());
  EXPECT_EQ(masked_nonzero(dx0, in.mq), "");
  if (c.cross) {
    EXPECT_EQ(masked_nonzero(dkv0, in.mkv), "");
  }

  struct Garbage {
    const char* name;
    double (*value)(Index);
    bool finite;
  };
  const Garbage garbages[] = {
      {"finite", [](Index i) { return (i % 7 - 3) * 333.0 + i % 5; }, true},
      {"NaN", [](Index) { return std::numeric_limits<double>::quiet_NaN(); }, false},
      {"Inf", [](Index i) { return i % 2 ? std::numeric_limits<double>::infinity() : -1e300; }, false},
  };
  for (const Garbage& g : garbages) {
    SCOPED_TRACE(g.name);
    Inputs bad = in;
    bad.xq = with_masked_values(in.xq, in.mq, g.value);
    bad.xkv = c.cross ? with_masked_values(in.xkv, in.mkv, g.value) : bad.xq;
    const Tensor3<double>& y = run_forward(mha, c, bad);
    EXPECT_TRUE(same_kept_steps(y0, in.mq, y, in.mq));
    EXPECT_EQ(masked_nonzero(y, in.mq), "");
    mha.zero_grad();
    const Tensor3<double>& dx = run_backward(mha, c, bad);
    EXPECT_TRUE(same_kept_steps(dx0, in.mq, dx, in.mq));
    EXPECT_EQ(masked_nonzero(dx, in.mq), "");
    if (c.cross) {
      EXPECT_TRUE(same_kept_steps(dkv0, in.mkv, mha.key_input_grad(), in.mkv));
      EXPECT_EQ(masked_nonzero(mha.key_input_grad(), in.mkv), "");
    }
    if (g.finite) {
      auto params = mha.params();
      for (size_t k = 0; k < params.size(); ++k)
        EXPECT_EQ(std::memcmp(params[k].grad, grads0[k].data(), grads0[k].size() * sizeof(double)), 0)
            << "d" << params[k].name << " depends on finite masked values";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, MultiHeadAttentionStepMask,
    ::testing::Values(
        StepCase{"self", 4, 6, 6, 6, 6, 3, {}},
        StepCase{"self_head_size_tanh", 3, 7, 7, 5, 5, 2, 3, false, 0, false, Activation::Tanh},
        StepCase{"self_causal", 4, 7, 7, 4, 4, 2, {}, true},
        StepCase{"self_causal_gelu", 3, 6, 6, 4, 4, 1, 3, true, 0, false, Activation::GELU},
        StepCase{"self_window_2", 4, 8, 8, 4, 4, 2, {}, true, 2},
        StepCase{"self_window_3_relu", 3, 7, 7, 6, 6, 3, {}, true, 3, false, Activation::ReLU},
        StepCase{"self_window_above_T", 3, 6, 6, 4, 4, 2, {}, true, 100},
        StepCase{"cross", 4, 5, 7, 4, 3, 2, {}, false, 0, true},
        StepCase{"cross_keys_steps_only", 4, 5, 6, 4, 3, 2, {}, false, 0, true, Activation::Linear, false, true},
        StepCase{"cross_queries_steps_only", 4, 6, 5, 4, 3, 2, {}, false, 0, true, Activation::Linear, true, false},
        StepCase{"cross_causal", 4, 7, 6, 4, 5, 2, 3, true, 0, true, Activation::Sigmoid},
        StepCase{"cross_window", 4, 8, 5, 4, 3, 2, {}, true, 2, true},
        StepCase{"self_dropout", 3, 6, 6, 4, 4, 2, {}, false, 0, false, Activation::Linear, true, true, 0.3},
        StepCase{"cross_window_dropout", 3, 6, 7, 4, 3, 2, {}, true, 3, true, Activation::Linear, true, true, 0.3},
        // longer than one causal block (64 rows) and several window strips (12 rows): the reference and garbage
        // tests only
        StepCase{"self_causal_long", 3, 150, 150, 4, 4, 2, {}, true, 0, false, Activation::Linear, true, true, 0, 2},
        StepCase{"self_window_long", 3, 120, 120, 4, 4, 2, {}, true, 9, false, Activation::Linear, true, true, 0, 3},
        StepCase{"cross_long_keys", 2, 40, 900, 4, 3, 1, {}, false, 0, true, Activation::Linear, true, true, 0, 4}),
    [](const ::testing::TestParamInfo<StepCase>& info) { return std::string(info.param.name); });

// Rows without an allowed key output exactly 0 (torch gives NaN) and pass no gradient, also through bo.
TEST(MultiHeadAttentionStepMaskRows, RowsWithoutAllowedKeysAreZero) {
  // sample 0: keys all masked; sample 1: keys left-padded to step 3, so causal queries 0..2 have no key
  // and, with a window of 2, neither has query 5 (keys 4, 5 masked)
  const Mask mkv = Mask::from_steps({{0, 0, 0, 0, 0, 0}, {0, 0, 0, 1, 0, 0}});
  const Mask mq = Mask::from_steps({{1, 1, 1, 1, 1, 1}, {1, 0, 1, 1, 1, 1}});
  for (const Index window : {Index{0}, Index{2}}) {
    SCOPED_TRACE(window);
    MultiHeadAttention<double> mha(4, 2,
                                   MultiHeadAttentionOptions()
                                       .key_features(3)
                                       .causal(true)
                                       .attention_window(window > 0 ? std::optional<Index>(window) : std::nullopt)
                                       .bias_init(Init::uniform(0.5, 1.0))
                                       .seed(3));
    const auto xq = random_tensor(2, 6, 4, 1), xkv = random_tensor(2, 6, 3, 2), dy = random_tensor(2, 6, 4, 3);
    const Tensor3<double> y = mha.forward(xq, mq, xkv, mkv, Mode::Train);
    std::vector<std::pair<Index, Index>> dead{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {1, 0}, {1, 1}, {1, 2}};
    if (window == 2) dead.push_back({1, 5});
    for (const auto& [b, t] : dead) {
      for (Index o = 0; o < 4; ++o) EXPECT_EQ(y(b, t, o), 0.0) << b << ", " << t;
      for (Index h = 0; h < 2; ++h)
        for (Index s = 0; s < 6; ++s) EXPECT_EQ(mha.attention()(b * 2 + h, t, s), 0.0);
    }
    for (Index t : {3, 4}) EXPECT_NE(y(1, t, 0), 0.0) << t;
    for (Index h = 0; h < 2; ++h) EXPECT_EQ(mha.attention()(2 + h, 4, 3), 1.0);  // the one kept key
    for (Index i = 0; i < y.size(); ++i) ASSERT_TRUE(std::isfinite(y.data()[i]));
    // the gradient of bo sums dy over the live rows only
    mha.zero_grad();
    const Tensor3<double> dxq = mha.backward_cross(xq, mq, xkv, mkv, dy);
    for (const auto& [b, t] : dead)
      for (Index f = 0; f < 4; ++f) EXPECT_EQ(dxq(b, t, f), 0.0) << b << ", " << t;
    Vector<double> dbo = Vector<double>::Zero(4);
    for (Index t = 3; t < (window == 2 ? 5 : 6); ++t)
      for (Index o = 0; o < 4; ++o) dbo(o) += dy(1, t, o);
    for (auto& p : mha.params()) {
      if (p.name != "bo") continue;
      for (Index o = 0; o < 4; ++o) EXPECT_NEAR(p.grad[o], dbo(o), 1e-14);
    }
  }
}

TEST(MultiHeadAttentionStepMaskRows, SampleWithoutKeptStepsIsZero) {
  MultiHeadAttention<double> mha(4, 2, MultiHeadAttentionOptions().bias_init(Init::uniform(0.5, 1.0)).seed(4));
  const Mask mask = Mask::from_steps({{0, 0, 0, 0}, {1, 0, 1, 1}});
  const auto x = with_masked_values(random_tensor(2, 4, 4, 5), mask, [](Index) { return 1e300; });
  const Tensor3<double>& y = mha.forward(x, mask);
  for (Index t = 0; t < 4; ++t)
    for (Index o = 0; o < 4; ++o) {
      EXPECT_EQ(y(0, t, o), 0.0);
      EXPECT_EQ(y(1, 1, o), 0.0);
    }
  EXPECT_NE(y(1, 0, 0), 0.0);
}

TEST(MultiHeadAttentionStepMaskErrors, StepMaskOfAnotherLength) {
  MultiHeadAttention<double> mha(4, 2, MultiHeadAttentionOptions().key_features(3));
  const auto x = random_tensor(2, 5, 4, 1), xkv = random_tensor(2, 6, 3, 2);
  const Mask m4 = Mask::from_steps({{1, 0, 1, 1}, {0, 1, 1, 1}});
  try {
    mha.forward(x, m4, xkv, Mask());
    FAIL() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("MultiHeadAttention(heads=2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step mask has 4 steps but the input has 5"), std::string::npos) << e.what();
  }
  try {
    mha.forward(x, Mask(), xkv, m4);
    FAIL() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("key/value: step mask has 4 steps but the input has 6"), std::string::npos)
        << e.what();
  }
}

}  // namespace
