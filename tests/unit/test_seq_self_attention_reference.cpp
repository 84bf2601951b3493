// SeqSelfAttention against an independent PyTorch implementation (tests/reference/gen_seq_self_attention.py,
// dense (B, T, T, U) autograd): outputs, attention weights, penalties, loss and every gradient, for global and
// local (even and odd) widths, history_only, masks with lengths 0 and 1, every activation, both biases, the
// attention regularizer and weight regularizers. Float within 1e-5, double within 1e-12.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "seqattn/layers/seq_self_attention.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::ReferenceData;

namespace {

const ReferenceData& data() {
  static const ReferenceData d(seqattn::testing::data_path("seq_self_attention.txt"));
  return d;
}

SeqSelfAttentionOptions options_from(const std::vector<double>& v) {
  static const Activation activations[] = {Activation::Linear, Activation::Sigmoid, Activation::Tanh, Activation::ReLU,
                                           Activation::GELU};
  SeqSelfAttentionOptions o;
  o.attention_type(v[0] != 0 ? AttentionType::Additive : AttentionType::Multiplicative);
  if (v[0] != 0) o.units(static_cast<Index>(v[1]));
  if (v[2] != 0) o.attention_width(static_cast<Index>(v[2]));
  o.history_only(v[3] != 0).attention_activation(activations[static_cast<int>(v[4])]);
  o.use_additive_bias(v[5] != 0).use_attention_bias(v[6] != 0).attention_regularizer_weight(v[7]);
  o.kernel_regularizer({v[8], v[9]}).bias_regularizer({v[10], v[11]}).seed(1);
  return o;
}

template <class S>
void expect_close(const S* got, const std::vector<double>& want, double tol, const std::string& what) {
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]) / (1.0 + std::abs(want[i]));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << "[" << at << "]: got " << got[at] << " want " << want[at];
}

}  // namespace

template <class S>
class SeqSelfAttentionReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SeqSelfAttentionReference, Scalars);

TYPED_TEST(SeqSelfAttentionReference, MatchesPyTorchForwardBackwardAndPenalties) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-12;
  const ReferenceData& ref = data();
  int configs = 0;
  for (int i = 0; ref.has("cfg" + std::to_string(i) + ".x"); ++i, ++configs) {
    const std::string c = "cfg" + std::to_string(i) + ".";
    const auto x = ref.tensor<S>(c + "x");
    const auto R = ref.tensor<S>(c + "R");
    std::vector<Index> lengths;
    for (double v : ref.values(c + "lengths")) lengths.push_back(static_cast<Index>(v));
    const Mask mask(lengths);
    SeqSelfAttention<S> layer(x.dimension(2), options_from(ref.values(c + "options")));
    SCOPED_TRACE(c + " " + layer.describe());

    auto params = layer.params();
    for (auto& p : params) {
      const auto& w = ref.values(c + p.name);
      ASSERT_EQ(static_cast<size_t>(p.size()), w.size()) << p.name;
      for (Index k = 0; k < p.size(); ++k) p.value[k] = static_cast<S>(w[static_cast<size_t>(k)]);
    }
    size_t expected_params = 0;
    for (const char* n : {"Wt", "Wx", "bh", "Wa", "ba"}) expected_params += ref.has(c + n) ? 1 : 0;
    EXPECT_EQ(params.size(), expected_params);

    const auto& y = layer.forward(x, mask, Mode::Train);
    expect_close(y.data(), ref.values(c + "y"), tol, c + "y");
    const Tensor3<S> A = layer.attention();
    expect_close(A.data(), ref.values(c + "A"), tol, c + "A");
    double loss = static_cast<double>(layer.regularization_loss());
    for (Index k = 0; k < y.size(); ++k) loss += static_cast<double>(y.data()[k]) * static_cast<double>(R.data()[k]);
    expect_close(&loss, ref.values(c + "loss"), tol, c + "loss");
    const auto& o = layer.options();
    if (!o.kernel_regularizer().active() && !o.bias_regularizer().active()) {
      const S penalty = layer.regularization_loss();
      expect_close(&penalty, ref.values(c + "penalty"), tol, c + "penalty");
    }

    layer.zero_grad();
    const auto& dx = layer.backward(x, mask, R);
    expect_close(dx.data(), ref.values(c + "dx"), tol, c + "dx");
    for (const auto& p : layer.params()) expect_close(p.grad, ref.values(c + "d" + p.name), tol, c + "d" + p.name);
  }
  EXPECT_EQ(configs, 10);
}
