// SeqSelfAttention: parameters (names, shapes, optional biases), defaults, describe(), attention weights
// (rows sum to 1 over allowed keys, exactly 0 elsewhere and on padded rows), no NaN, seeds and clone().
#include <gtest/gtest.h>

#include <cmath>

#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {
std::string names(SeqSelfAttention<double>& layer) {
  std::string s;
  for (const auto& p : layer.params()) s += (s.empty() ? "" : " ") + p.name + p.shape_string();
  return s;
}
}  // namespace

TEST(SeqSelfAttention, AdditiveParametersAndDefaults) {
  SeqSelfAttention<double> layer(6);
  EXPECT_EQ(layer.units(), 32);
  EXPECT_EQ(layer.options().kernel_init().kind(), Init::Kind::GlorotNormal);
  EXPECT_EQ(names(layer), "Wt(6, 32) Wx(6, 32) bh(32,) Wa(32, 1) ba(1,)");
  EXPECT_EQ(layer.name(), "seq_self_attention");
  EXPECT_EQ(layer.describe(), "SeqSelfAttention(additive, units=32)");
  EXPECT_EQ(layer.out_features(), 6);
  EXPECT_TRUE(layer.bh().isZero());  // bias_init zeros
}

TEST(SeqSelfAttention, BiasesCanBeDisabledAndMultiplicativeHasOnlyWaBa) {
  SeqSelfAttention<double> no_bh(4, SeqSelfAttentionOptions().units(3).use_additive_bias(false));
  EXPECT_EQ(names(no_bh), "Wt(4, 3) Wx(4, 3) Wa(3, 1) ba(1,)");
  SeqSelfAttention<double> none(4,
                                SeqSelfAttentionOptions().units(3).use_additive_bias(false).use_attention_bias(false));
  EXPECT_EQ(names(none), "Wt(4, 3) Wx(4, 3) Wa(3, 1)");
  SeqSelfAttention<double> mul(4, SeqSelfAttentionOptions().attention_type(AttentionType::Multiplicative));
  EXPECT_EQ(names(mul), "Wa(4, 4) ba(1,)");
  SeqSelfAttention<double> mul_nb(
      4, SeqSelfAttentionOptions().attention_type(AttentionType::Multiplicative).use_attention_bias(false));
  EXPECT_EQ(names(mul_nb), "Wa(4, 4)");
}

TEST(SeqSelfAttention, DescribeNamesEveryGeometryOption) {
  SeqSelfAttention<float> a(4, SeqSelfAttentionOptions().attention_width(15).history_only(true));
  EXPECT_EQ(a.describe(), "SeqSelfAttention(additive, units=32, width=15, history_only)");
  SeqSelfAttention<float> m(4, SeqSelfAttentionOptions()
                                   .attention_type(AttentionType::Multiplicative)
                                   .attention_activation(Activation::Sigmoid));
  EXPECT_EQ(m.describe(), "SeqSelfAttention(multiplicative, activation=sigmoid)");
}

TEST(SeqSelfAttention, AttentionRowsSumToOneOverAllowedKeysOnly) {
  for (const bool history_only : {false, true}) {
    SeqSelfAttention<double> layer(3, SeqSelfAttentionOptions().units(4).attention_width(4).history_only(history_only));
    const Mask mask = Mask::from_lengths({7, 3, 0});
    layer.forward(random_tensor(3, 7, 3, 2), mask);
    const Tensor3<double> A = layer.attention();
    ASSERT_EQ(A.dimension(1), 7);
    ASSERT_EQ(A.dimension(2), 7);
    for (Index b = 0; b < 3; ++b) {
      const Index len = mask.length(b, 7);
      for (Index t = 0; t < 7; ++t) {
        double sum = 0.0;
        const auto keys = detail::attention_key_range(t, len, 4, history_only);
        for (Index s = 0; s < 7; ++s) {
          const bool allowed = s >= keys.begin && s < keys.end;
          if (allowed) {
            EXPECT_GT(A(b, t, s), 0.0);
          } else {
            EXPECT_EQ(A(b, t, s), 0.0) << "b=" << b << " t=" << t << " s=" << s;
          }
          sum += A(b, t, s);
        }
        EXPECT_NEAR(sum, t < len ? 1.0 : 0.0, 1e-14);
      }
    }
    EXPECT_EQ(layer.attention_band().dimension(2), 4);  // banded storage (B, T, w)
  }
}

TEST(SeqSelfAttention, LargeScoresAndEmptySequencesGiveNoNaN) {
  SeqSelfAttention<float> layer(2, SeqSelfAttentionOptions()
                                       .attention_type(AttentionType::Multiplicative)
                                       .attention_regularizer_weight(1.0)
                                       .seed(4));
  layer.wa().setConstant(30.0f);
  Tensor3<float> x(2, 5, 2);
  x.setConstant(3.0f);  // scores of 1080: exp would overflow without the max subtraction
  const auto& y = layer.forward(x, Mask::from_lengths({5, 0}));
  Tensor3<float> dy(2, 5, 2);
  dy.setConstant(1.0f);
  const auto& dx = layer.backward(x, Mask::from_lengths({5, 0}), dy);
  for (Index i = 0; i < y.size(); ++i) {
    EXPECT_TRUE(std::isfinite(y.data()[i]));
    EXPECT_TRUE(std::isfinite(dx.data()[i]));
  }
  EXPECT_FLOAT_EQ(y(0, 2, 1), 3.0f);
  EXPECT_EQ(y(1, 0, 0), 0.0f);
  EXPECT_EQ(dx(1, 3, 1), 0.0f);
  EXPECT_TRUE(std::isfinite(layer.regularization_loss()));
}

TEST(SeqSelfAttention, SeedFixesTheWeightsAndCloneIsIndependent) {
  SeqSelfAttention<double> a(4, SeqSelfAttentionOptions().units(5).seed(99));
  SeqSelfAttention<double> b(4, SeqSelfAttentionOptions().units(5).seed(99));
  SeqSelfAttention<double> c(4, SeqSelfAttentionOptions().units(5).seed(100));
  EXPECT_EQ(a.wt(), b.wt());
  EXPECT_EQ(a.wa(), b.wa());
  EXPECT_NE(a.wt(), c.wt());
  EXPECT_NE(a.wt(), a.wx());
  auto copy = a.clone();
  const auto x = random_tensor(2, 4, 4, 1);
  const Tensor3<double> y0 = a.forward(x);
  a.wt().setZero();
  const Tensor3<double> y1 = copy->forward(x);
  for (Index i = 0; i < y0.size(); ++i) EXPECT_EQ(y0.data()[i], y1.data()[i]);
}

TEST(SeqSelfAttention, RegularizerMatchesTheDefinitionOnAUniformRow) {
  // Two steps: Wa = 0 gives equal scores, A = [[.5, .5], [.5, .5]], A A^T - I = [[-.5, .5], [.5, -.5]].
  SeqSelfAttention<double> layer(2, SeqSelfAttentionOptions().units(2).attention_regularizer_weight(2.0));
  layer.wa().setZero();
  layer.forward(random_tensor(1, 2, 2, 7));
  EXPECT_DOUBLE_EQ(layer.regularization_loss(), 2.0 * 4 * 0.25 / 1.0);
  // Masked to one valid step: A = [1], A A^T - I = 0.
  layer.forward(random_tensor(2, 2, 2, 7), Mask::from_lengths({1, 1}));
  EXPECT_DOUBLE_EQ(layer.regularization_loss(), 0.0);
}
