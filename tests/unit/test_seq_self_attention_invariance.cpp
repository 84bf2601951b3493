// SeqSelfAttention invariances, compared BITWISE: valid outputs (and input gradients, parameter gradients)
// do not change when padding is added or padded values change; history-only outputs ignore future steps;
// windowed outputs ignore steps outside the window. The key range of every (t, width, history_only) is
// enumerated against the rule of DESIGN.md. Widths 12 and 25 are above T for some of the padded batches (the
// storage then has T columns, its layout changes with T) and above 2T (the width is clamped).
#include <gtest/gtest.h>

#include <tuple>

#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

// attention type, width (0 = none), history_only
using Geometry = std::tuple<AttentionType, Index, bool>;

SeqSelfAttentionOptions options_of(const Geometry& g) {
  SeqSelfAttentionOptions o;
  o.attention_type(std::get<0>(g)).units(8).history_only(std::get<2>(g)).seed(12);
  o.attention_activation(Activation::Tanh).attention_regularizer_weight(0.1);
  if (std::get<1>(g) > 0) o.attention_width(std::get<1>(g));
  return o;
}

// x with T_new steps: the first min(T, T_new) steps copied, the rest filled with `pad`.
Tensor3<float> padded_copy(const Tensor3<float>& x, Index T_new, float pad) {
  Tensor3<float> out(x.dimension(0), T_new, x.dimension(2));
  out.setConstant(pad);
  for (Index b = 0; b < x.dimension(0); ++b)
    for (Index t = 0; t < std::min(T_new, x.dimension(1)); ++t)
      for (Index f = 0; f < x.dimension(2); ++f) out(b, t, f) = x(b, t, f);
  return out;
}

Tensor3<float> random_float(Index B, Index T, Index F, std::uint64_t seed) {
  const auto d = random_tensor(B, T, F, seed);
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < d.size(); ++i) x.data()[i] = static_cast<float>(d.data()[i]);
  return x;
}

// Bitwise equality of rows t < len of every sample.
void expect_valid_rows_equal(const Tensor3<float>& a, const Tensor3<float>& b, const std::vector<Index>& lengths,
                             const std::string& what) {
  for (Index s = 0; s < a.dimension(0); ++s)
    for (Index t = 0; t < lengths[static_cast<size_t>(s)]; ++t)
      for (Index f = 0; f < a.dimension(2); ++f)
        ASSERT_EQ(a(s, t, f), b(s, t, f)) << what << " at b=" << s << " t=" << t << " f=" << f;
}

std::string geometry_name(const ::testing::TestParamInfo<Geometry>& info) {
  const auto [type, width, history_only] = info.param;
  return to_string(type) + (width ? "_w" + std::to_string(width) : std::string("_global")) +
         (history_only ? "_history" : "");
}

}  // namespace

class SeqSelfAttentionInvariance : public ::testing::TestWithParam<Geometry> {};

TEST_P(SeqSelfAttentionInvariance, PaddingNeverChangesValidOutputsOrGradients) {
  SeqSelfAttention<float> layer(6, options_of(GetParam()));
  const std::vector<Index> lengths{9, 5, 1, 0};
  const auto x = random_float(4, 9, 6, 3);
  const auto dy = random_float(4, 9, 6, 4);
  // Reference: T = 9, with the padded steps of the shorter samples zero.
  const Mask mask(lengths);
  Tensor3<float> x0 = x;
  for (Index b = 0; b < 4; ++b)
    for (Index t = lengths[static_cast<size_t>(b)]; t < 9; ++t)
      for (Index f = 0; f < 6; ++f) x0(b, t, f) = 0.0f;
  const Tensor3<float> y0 = layer.forward(x0, mask, Mode::Train);
  layer.zero_grad();
  const Tensor3<float> dx0 = layer.backward(x0, mask, dy);
  std::vector<Matrix<float>> g0;
  for (const auto& p : layer.params()) g0.push_back(Eigen::Map<Matrix<float>>(p.grad, 1, p.size()));

  // Longer T with garbage in every padded step (valid steps unchanged) and a different dy on padded rows.
  // Several T, so every row of every buffer moves to an address with another alignment.
  for (const Index T1 : {10, 11, 13, 14, 17}) {
    SCOPED_TRACE("T = " + std::to_string(T1));
    Tensor3<float> x1 = padded_copy(x0, T1, 1e3f);
    for (Index b = 0; b < 4; ++b)
      for (Index t = lengths[static_cast<size_t>(b)]; t < T1; ++t)
        for (Index f = 0; f < 6; ++f) x1(b, t, f) = static_cast<float>(37 * b + 11 * t - 5 * f);
    Tensor3<float> dy1 = padded_copy(dy, T1, -7.0f);
    const Tensor3<float> y1 = layer.forward(x1, mask, Mode::Train);
    layer.zero_grad();
    const Tensor3<float> dx1 = layer.backward(x1, mask, dy1);

    expect_valid_rows_equal(y0, y1, lengths, "y");
    expect_valid_rows_equal(dx0, dx1, lengths, "dx");
    auto params = layer.params();
    for (size_t k = 0; k < params.size(); ++k)
      for (Index i = 0; i < params[k].size(); ++i) ASSERT_EQ(params[k].grad[i], g0[k](0, i)) << params[k].name;
    for (Index b = 0; b < 4; ++b)
      for (Index t = lengths[static_cast<size_t>(b)]; t < T1; ++t)
        for (Index f = 0; f < 6; ++f) {
          ASSERT_EQ(y1(b, t, f), 0.0f);   // padded query rows output 0
          ASSERT_EQ(dx1(b, t, f), 0.0f);  // and receive no gradient
        }
  }
}

TEST_P(SeqSelfAttentionInvariance, OutputsIgnoreStepsOutsideTheirKeys) {
  const auto [type, width, history_only] = GetParam();
  SeqSelfAttention<float> layer(6, options_of(GetParam()));
  const Index T = 12;
  const auto x = random_float(1, T, 6, 8);
  const Tensor3<float> y0 = layer.forward(x);
  for (Index changed = 0; changed < T; ++changed) {
    Tensor3<float> x1 = x;
    for (Index f = 0; f < 6; ++f) x1(0, changed, f) = 5.0f - static_cast<float>(f);
    const Tensor3<float>& y1 = layer.forward(x1);
    for (Index t = 0; t < T; ++t) {
      const auto keys = detail::attention_key_range(t, T, width, history_only);
      const bool sees = (changed >= keys.begin && changed < keys.end) || changed == t;
      bool same = true;
      for (Index f = 0; f < 6; ++f) same = same && y1(0, t, f) == y0(0, t, f);
      if (!sees) {
        EXPECT_TRUE(same) << "y_" << t << " changed with step " << changed;
      } else if (keys.size() > 1) {
        EXPECT_FALSE(same) << "y_" << t << " ignored step " << changed;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllGeometries, SeqSelfAttentionInvariance,
                         ::testing::Combine(::testing::Values(AttentionType::Additive, AttentionType::Multiplicative),
                                            ::testing::Values(Index{0}, Index{1}, Index{2}, Index{3}, Index{4},
                                                              Index{7}, Index{12}, Index{25}),
                                            ::testing::Bool()),
                         geometry_name);

TEST(SeqSelfAttentionKeyRange, EveryQueryWidthAndModeFollowsTheRule) {
  for (Index len = 0; len <= 9; ++len)
    for (Index width = 0; width <= 11; ++width)
      for (const bool history_only : {false, true})
        for (Index t = 0; t < 11; ++t) {
          Index lo = 0, hi = -1;  // inclusive rule of DESIGN.md section 4
          if (t < len) {
            if (width > 0 && history_only)
              lo = t - width + 1, hi = t;
            else if (width > 0)
              lo = t - width / 2, hi = t - width / 2 + width - 1;
            else if (history_only)
              lo = 0, hi = t;
            else
              lo = 0, hi = len - 1;
            lo = std::max<Index>(lo, 0);
            hi = std::min<Index>(hi, len - 1);
          }
          const auto r = detail::attention_key_range(t, len, width, history_only);
          for (Index s = -2; s < 13; ++s) {
            const bool expected = t < len && s >= lo && s <= hi;
            EXPECT_EQ(s >= r.begin && s < r.end, expected)
                << "t=" << t << " s=" << s << " len=" << len << " width=" << width << " history=" << history_only;
          }
          if (t < len) {
            EXPECT_GE(r.size(), 1) << "a valid query always sees itself";
          }
        }
  // Spot values: even widths look one step further back than forward.
  EXPECT_EQ(detail::attention_key_range(5, 10, 4, false).begin, 3);
  EXPECT_EQ(detail::attention_key_range(5, 10, 4, false).end, 7);
  EXPECT_EQ(detail::attention_key_range(5, 10, 3, false).begin, 4);
  EXPECT_EQ(detail::attention_key_range(5, 10, 3, false).end, 7);
  EXPECT_EQ(detail::attention_key_range(5, 10, 3, true).begin, 3);
  EXPECT_EQ(detail::attention_key_range(5, 10, 3, true).end, 6);
}
