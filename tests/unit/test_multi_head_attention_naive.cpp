// MultiHeadAttention: the fast path (projection GEMMs, strided head blocks, blocked causal scores) equals the
// naive loop reference of detail/multi_head_attention_reference.hpp in double: outputs, every attention
// weight (zeros included), input and parameter gradients, for self- and cross-attention, causal runs longer
// than one 64-row block, masks with lengths 0 and 1, head_size, output_features and projection activations;
// attention_window (causal sliding windows, stored banded): w = 1, small and large windows over several strips
// of query rows, w >= T, cross-attention with queries past the last key's window (dead rows), attention dropout
// replayed through the reference.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "seqattn/detail/multi_head_attention_reference.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

struct NaiveCase {
  const char* name;
  Index B, Tq, Tk, D, Dk, heads;
  std::optional<Index> head_size, output_features;
  bool causal, bias, cross;
  Activation activation;
  std::vector<Index> q_lengths, kv_lengths;  // empty: no mask
  Index window = 0;                          // attention_window (0: none)
};

std::ostream& operator<<(std::ostream& out, const NaiveCase& c) { return out << c.name; }

void expect_close(const double* a, const double* b, Index n, const std::string& what) {
  double worst = 0;
  Index at = 0;
  for (Index i = 0; i < n; ++i) {
    const double err = std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i]));
    if (err > worst) worst = err, at = i;
  }
  EXPECT_LE(worst, 1e-12) << what << "[" << at << "]: fast " << a[at] << " naive " << b[at];
}

class MultiHeadAttentionNaive : public ::testing::TestWithParam<NaiveCase> {};

TEST_P(MultiHeadAttentionNaive, FastPathEqualsNaiveLoops) {
  const NaiveCase& c = GetParam();
  MultiHeadAttention<double> mha(c.D, c.heads,
                                 MultiHeadAttentionOptions()
                                     .head_size(c.head_size)
                                     .output_features(c.output_features)
                                     .key_features(c.Dk)
                                     .causal(c.causal)
                                     .attention_window(c.window > 0 ? std::optional<Index>(c.window) : std::nullopt)
                                     .use_bias(c.bias)
                                     .activation(c.activation)
                                     .bias_init(Init::uniform(-0.3, 0.3))
                                     .seed(11));
  const auto xq = random_tensor(c.B, c.Tq, c.D, 31);
  const auto xkv = c.cross ? random_tensor(c.B, c.Tk, c.Dk, 32) : xq;
  const Mask mq = c.q_lengths.empty() ? Mask() : Mask::from_lengths(c.q_lengths);
  const Mask mkv = !c.cross ? mq : c.kv_lengths.empty() ? Mask() : Mask::from_lengths(c.kv_lengths);
  const auto dy = random_tensor(c.B, c.Tq, mha.out_features(), 33);

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
  Tensor3<double> y_ref, a_ref;
  detail::mha_reference_forward(ref, xq, mq, xkv, mkv, y_ref, a_ref);
  detail::MhaReferenceGrads<double> g;
  detail::mha_reference_backward(ref, xq, mq, xkv, mkv, dy, g);

  const Tensor3<double>& y = c.cross ? mha.forward(xq, mq, xkv, mkv, Mode::Train) : mha.forward(xq, mq, Mode::Train);
  ASSERT_EQ(y.dimensions(), y_ref.dimensions());
  expect_close(y.data(), y_ref.data(), y.size(), "y");
  ASSERT_EQ(mha.attention().dimensions(), a_ref.dimensions());
  expect_close(mha.attention().data(), a_ref.data(), a_ref.size(), "attention");
  for (Index i = 0; i < a_ref.size(); ++i) {
    if (a_ref.data()[i] == 0.0) {
      ASSERT_EQ(mha.attention().data()[i], 0.0) << "masked weight " << i;
    }
  }

  mha.zero_grad();
  if (c.cross) {
    const Tensor3<double>& dxq = mha.backward_cross(xq, mq, xkv, mkv, dy);
    expect_close(dxq.data(), g.dxq.data(), dxq.size(), "dxq");
    expect_close(mha.key_input_grad().data(), g.dxkv.data(), g.dxkv.size(), "dxkv");
  } else {
    const Tensor3<double>& dx = mha.backward(xq, mq, dy);
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

INSTANTIATE_TEST_SUITE_P(
    Configurations, MultiHeadAttentionNaive,
    ::testing::Values(
        NaiveCase{"self_masked", 4, 7, 7, 6, 6, 3, {}, {}, false, true, false, Activation::Linear, {7, 3, 0, 1}, {}},
        NaiveCase{
            "self_causal_long", 2, 150, 150, 8, 8, 2, {}, {}, true, true, false, Activation::Linear, {150, 97}, {}},
        NaiveCase{"self_head_size", 2, 9, 9, 5, 5, 2, 4, 3, false, false, false, Activation::Tanh, {9, 4}, {}},
        NaiveCase{"self_relu_causal", 3, 17, 17, 16, 16, 4, {}, {}, true, true, false, Activation::ReLU, {}, {}},
        NaiveCase{
            "cross_masked", 3, 5, 11, 8, 3, 2, {}, 6, false, true, true, Activation::Linear, {5, 2, 1}, {11, 0, 4}},
        NaiveCase{
            "cross_causal_long", 2, 130, 90, 4, 6, 1, 8, {}, true, true, true, Activation::GELU, {130, 70}, {90, 66}},
        // keys long enough for several non-causal blocks of query rows (blocks hold about 128K scores)
        NaiveCase{"cross_long_keys",
                  2,
                  100,
                  1500,
                  4,
                  3,
                  1,
                  {},
                  {},
                  false,
                  true,
                  true,
                  Activation::Linear,
                  {100, 37},
                  {1500, 1100}},
        NaiveCase{"cross_one_key", 2, 20, 1, 8, 8, 8, {}, {}, false, true, true, Activation::Linear, {}, {}},
        // attention_window: several strips of query rows (12 to 48 rows each), banded storage
        NaiveCase{"window_one", 3, 9, 9, 6, 6, 3, {}, {}, true, true, false, Activation::Linear, {9, 4, 1}, {}, 1},
        NaiveCase{
            "window_masked", 4, 30, 30, 8, 8, 2, {}, {}, true, true, false, Activation::Tanh, {30, 17, 0, 1}, {}, 5},
        NaiveCase{
            "window_long", 2, 300, 300, 8, 8, 2, 5, 6, true, false, false, Activation::Linear, {300, 211}, {}, 37},
        NaiveCase{"window_wide_long", 1, 260, 260, 16, 16, 2, {}, {}, true, true, false, Activation::GELU, {}, {}, 200},
        NaiveCase{
            "window_at_least_T", 2, 13, 13, 6, 6, 2, {}, {}, true, true, false, Activation::Linear, {13, 7}, {}, 13},
        NaiveCase{
            "window_above_T", 2, 13, 13, 6, 6, 2, {}, {}, true, true, false, Activation::Linear, {13, 7}, {}, 1000000},
        NaiveCase{"cross_window_dead_rows",
                  3,
                  40,
                  12,
                  4,
                  6,
                  2,
                  3,
                  {},
                  true,
                  true,
                  true,
                  Activation::Linear,
                  {40, 33, 5},
                  {12, 4, 0},
                  6},
        NaiveCase{"cross_window_more_keys",
                  2,
                  25,
                  90,
                  8,
                  5,
                  2,
                  {},
                  {},
                  true,
                  true,
                  true,
                  Activation::Sigmoid,
                  {25, 20},
                  {90, 13},
                  9}),
    [](const ::testing::TestParamInfo<NaiveCase>& info) { return std::string(info.param.name); });

}  // namespace
