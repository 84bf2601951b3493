// TemporalAttention (keras-attention-mechanism's attention_3d_block): finite-difference gradients (shared or
// not, with or without bias) on masked batches, PyTorch references in float and double, attention weights,
// padding invariance, the fixed number of steps, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

class TemporalAttentionGradient : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(TemporalAttentionGradient, MatchesFiniteDifferencesOnMaskedBatch) {
  const auto [shared, use_bias] = GetParam();
  TemporalAttention<double> att(3, 5, TemporalAttentionOptions().shared(shared).use_bias(use_bias).seed(4));
  if (use_bias) att.bias().setRandom();
  const auto x = random_tensor(4, 5, 3, 21);
  const auto result = check_layer_gradients(att, x, Mask::from_lengths({5, 3, 1, 0}));
  EXPECT_TRUE(result.passed()) << att.describe() << ": " << result.report();
  const auto unmasked = check_layer_gradients(att, random_tensor(2, 5, 3, 22));
  EXPECT_TRUE(unmasked.passed()) << att.describe() << ": " << unmasked.report();
}

INSTANTIATE_TEST_SUITE_P(SharedAndBias, TemporalAttentionGradient,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

template <class S>
void check_against_pytorch(double tol) {
  const ReferenceData ref(data_path("conv_embedding.txt"));
  for (const std::string tag : {"single", "shared"}) {
    const std::string p = "tatt_" + tag + "_";
    std::vector<Index> lengths;
    for (double v : ref.values(p + "lengths")) lengths.push_back(static_cast<Index>(v));
    const Tensor3<S> x = ref.tensor<S>(p + "x");
    TemporalAttention<S> att(x.dimension(2), x.dimension(1), TemporalAttentionOptions().shared(tag == "shared"));
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

TEST(TemporalAttentionReference, MatchesPyTorchInDouble) { check_against_pytorch<double>(1e-13); }
TEST(TemporalAttentionReference, MatchesPyTorchInFloat) { check_against_pytorch<float>(2e-6); }

TEST(TemporalAttention, AttentionIsASoftmaxOverValidStepsPerFeature) {
  const Mask mask = Mask::from_lengths({6, 3, 1, 0});
  const auto x = random_tensor(4, 6, 3, 2);
  for (bool shared : {false, true}) {
    TemporalAttention<double> att(3, 6, TemporalAttentionOptions().shared(shared).seed(1));
    const Tensor3<double> y = att.forward(x, mask);
    const auto& a = att.attention();
    for (Index b = 0; b < 4; ++b) {
      const Index L = mask.length(b, 6);
      for (Index f = 0; f < 3; ++f) {
        double sum = 0;
        for (Index t = 0; t < 6; ++t) {
          sum += a(b, t, f);
          EXPECT_DOUBLE_EQ(y(b, t, f), t < L ? x(b, t, f) * a(b, t, f) : 0.0);
          if (t >= L) {
            EXPECT_EQ(a(b, t, f), 0.0);
          }
          if (shared) {
            EXPECT_EQ(a(b, t, f), a(b, t, 0));
          }
        }
        EXPECT_NEAR(sum, L > 0 ? 1.0 : 0.0, 1e-14) << b << " " << f;
      }
    }
  }
}

TEST(TemporalAttention, PaddedValuesNeverMatter) {
  for (bool shared : {false, true}) {
    TemporalAttention<double> att(3, 6, TemporalAttentionOptions().shared(shared).seed(6));
    att.bias().setRandom();
    const std::vector<Index> lengths = {6, 4, 1, 0};
    const auto x = random_tensor(4, 6, 3, 5);
    Tensor3<double> x_nan = x;
    for (Index b = 0; b < 4; ++b)
      for (Index t = lengths[static_cast<size_t>(b)]; t < 6; ++t)
        for (Index f = 0; f < 3; ++f) x_nan(b, t, f) = std::numeric_limits<double>::quiet_NaN();
    const auto dy = random_tensor(4, 6, 3, 8);
    const Tensor3<double> y = att.forward(x, Mask(lengths));
    att.zero_grad();
    const Tensor3<double> dx = att.backward(x, Mask(lengths), dy);
    const Matrix<double> dW = Eigen::Map<Matrix<double>>(att.params()[0].grad, 6, 6);
    const Tensor3<double> y_nan = att.forward(x_nan, Mask(lengths));
    att.zero_grad();
    const Tensor3<double> dx_nan = att.backward(x_nan, Mask(lengths), dy);
    const Matrix<double> dW_nan = Eigen::Map<Matrix<double>>(att.params()[0].grad, 6, 6);
    for (Index b = 0; b < 4; ++b)
      for (Index t = 0; t < 6; ++t)
        for (Index f = 0; f < 3; ++f) {
          const bool valid = t < lengths[static_cast<size_t>(b)];
          ASSERT_EQ(y_nan(b, t, f), y(b, t, f));
          ASSERT_EQ(dx_nan(b, t, f), dx(b, t, f));
          if (!valid) {
            ASSERT_EQ(y(b, t, f), 0.0);
            ASSERT_EQ(dx(b, t, f), 0.0);
          }
        }
    EXPECT_EQ(dW_nan, dW);
    EXPECT_GT(dW.cwiseAbs().maxCoeff(), 0.0);
  }
}

TEST(TemporalAttention, SampleOfLengthLEqualsTheBlockOnZeroedPaddingWithMaskedScores) {
  // Masked sample of length 4 in T0 = 6 equals a hand computation with W[:4, :4] and b[:4].
  TemporalAttention<double> att(2, 6, TemporalAttentionOptions().seed(3));
  att.bias().setRandom();
  const auto x = random_tensor(1, 6, 2, 4);
  const auto& y = att.forward(x, Mask::from_lengths({4}));
  for (Index f = 0; f < 2; ++f) {
    std::vector<double> z(4);
    double mx = -1e300, sum = 0;
    for (Index t = 0; t < 4; ++t) {
      z[static_cast<size_t>(t)] = att.bias()(t);
      for (Index i = 0; i < 4; ++i) z[static_cast<size_t>(t)] += x(0, i, f) * att.kernel()(i, t);
      mx = std::max(mx, z[static_cast<size_t>(t)]);
    }
    for (auto& v : z) sum += std::exp(v - mx);
    for (Index t = 0; t < 4; ++t)
      EXPECT_NEAR(y(0, t, f), x(0, t, f) * std::exp(z[static_cast<size_t>(t)] - mx) / sum, 1e-15);
  }
}

TEST(TemporalAttention, RequiresTheFixedNumberOfStepsAndNamesItInErrors) {
  TemporalAttention<float> att(4, 10, TemporalAttentionOptions().shared(true));
  EXPECT_EQ(att.out_time(-1), 10);
  EXPECT_EQ(att.out_time(10), 10);
  Tensor3<float> x(2, 7, 4);
  x.setZero();
  try {
    att.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(
        std::string(e.what()).find("TemporalAttention(time_steps=10, shared=true): input steps expected 10 but got 7"),
        std::string::npos)
        << e.what();
  }
  try {
    TemporalAttention<float>(4, 0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TemporalAttention(time_steps=0): time_steps must be positive but got 0"),
              std::string::npos)
        << e.what();
  }
  const auto params = att.params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "W");
  EXPECT_EQ(params[0].shape, (std::vector<Index>{10, 10}));
  EXPECT_EQ(params[1].shape, (std::vector<Index>{10}));
}

// The number of steps is fixed, so the shared check runs with no extra padding (padded values still change).
TEST(TemporalAttention, SharedPaddingInvarianceCheck) {
  for (bool shared : {false, true}) {
    TemporalAttention<double> att(3, 5, TemporalAttentionOptions().shared(shared).seed(2));
    att.bias().setRandom();
    SCOPED_TRACE(att.describe());
    seqattn::testing::expect_padding_invariant(att, 4, 5, {5, 3, 1, 0}, 0);
  }
}
