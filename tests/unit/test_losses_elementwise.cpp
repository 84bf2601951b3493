// BinaryCrossEntropy and MeanSquaredError: finite-difference gradients (masked and unmasked), PyTorch reference
// values in float and double, stability with logits of magnitude 1e4, padded elements, no allocation, errors.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <type_traits>

#include "seqattn/loss/binary_cross_entropy.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::data_path;
using seqattn::testing::GradCheckResult;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {

// Finite differences of loss.forward(z, y, mask) w.r.t. z against loss.grad().
template <class Loss>
GradCheckResult check_loss(Tensor3<double> z, const Tensor3<double>& y, const Mask& mask) {
  Loss loss;
  loss.forward(z, y, mask);
  const Tensor3<double> g = loss.grad();  // a copy: every forward of the check overwrites grad()
  return check_gradients([&] { return loss.forward(z, y, mask); }, {{"z", z.data(), g.data(), z.size()}});
}

// Targets in [0, 1], including exact 0 and 1.
Tensor3<double> probabilities(Index B, Index T, Index F, std::uint64_t seed) {
  Tensor3<double> y = (random_tensor(B, T, F, seed) + 1.0) * 0.5;
  y.data()[0] = 0.0;
  y.data()[1] = 1.0;
  return y;
}

Mask mask_values(const ReferenceData& ref, const std::string& name) {
  std::vector<Index> lengths;
  for (double v : ref.values(name)) lengths.push_back(static_cast<Index>(v));
  return Mask::from_lengths(lengths);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    return e.what();
  }
  return "no ShapeError";
}

template <class S>
void expect_tensor_near(const Tensor3<S>& actual, const Tensor3<S>& expected, double tol, const std::string& what) {
  ASSERT_EQ(actual.dimensions(), expected.dimensions()) << what;
  for (Index i = 0; i < actual.size(); ++i) {
    EXPECT_TRUE(std::isfinite(actual.data()[i])) << what << " " << i;
    EXPECT_NEAR(actual.data()[i], expected.data()[i], tol * (1.0 + std::abs(expected.data()[i]))) << what << " " << i;
  }
}

}  // namespace

TEST(BinaryCrossEntropy, GradientMaskedAndUnmasked) {
  const Tensor3<double> z = random_tensor(3, 4, 2, 1) * 4.0;
  const auto y = probabilities(3, 4, 2, 2);
  const auto all = check_loss<BinaryCrossEntropy<double>>(z, y, Mask());
  EXPECT_TRUE(all.passed()) << all.report();
  const auto masked = check_loss<BinaryCrossEntropy<double>>(z, y, Mask::from_lengths({4, 1, 0}));
  EXPECT_TRUE(masked.passed()) << masked.report();
}

TEST(MeanSquaredError, GradientMaskedAndUnmasked) {
  const auto p = random_tensor(3, 4, 2, 3);
  const auto y = random_tensor(3, 4, 2, 4);
  const auto all = check_loss<MeanSquaredError<double>>(p, y, Mask());
  EXPECT_TRUE(all.passed()) << all.report();
  const auto masked = check_loss<MeanSquaredError<double>>(p, y, Mask::from_lengths({0, 1, 4}));
  EXPECT_TRUE(masked.passed()) << masked.report();
}

template <class S>
class ElementwiseLossReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ElementwiseLossReference, Scalars);

TYPED_TEST(ElementwiseLossReference, BinaryCrossEntropyMatchesPyTorch) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
  const ReferenceData ref(data_path("losses.txt"));
  const Tensor3<S> z = ref.tensor<S>("bce_logits");
  const Tensor3<S> y = ref.tensor<S>("bce_targets");
  BinaryCrossEntropy<S> bce;
  EXPECT_NEAR(bce.forward(z, y), ref.values("bce_loss_all")[0], tol * 10);
  expect_tensor_near<S>(bce.grad(), ref.tensor<S>("bce_grad_all"), tol, "bce unmasked grad");
  EXPECT_NEAR(bce.forward(z, y, mask_values(ref, "bce_lengths")), ref.values("bce_loss")[0], tol * 10);
  expect_tensor_near<S>(bce.grad(), ref.tensor<S>("bce_grad"), tol, "bce masked grad");
  // logits of magnitude 1e4: log(sigmoid(z)) computed naively gives -inf and NaN
  const double large = ref.values("bce_large_loss")[0];
  const S loss = bce.forward(ref.tensor<S>("bce_large_logits"), ref.tensor<S>("bce_large_targets"));
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, large, tol * large);
  expect_tensor_near<S>(bce.grad(), ref.tensor<S>("bce_large_grad"), tol, "bce large grad");
}

TYPED_TEST(ElementwiseLossReference, MeanSquaredErrorMatchesPyTorch) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
  const ReferenceData ref(data_path("losses.txt"));
  const Tensor3<S> p = ref.tensor<S>("mse_pred");
  const Tensor3<S> y = ref.tensor<S>("mse_targets");
  MeanSquaredError<S> mse;
  EXPECT_NEAR(mse.forward(p, y), ref.values("mse_loss_all")[0], tol * 10);
  expect_tensor_near<S>(mse.grad(), ref.tensor<S>("mse_grad_all"), tol, "mse unmasked grad");
  EXPECT_NEAR(mse.forward(p, y, mask_values(ref, "mse_lengths")), ref.values("mse_loss")[0], tol * 10);
  expect_tensor_near<S>(mse.grad(), ref.tensor<S>("mse_grad"), tol, "mse masked grad");
}

TEST(ElementwiseLosses, PaddedElementsAreIgnoredWithZeroGradient) {
  auto z = random_tensor(2, 3, 2, 5);
  auto y = probabilities(2, 3, 2, 6);
  const Mask mask = Mask::from_lengths({3, 1});
  BinaryCrossEntropy<double> bce;
  MeanSquaredError<double> mse;
  bce.forward(z, y);  // fills every gradient, so the masked forward must clear the padded ones
  mse.forward(z, y);
  const double b0 = bce.forward(z, y, mask);
  const double m0 = mse.forward(z, y, mask);
  EXPECT_EQ(bce.valid_count(), 8);
  EXPECT_EQ(mse.valid_count(), 8);
  for (Index t = 1; t < 3; ++t)
    for (Index f = 0; f < 2; ++f) {
      EXPECT_EQ(bce.grad()(1, t, f), 0.0);
      EXPECT_EQ(mse.grad()(1, t, f), 0.0);
      z(1, t, f) = 50.0;  // padded values and targets (even out of [0, 1]) change nothing
      y(1, t, f) = 7.0;
    }
  EXPECT_EQ(bce.forward(z, y, mask), b0);
  EXPECT_EQ(mse.forward(z, y, mask), m0);
  EXPECT_EQ(bce.forward(z, y, Mask::from_lengths({0, 0})), 0.0);
  EXPECT_EQ(mse.forward(z, y, Mask::from_lengths({0, 0})), 0.0);
  for (Index i = 0; i < z.size(); ++i) {
    EXPECT_EQ(bce.grad().data()[i], 0.0);
    EXPECT_EQ(mse.grad().data()[i], 0.0);
  }
}

TEST(ElementwiseLosses, SteadyLoopAllocatesNothing) {
  const Tensor3<float> z = random_tensor(3, 4, 5, 7).cast<float>();
  const Tensor3<float> y = probabilities(3, 4, 5, 8).cast<float>();
  const Mask mask = Mask::from_lengths({4, 2, 0});
  BinaryCrossEntropy<float> bce;
  MeanSquaredError<float> mse;
  bce.forward(z, y, mask);
  mse.forward(z, y, mask);
  Eigen::internal::set_is_malloc_allowed(false);
  const float b = bce.forward(z, y, mask);
  const float m = mse.forward(z, y, mask);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_TRUE(std::isfinite(b));
  EXPECT_TRUE(std::isfinite(m));
}

TEST(ElementwiseLosses, Errors) {
  BinaryCrossEntropy<float> bce;
  MeanSquaredError<float> mse;
  Tensor3<float> z(2, 3, 4), y(2, 3, 5);
  z.setZero();
  y.setZero();
  EXPECT_EQ(error_of([&] { bce.forward(z, y); }),
            "BinaryCrossEntropy: targets expected (2, 3, 4) (the shape of the logits) but got (2, 3, 5)");
  EXPECT_EQ(error_of([&] { mse.forward(z, y); }),
            "MeanSquaredError: targets expected (2, 3, 4) (the shape of the predictions) but got (2, 3, 5)");
  Tensor3<float> t(2, 3, 4);
  t.setConstant(0.5f);
  t(1, 0, 2) = 1.5f;
  EXPECT_EQ(error_of([&] { bce.forward(z, t); }),
            "BinaryCrossEntropy: target at (1, 0, 2) is 1.5 but expected a value in [0, 1]");
  EXPECT_NO_THROW(bce.forward(z, t, Mask::from_lengths({3, 0})));  // the bad target is padding
  EXPECT_EQ(error_of([&] {
              mse.forward(z, t, Mask::from_lengths({3, 4}));
            }),
            "MeanSquaredError: mask length of sequence 1 is 4 but the input has only 3 steps");
  EXPECT_EQ(error_of([&] {
              bce.forward(z, t, Mask::from_lengths({1, 1, 1}));
            }),
            "BinaryCrossEntropy: mask has 3 sequences but the batch has 2 sequences");
}
