// FeatureAttention: finite-difference gradients (shared or not, with or without bias) on masked batches,
// PyTorch references in float and double, attention weights, padding invariance, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

class FeatureAttentionGradient : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(FeatureAttentionGradient, MatchesFiniteDifferencesOnMaskedBatch) {
  const auto [shared, use_bias] = GetParam();
  FeatureAttention<double> att(4, FeatureAttentionOptions().shared(shared).use_bias(use_bias).seed(3));
  if (use_bias) att.bias().setRandom();
  const auto x = random_tensor(4, 5, 4, 12);
  const auto result = check_layer_gradients(att, x, Mask::from_lengths({5, 3, 1, 0}));
  EXPECT_TRUE(result.passed()) << att.describe() << ": " << result.report();
  const auto unmasked = check_layer_gradients(att, random_tensor(2, 3, 4, 13));
  EXPECT_TRUE(unmasked.passed()) << att.describe() << ": " << unmasked.report();
}

INSTANTIATE_TEST_SUITE_P(SharedAndBias, FeatureAttentionGradient,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

template <class S>
void check_against_pytorch(double tol) {
  const ReferenceData ref(data_path("conv_embedding.txt"));
  for (const std::string tag : {"single", "shared"}) {
    const std::string p = "fatt_" + tag + "_";
    std::vector<Index> lengths;
    for (double v : ref.values(p + "lengths")) lengths.push_back(static_cast<Index>(v));
    const Tensor3<S> x = ref.tensor<S>(p + "x");
    FeatureAttention<S> att(x.dimension(2), FeatureAttentionOptions().shared(tag == "shared"));
    att.kernel() = ref.matrix<S>(p + "W");
    att.bias() = ref.matrix<S>(p + "b");
    const Tensor3<S>& y = att.forward(x, Mask(lengths));
    const auto& y_ref = ref.values(p + "y");
    const auto& a_ref = ref.values(p + "a");
    for (Index i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y.data()[i], y_ref[static_cast<size_t>(i)], tol) << tag << " y " << i;
      ASSERT_NEAR(att.attention().data()[i], a_ref[static_cast<size_t>(i)], tol) << tag << " a " << i;
    }
    att.zero_grad();
    const Tensor3<S>& dx = att.backward(x, Mask(lengths), ref.tensor<S>(p + "dy"));
    const auto& dx_ref = ref.values(p + "dx");
    for (Index i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx.data()[i], dx_ref[static_cast<size_t>(i)], tol) << tag;
    const auto params = att.params();
    const auto& dW = ref.values(p + "dW");
    const auto& db = ref.values(p + "db");
    for (Index i = 0; i < params[0].size(); ++i) ASSERT_NEAR(params[0].grad[i], dW[static_cast<size_t>(i)], tol) << tag;
    for (Index i = 0; i < params[1].size(); ++i) ASSERT_NEAR(params[1].grad[i], db[static_cast<size_t>(i)], tol) << tag;
  }
}

TEST(FeatureAttentionReference, MatchesPyTorchInDouble) { check_against_pytorch<double>(1e-13); }
TEST(FeatureAttentionReference, MatchesPyTorchInFloat) { check_against_pytorch<float>(2e-6); }

TEST(FeatureAttention, AttentionIsASoftmaxOverFeaturesAndSharedIsOneVectorPerSample) {
  const Mask mask = Mask::from_lengths({4, 2, 0});
  const auto x = random_tensor(3, 4, 5, 2);
  for (bool shared : {false, true}) {
    FeatureAttention<double> att(5, FeatureAttentionOptions().shared(shared).seed(1));
    const Tensor3<double> y = att.forward(x, mask);
    const auto& a = att.attention();
    for (Index b = 0; b < 3; ++b)
      for (Index t = 0; t < 4; ++t) {
        double sum = 0;
        for (Index f = 0; f < 5; ++f) {
          sum += a(b, t, f);
          EXPECT_DOUBLE_EQ(y(b, t, f), t < mask.length(b, 4) ? x(b, t, f) * a(b, t, f) : 0.0);
          if (shared && t < mask.length(b, 4)) {
            EXPECT_EQ(a(b, t, f), a(b, 0, f));
          }
        }
        EXPECT_NEAR(sum, t < mask.length(b, 4) ? 1.0 : 0.0, 1e-14) << b << " " << t;
      }
  }
}

TEST(FeatureAttention, PaddedValuesAndPaddingLengthNeverMatter) {
  for (bool shared : {false, true}) {
    FeatureAttention<double> att(3, FeatureAttentionOptions().shared(shared).seed(6));
    att.bias().setRandom();
    const std::vector<Index> lengths = {4, 2, 1, 0};
    const auto x = random_tensor(4, 4, 3, 5);
    Tensor3<double> x_big(4, 7, 3);
    x_big.setConstant(std::numeric_limits<double>::quiet_NaN());
    for (Index b = 0; b < 4; ++b)
      for (Index t = 0; t < lengths[static_cast<size_t>(b)]; ++t)
        for (Index f = 0; f < 3; ++f) x_big(b, t, f) = x(b, t, f);
    const Tensor3<double> y = att.forward(x, Mask(lengths));
    const auto dy = random_tensor(4, 4, 3, 8);
    att.zero_grad();
    const Tensor3<double> dx = att.backward(x, Mask(lengths), dy);
    const Matrix<double> dW = Eigen::Map<Matrix<double>>(att.params()[0].grad, 3, 3);
    const Tensor3<double> y_big = att.forward(x_big, Mask(lengths));
    Tensor3<double> dy_big(4, 7, 3);
    dy_big.setConstant(3.0);
    for (Index b = 0; b < 4; ++b)
      for (Index t = 0; t < 4; ++t)
        for (Index f = 0; f < 3; ++f) dy_big(b, t, f) = dy(b, t, f);
    att.zero_grad();
    const Tensor3<double> dx_big = att.backward(x_big, Mask(lengths), dy_big);
    const Matrix<double> dW_big = Eigen::Map<Matrix<double>>(att.params()[0].grad, 3, 3);
    for (Index b = 0; b < 4; ++b)
      for (Index t = 0; t < 7; ++t)
        for (Index f = 0; f < 3; ++f) {
          const bool valid = t < lengths[static_cast<size_t>(b)];
          if (valid) {  // equal up to rounding (vectorized exp depends on the row's alignment)
            ASSERT_NEAR(y_big(b, t, f), y(b, t, f), 1e-14) << shared << " " << b << " " << t;
            ASSERT_NEAR(dx_big(b, t, f), dx(b, t, f), 1e-14) << shared << " " << b << " " << t;
          } else {
            ASSERT_EQ(y_big(b, t, f), 0.0);
            ASSERT_EQ(dx_big(b, t, f), 0.0);
          }
        }
    EXPECT_LT((dW_big - dW).cwiseAbs().maxCoeff(), 1e-14);
    EXPECT_GT(dW.cwiseAbs().maxCoeff(), 0.0);
  }
}

TEST(FeatureAttention, ParametersAndErrors) {
  FeatureAttention<float> att(6, FeatureAttentionOptions().shared(true));
  const auto params = att.params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "W");
  EXPECT_EQ(params[0].shape, (std::vector<Index>{6, 6}));
  EXPECT_EQ(params[1].name, "b");
  EXPECT_EQ(FeatureAttention<float>(6, FeatureAttentionOptions().use_bias(false)).params().size(), 1u);
  Tensor3<float> x(2, 3, 5);
  x.setZero();
  try {
    att.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(
        std::string(e.what()).find("FeatureAttention(features=6, shared=true): input features expected 6 but got 5"),
        std::string::npos)
        << e.what();
  }
  EXPECT_THROW(FeatureAttention<float>(0), ConfigError);
}

TEST(FeatureAttention, SharedPaddingInvarianceCheck) {
  for (bool shared : {false, true}) {
    FeatureAttention<double> att(3, FeatureAttentionOptions().shared(shared).seed(2));
    att.bias().setRandom();
    SCOPED_TRACE(att.describe());
    seqattn::testing::expect_padding_invariant(att, 4, 5, {5, 3, 1, 0}, 3);
  }
}
