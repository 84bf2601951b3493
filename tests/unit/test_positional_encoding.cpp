// SinusoidalPositionalEncoding: numpy reference tables (even and odd d), add and concat outputs in float and
// double, the cached table, masked gradients, padding invariance, option errors.
#include <gtest/gtest.h>

#include "seqattn/layers/positional_encoding.hpp"
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

template <class S>
double tol() {
  return std::is_same<S, float>::value ? 2e-6 : 1e-12;
}

template <class S>
void expect_tensor_near(const Tensor3<S>& got, const Tensor3<S>& want, double tolerance) {
  ASSERT_EQ(got.dimensions(), want.dimensions());
  for (Index i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got.data()[i], want.data()[i], tolerance * (1.0 + std::abs(double(want.data()[i])))) << "at " << i;
}

template <class S>
class SinusoidalReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SinusoidalReference, Scalars);

}  // namespace

TYPED_TEST(SinusoidalReference, TableMatchesNumpyForEvenAndOddDims) {
  using S = TypeParam;
  for (Index d : {6, 5}) {
    const Matrix<S> want = ref().matrix<S>(d == 6 ? "pe_table_9x6" : "pe_table_9x5");
    const Matrix<S> got = SinusoidalPositionalEncoding<S>::compute_table(9, d);
    ASSERT_EQ(got.rows(), 9);
    ASSERT_EQ(got.cols(), d);
    for (Index p = 0; p < 9; ++p)
      for (Index c = 0; c < d; ++c) EXPECT_NEAR(got(p, c), want(p, c), tol<S>()) << "PE[" << p << ", " << c << "]";
  }
}

TYPED_TEST(SinusoidalReference, AddAndConcatOutputsMatchNumpy) {
  using S = TypeParam;
  SinusoidalPositionalEncoding<S> add(6);
  expect_tensor_near<S>(add.forward(ref().tensor<S>("pe_add_x")), ref().tensor<S>("pe_add_y"), tol<S>());
  SinusoidalPositionalEncoding<S> concat(4, SinusoidalOptions().mode(PositionMode::Concat).output_dim(5));
  EXPECT_EQ(concat.out_features(), 9);
  expect_tensor_near<S>(concat.forward(ref().tensor<S>("pe_concat_x")), ref().tensor<S>("pe_concat_y"), tol<S>());
}

TEST(SinusoidalPositionalEncoding, FirstStepIsPositionZero) {
  SinusoidalPositionalEncoding<double> pe(4);
  Tensor3<double> x(1, 2, 4);
  x.setZero();
  const auto& y = pe.forward(x);
  EXPECT_EQ(y(0, 0, 0), 0.0);  // sin 0
  EXPECT_EQ(y(0, 0, 1), 1.0);  // cos 0
  EXPECT_DOUBLE_EQ(y(0, 1, 0), std::sin(1.0));
  EXPECT_DOUBLE_EQ(y(0, 1, 3), std::cos(1.0 / 100.0));  // 10000^(2/4) = 100
}

TEST(SinusoidalPositionalEncoding, TableIsCachedAndGrowsOnlyWithT) {
  SinusoidalPositionalEncoding<double> pe(4);
  pe.forward(random_tensor(2, 5, 4, 1));
  ASSERT_EQ(pe.table().rows(), 5);
  const double* data = pe.table().data();
  pe.forward(random_tensor(2, 3, 4, 2));
  EXPECT_EQ(pe.table().rows(), 5);
  EXPECT_EQ(pe.table().data(), data);  // not recomputed for a shorter input
  pe.forward(random_tensor(1, 8, 4, 3));
  EXPECT_EQ(pe.table().rows(), 8);
  const Matrix<double> want = SinusoidalPositionalEncoding<double>::compute_table(8, 4);
  EXPECT_EQ(pe.table(), want);
}

TEST(SinusoidalPositionalEncoding, PaddedStepsPassThroughUnencoded) {
  const auto x = random_tensor(2, 4, 3, 5);
  const Mask mask = Mask::from_lengths({1, 0});
  SinusoidalPositionalEncoding<double> add(3);
  const Tensor3<double> ya = add.forward(x, mask);
  SinusoidalPositionalEncoding<double> concat(3, PositionMode::Concat, 2);
  const Tensor3<double> yc = concat.forward(x, mask);
  const Matrix<double> pe = SinusoidalPositionalEncoding<double>::compute_table(4, 3);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 4; ++t) {
      const bool valid = t < mask.length(b, 4);
      for (Index f = 0; f < 3; ++f) {
        EXPECT_DOUBLE_EQ(ya(b, t, f), x(b, t, f) + (valid ? pe(t, f) : 0.0));
        EXPECT_EQ(yc(b, t, f), x(b, t, f));
      }
      EXPECT_EQ(yc(b, t, 3), valid ? std::sin(double(t)) : 0.0);
    }
}

TEST(SinusoidalPositionalEncoding, GradientsMatchFiniteDifferencesInBothModes) {
  const Mask mask = Mask::from_lengths({5, 1, 0});
  SinusoidalPositionalEncoding<double> add(4);
  auto r = check_layer_gradients(add, random_tensor(3, 5, 4, 7), mask);
  EXPECT_TRUE(r.passed()) << r.report();
  SinusoidalPositionalEncoding<double> concat(4, SinusoidalOptions().mode(PositionMode::Concat).output_dim(3));
  r = check_layer_gradients(concat, random_tensor(3, 5, 4, 8), mask);
  EXPECT_TRUE(r.passed()) << r.report();
}

TEST(SinusoidalPositionalEncoding, PaddingInvariance) {
  for (Index extra : {0, 4}) {
    seqattn::testing::expect_padding_invariant(SinusoidalPositionalEncoding<double>(4), 3, 5, {5, 1, 0}, extra);
    seqattn::testing::expect_padding_invariant(SinusoidalPositionalEncoding<double>(4, PositionMode::Concat, 6), 3, 5,
                                               {2, 5, 0}, extra);
  }
}

TEST(SinusoidalPositionalEncoding, RejectsBadOutputDimNamingTheLayer) {
  try {
    SinusoidalPositionalEncoding<float> pe(4, SinusoidalOptions().mode(PositionMode::Concat));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("SinusoidalPositionalEncoding(mode=concat, output_dim=0): output_dim must be "
                                         "positive in concat mode but got 0"),
              std::string::npos)
        << e.what();
  }
  try {
    SinusoidalPositionalEncoding<float> pe(4, SinusoidalOptions().output_dim(6));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("SinusoidalPositionalEncoding(mode=add): output_dim must be 0 or the input "
                                         "features 4 in add mode but got 6"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(SinusoidalPositionalEncoding<float>(4, SinusoidalOptions().output_dim(4)));
}
