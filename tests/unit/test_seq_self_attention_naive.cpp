// SeqSelfAttention: the banded fast path equals the naive dense loops of
// detail/seq_self_attention_reference.hpp (outputs, dense attention weights, attention penalty) for both
// types, widths none, 1..5 and wider than T, history_only on and off, every activation, masked batches.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "seqattn/detail/seq_self_attention_reference.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

// attention type, width (0 = none), history_only, activation
using Case = std::tuple<AttentionType, Index, bool, Activation>;

template <class S>
Tensor3<S> cast(const Tensor3<double>& x) {
  Tensor3<S> out(x.dimension(0), x.dimension(1), x.dimension(2));
  for (Index i = 0; i < x.size(); ++i) out.data()[i] = static_cast<S>(x.data()[i]);
  return out;
}

template <class S>
double max_diff(const Tensor3<S>& a, const Tensor3<S>& b) {
  double worst = 0.0;
  for (Index i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return worst;
}

template <class S>
void expect_fast_equals_naive(const Case& c, double tol) {
  const auto [type, width, history_only, activation] = c;
  SeqSelfAttentionOptions o;
  o.attention_type(type).units(4).history_only(history_only).attention_activation(activation).seed(3);
  o.attention_regularizer_weight(0.25).bias_init(Init::uniform(-0.5, 0.5));
  if (width > 0) o.attention_width(width);
  SeqSelfAttention<S> layer(5, o);
  const auto x = cast<S>(random_tensor(4, 9, 5, 31));
  for (const Mask& mask : {Mask(), Mask::from_lengths({9, 6, 1, 0})}) {
    const auto& y = layer.forward(x, mask);
    const auto ref = detail::seq_self_attention_reference(layer, x, mask);
    EXPECT_LE(max_diff(y, ref.y), tol) << layer.describe();
    EXPECT_LE(max_diff(layer.attention(), ref.A), tol) << layer.describe();
    EXPECT_NEAR(layer.regularization_loss(), ref.attention_penalty, tol * (1 + std::abs(ref.attention_penalty)))
        << layer.describe();
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [type, width, history_only, activation] = info.param;
  return to_string(type) + (width ? "_w" + std::to_string(width) : std::string("_global")) +
         (history_only ? "_history" : "") + "_" + to_string(activation);
}

}  // namespace

class SeqSelfAttentionNaive : public ::testing::TestWithParam<Case> {};

TEST_P(SeqSelfAttentionNaive, FastPathEqualsNaiveLoopsInDouble) { expect_fast_equals_naive<double>(GetParam(), 1e-13); }
TEST_P(SeqSelfAttentionNaive, FastPathEqualsNaiveLoopsInFloat) { expect_fast_equals_naive<float>(GetParam(), 2e-6); }

INSTANTIATE_TEST_SUITE_P(AllGeometries, SeqSelfAttentionNaive,
                         ::testing::Combine(::testing::Values(AttentionType::Additive, AttentionType::Multiplicative),
                                            ::testing::Values(Index{0}, Index{1}, Index{2}, Index{3}, Index{4},
                                                              Index{5}, Index{20}),
                                            ::testing::Bool(),
                                            ::testing::Values(Activation::Linear, Activation::Sigmoid, Activation::Tanh,
                                                              Activation::ReLU, Activation::GELU)),
                         case_name);
