// SeqSelfAttention with an attention_width above T: storage stays (B, T, min(w, T)) whatever the width (a width
// of 10^7 on (4, 100, 8) once allocated B * T * w values per cache and was killed at 24 GB), and the results
// follow the key rule: with history_only every width >= T is width T (keys [0, t]), BITWISE; without it every
// width >= 2T is the same band (all the steps), bitwise, and equals global attention to rounding; widths in
// (T, 2T) equal the naive loops and pass the gradient check.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/detail/seq_self_attention_reference.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

constexpr Index kT = 100;
const Index kHuge[] = {Index{10000000}, Index{1} << 40, std::numeric_limits<Index>::max()};

template <class S>
Tensor3<S> random_s(Index B, Index T, Index F, std::uint64_t seed) {
  return random_tensor(B, T, F, seed).cast<S>();
}

SeqSelfAttentionOptions options(AttentionType type, bool history_only, Index width) {
  SeqSelfAttentionOptions o;
  o.attention_type(type).units(4).history_only(history_only).seed(5).attention_activation(Activation::Tanh);
  o.attention_regularizer_weight(0.1).bias_init(Init::uniform(-0.5, 0.5));
  if (width > 0) o.attention_width(width);
  return o;
}

// Outputs, input gradient, parameter gradients and penalty of one forward and backward.
template <class S>
struct Run {
  Tensor3<S> y, dx;
  std::vector<std::vector<S>> grads;
  S penalty = S(0);
  Index stored_cols = 0;  // attention_band().dimension(2)
};

template <class S>
Run<S> run(AttentionType type, bool history_only, Index width, const Tensor3<S>& x, const Mask& mask,
           const Tensor3<S>& dy) {
  SeqSelfAttention<S> layer(x.dimension(2), options(type, history_only, width));
  Run<S> r;
  r.y = layer.forward(x, mask, Mode::Train);
  r.penalty = layer.regularization_loss();
  r.stored_cols = layer.attention_band().dimension(2);
  layer.zero_grad();
  r.dx = layer.backward(x, mask, dy);
  for (const auto& p : layer.params()) r.grads.emplace_back(p.grad, p.grad + p.size());
  return r;
}

template <class S>
void expect_bitwise_equal(const Run<S>& a, const Run<S>& b) {
  for (Index i = 0; i < a.y.size(); ++i) ASSERT_EQ(a.y.data()[i], b.y.data()[i]) << "y at " << i;
  for (Index i = 0; i < a.dx.size(); ++i) ASSERT_EQ(a.dx.data()[i], b.dx.data()[i]) << "dx at " << i;
  ASSERT_EQ(a.grads, b.grads);
  ASSERT_EQ(a.penalty, b.penalty);
}

template <class S>
void expect_near(const Run<S>& a, const Run<S>& b, double tol) {
  for (Index i = 0; i < a.y.size(); ++i) ASSERT_NEAR(a.y.data()[i], b.y.data()[i], tol) << "y at " << i;
  for (Index i = 0; i < a.dx.size(); ++i) ASSERT_NEAR(a.dx.data()[i], b.dx.data()[i], tol) << "dx at " << i;
  for (size_t k = 0; k < a.grads.size(); ++k)
    for (size_t i = 0; i < a.grads[k].size(); ++i)
      ASSERT_NEAR(a.grads[k][i], b.grads[k][i], tol * (1 + std::abs(b.grads[k][i]))) << "grad " << k << " at " << i;
  ASSERT_NEAR(a.penalty, b.penalty, tol * (1 + std::abs(b.penalty)));
}

template <class S>
class SeqSelfAttentionWidth : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SeqSelfAttentionWidth, Scalars);

}  // namespace

TYPED_TEST(SeqSelfAttentionWidth, HistoryOnlyWidthsFromTUpAreWidthTBitwiseWithBoundedStorage) {
  using S = TypeParam;
  const Tensor3<S> x = random_s<S>(4, kT, 8, 1), dy = random_s<S>(4, kT, 8, 2);
  const Mask mask = Mask::from_lengths({kT, 57, 1, 0});
  for (AttentionType type : {AttentionType::Additive, AttentionType::Multiplicative}) {
    SCOPED_TRACE(to_string(type));
    const Run<S> at_t = run(type, true, kT, x, mask, dy);
    ASSERT_EQ(at_t.stored_cols, kT);
    std::vector<Index> widths{kT + 1, 3 * kT};  // ascending: the storage check fails before a huge allocation
    widths.insert(widths.end(), std::begin(kHuge), std::end(kHuge));
    for (Index w : widths) {
      SCOPED_TRACE("width " + std::to_string(w));
      const Run<S> r = run(type, true, w, x, mask, dy);
      ASSERT_LE(r.stored_cols, kT) << "storage must be bounded by T";
      expect_bitwise_equal(r, at_t);
    }
    // the same keys as history_only without a width (that path uses dense products: equal to rounding)
    expect_near(at_t, run(type, true, 0, x, mask, dy), std::is_same<S, float>::value ? 2e-5 : 1e-12);
  }
}

TYPED_TEST(SeqSelfAttentionWidth, CentredWidthsFrom2TAreGlobalAttentionWithBoundedStorage) {
  using S = TypeParam;
  const Tensor3<S> x = random_s<S>(4, kT, 8, 3), dy = random_s<S>(4, kT, 8, 4);
  const Mask mask = Mask::from_lengths({kT, 57, 1, 0});
  for (AttentionType type : {AttentionType::Additive, AttentionType::Multiplicative}) {
    SCOPED_TRACE(to_string(type));
    const Run<S> at_2t = run(type, false, 2 * kT, x, mask, dy);
    ASSERT_LE(at_2t.stored_cols, kT) << "storage must be bounded by T";
    std::vector<Index> widths{2 * kT + 1, 3 * kT};
    widths.insert(widths.end(), std::begin(kHuge), std::end(kHuge));
    for (Index w : widths) {
      SCOPED_TRACE("width " + std::to_string(w));
      const Run<S> r = run(type, false, w, x, mask, dy);
      ASSERT_LE(r.stored_cols, kT);
      expect_bitwise_equal(r, at_2t);
    }
    expect_near(at_2t, run(type, false, 0, x, mask, dy), std::is_same<S, float>::value ? 2e-5 : 1e-12);
  }
}

TEST(SeqSelfAttentionWidth, WidthsBetweenTAnd2TFollowTheKeyRuleWithBoundedStorage) {
  const Index T = 9;
  const Tensor3<double> x = random_tensor(4, T, 5, 6);
  for (AttentionType type : {AttentionType::Additive, AttentionType::Multiplicative})
    for (bool history_only : {false, true})
      for (Index w : {T, T + 1, T + 4, 2 * T - 1}) {
        SeqSelfAttention<double> layer(5, options(type, history_only, w));
        SCOPED_TRACE(layer.describe());
        for (const Mask& mask : {Mask(), Mask::from_lengths({9, 6, 1, 0})}) {
          const Tensor3<double>& y = layer.forward(x, mask);
          ASSERT_LE(layer.attention_band().dimension(2), T);
          const auto ref = detail::seq_self_attention_reference(layer, x, mask);
          for (Index i = 0; i < y.size(); ++i) ASSERT_NEAR(y.data()[i], ref.y.data()[i], 1e-13) << "y at " << i;
          const Tensor3<double> A = layer.attention();
          for (Index i = 0; i < A.size(); ++i) ASSERT_NEAR(A.data()[i], ref.A.data()[i], 1e-13) << "A at " << i;
          ASSERT_NEAR(layer.regularization_loss(), ref.attention_penalty, 1e-13);
        }
        const auto result =
            seqattn::testing::check_layer_gradients(layer, random_tensor(3, 5, 5, 7), Mask::from_lengths({5, 3, 1}));
        EXPECT_TRUE(result.passed()) << result.report();
      }
}

TEST(SeqSelfAttentionWidth, Width10To7OnABatchOf4x100x8UsesLittleMemory) {
  const Tensor3<float> x = random_s<float>(4, kT, 8, 9), dy = random_s<float>(4, kT, 8, 10);
  for (bool history_only : {false, true}) {
    SeqSelfAttention<float> layer(8, options(AttentionType::Additive, history_only, 1000));
    layer.forward(x, Mask(), Mode::Train);
    ASSERT_LE(layer.attention_band().dimension(2), kT) << "width 1000: storage must be bounded by T";
    SeqSelfAttention<float> huge(8, options(AttentionType::Additive, history_only, 10000000));
    huge.forward(x, Mask(), Mode::Train);
    huge.backward(x, Mask(), dy);
    EXPECT_EQ(huge.attention_band().dimension(2), kT);
    EXPECT_EQ(huge.band().cols(), kT);
  }
  rusage usage{};
  ASSERT_EQ(getrusage(RUSAGE_SELF, &usage), 0);
  EXPECT_LT(usage.ru_maxrss, 1024L * 1024L) << "peak resident set size in KB (4 * 100 * 10^7 floats are 16 GB)";
}
