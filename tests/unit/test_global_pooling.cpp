// GlobalMaxPool, GlobalAvgPool, LastStep: PyTorch reference on unpadded sequences (lengths 7, 0, 1) in float
// and double, output shape and mask, masked gradients, length 0 gives zeros without NaN or gradient, padding
// invariance, GlobalMaxPool's SIMD column groups against the plain loop (ties, NaNs).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

const seqattn::testing::ReferenceData& ref() {
  static const seqattn::testing::ReferenceData data(seqattn::testing::data_path("sequence_layers.txt"));
  return data;
}

Mask lengths_of(const std::string& name) {
  std::vector<Index> lengths;
  for (double v : ref().values(name)) lengths.push_back(static_cast<Index>(v));
  return Mask(lengths);
}

// The three global pools, by reference-data suffix.
template <class S>
std::unique_ptr<Layer<S>> make(const std::string& kind, Index F) {
  if (kind == "max") return std::make_unique<GlobalMaxPool<S>>(F);
  if (kind == "avg") return std::make_unique<GlobalAvgPool<S>>(F);
  return std::make_unique<LastStep<S>>(F);
}

template <class S>
class GlobalPoolReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GlobalPoolReference, Scalars);

}  // namespace

TYPED_TEST(GlobalPoolReference, MatchesTorchOnUnpaddedSequences) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-13;
  const Tensor3<S> x = ref().tensor<S>("pool_x");
  const Mask mask = lengths_of("gpool_lengths");
  for (const std::string kind : {"max", "avg", "last"}) {
    auto layer = make<S>(kind, 2);
    const Tensor3<S>& y = layer->forward(x, mask);
    const Tensor3<S> want = ref().tensor<S>("gpool_" + kind);
    ASSERT_EQ(y.dimensions(), want.dimensions()) << kind;
    for (Index i = 0; i < y.size(); ++i) EXPECT_NEAR(y.data()[i], want.data()[i], tol) << kind << " at " << i;
    EXPECT_EQ(layer->out_time(7), 1);
    EXPECT_EQ(layer->out_time(-1), 1);
    EXPECT_TRUE(layer->out_mask(mask, 7).empty()) << kind;
  }
}

TEST(GlobalPooling, GradientsMatchFiniteDifferencesWithMask) {
  for (const std::string kind : {"max", "avg", "last"}) {
    auto layer = make<double>(kind, 3);
    const auto result = check_layer_gradients(*layer, random_tensor(4, 5, 3, 3), Mask::from_lengths({5, 0, 1, 3}));
    EXPECT_TRUE(result.passed()) << kind << ": " << result.report();
  }
}

TEST(GlobalPooling, LengthZeroGivesZerosWithoutNaNOrGradient) {
  Tensor3<double> x = random_tensor(2, 3, 2, 5);
  for (Index t = 0; t < 3; ++t)
    for (Index f = 0; f < 2; ++f) x(1, t, f) = std::numeric_limits<double>::quiet_NaN();  // all padding
  x(0, 2, 0) = std::numeric_limits<double>::infinity();                                   // padding too
  const Mask mask = Mask::from_lengths({2, 0});
  Tensor3<double> dy(2, 1, 2);
  dy.setConstant(1.0);
  for (const std::string kind : {"max", "avg", "last"}) {
    auto layer = make<double>(kind, 2);
    const Tensor3<double>& y = layer->forward(x, mask);
    EXPECT_EQ(y(1, 0, 0), 0.0) << kind;
    EXPECT_EQ(y(1, 0, 1), 0.0) << kind;
    EXPECT_TRUE(std::isfinite(y(0, 0, 0))) << kind;
    const Tensor3<double>& dx = layer->backward(x, mask, dy);
    for (Index t = 0; t < 3; ++t)
      for (Index f = 0; f < 2; ++f) {
        EXPECT_EQ(dx(1, t, f), 0.0) << kind;
        if (t == 2) {
          EXPECT_EQ(dx(0, t, f), 0.0) << kind;
        }
      }
  }
}

TEST(GlobalPooling, MaxGradientGoesToTheFirstMaximum) {
  Tensor3<double> x(1, 4, 1);
  x.setValues({{{1.0}, {3.0}, {3.0}, {9.0}}});
  GlobalMaxPool<double> pool(1);
  const Mask mask = Mask::from_lengths({3});
  EXPECT_EQ(pool.forward(x, mask)(0, 0, 0), 3.0);
  EXPECT_EQ(pool.argmax()(0, 0), 1);
  Tensor3<double> dy(1, 1, 1);
  dy.setConstant(2.0);
  const Tensor3<double>& dx = pool.backward(x, mask, dy);
  EXPECT_EQ(dx(0, 1, 0), 2.0);
  EXPECT_EQ(dx(0, 2, 0) + dx(0, 0, 0) + dx(0, 3, 0), 0.0);
}

// The SIMD column groups (four packets, one packet) and the scalar tail against the plain loop: the maximum
// and the first step reaching it, with ties (small integers) and NaNs (never a maximum once one is held), for
// feature counts around the packet sizes. ./build.sh native runs it for AVX2 / AVX-512 packets.
template <class S>
void expect_max_matches_plain_loop() {
  Rng rng(11);
  for (Index F : {1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 67, 70, 130}) {
    const Index B = 3, T = 9;
    Tensor3<S> x(B, T, F);
    for (Index i = 0; i < x.size(); ++i) {
      const double u = rng.uniform();
      x.data()[i] = u < 0.05 ? std::numeric_limits<S>::quiet_NaN() : static_cast<S>(std::floor(rng.uniform() * 5) - 2);
    }
    const Mask mask = Mask::from_lengths({9, 1, 6});
    GlobalMaxPool<S> pool(F);
    const Tensor3<S>& y = pool.forward(x, mask);
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      for (Index f = 0; f < F; ++f) {
        S top = x(b, 0, f);
        Index at = 0;
        for (Index t = 1; t < len; ++t)
          if (x(b, t, f) > top) {
            top = x(b, t, f);
            at = t;
          }
        EXPECT_EQ(pool.argmax()(b, f), at) << "F=" << F << " b=" << b << " f=" << f;
        if (std::isnan(top)) {
          EXPECT_TRUE(std::isnan(y(b, 0, f))) << "F=" << F << " b=" << b << " f=" << f;
        } else {
          EXPECT_EQ(y(b, 0, f), top) << "F=" << F << " b=" << b << " f=" << f;
        }
      }
    }
  }
}

TEST(GlobalPooling, MaxOverSimdColumnGroupsMatchesThePlainLoop) {
  expect_max_matches_plain_loop<float>();
  expect_max_matches_plain_loop<double>();
}

TEST(GlobalPooling, PaddingInvariance) {
  for (Index extra : {0, 3}) {
    seqattn::testing::expect_padding_invariant(GlobalMaxPool<double>(3), 4, 5, {5, 0, 1, 3}, extra);
    seqattn::testing::expect_padding_invariant(GlobalAvgPool<double>(3), 4, 5, {5, 0, 1, 3}, extra);
    seqattn::testing::expect_padding_invariant(LastStep<double>(3), 4, 5, {5, 0, 1, 3}, extra);
  }
}

TEST(GlobalPooling, NamesAndWrongFeatureSize) {
  EXPECT_EQ(GlobalMaxPool<float>(2).name(), "global_max_pool");
  EXPECT_EQ(GlobalAvgPool<float>(2).name(), "global_avg_pool");
  EXPECT_EQ(LastStep<float>(2).name(), "last_step");
  GlobalAvgPool<float> pool(2);
  Tensor3<float> x(1, 3, 4);
  x.setZero();
  try {
    pool.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("GlobalAvgPool(): input features expected 2 but got 4"), std::string::npos)
        << e.what();
  }
}
