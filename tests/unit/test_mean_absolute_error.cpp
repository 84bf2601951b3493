// MeanAbsoluteError: PyTorch reference values (F.l1_loss, masked and unmasked, with exact ties p == y whose
// gradient is 0) in float and double; finite-difference gradients away from the kinks (lengths and step masks);
// padded and masked elements ignored with gradient exactly 0 (NaN there is never read); a NaN prediction gives a
// NaN loss and gradient; no allocation in a steady loop; errors naming MeanAbsoluteError; train_step with it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "seqattn/layers/dense.hpp"
#include "seqattn/loss/mean_absolute_error.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/model/train_step.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/reference_data.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;
using seqattn::testing::with_masked_values;

namespace {

Mask lengths_of(const ReferenceData& ref, const std::string& name) {
  std::vector<Index> lengths;
  for (double v : ref.values(name)) lengths.push_back(static_cast<Index>(v));
  return Mask::from_lengths(lengths);
}

// Targets at least 0.1 away from the predictions (finite differences of |d| are exact only away from d = 0).
Tensor3<double> away_from(const Tensor3<double>& p, std::uint64_t seed) {
  const Tensor3<double> r = random_tensor(p.dimension(0), p.dimension(1), p.dimension(2), seed);
  Tensor3<double> y = p;
  for (Index i = 0; i < y.size(); ++i) y.data()[i] += (r.data()[i] >= 0 ? 0.1 : -0.1) + r.data()[i];
  return y;
}

void expect_gradient_check(Tensor3<double> p, const Tensor3<double>& y, const Mask& mask) {
  MeanAbsoluteError<double> loss;
  loss.forward(p, y, mask);
  const Tensor3<double> g = loss.grad();  // a copy: every forward of the check overwrites grad()
  const auto result =
      check_gradients([&] { return loss.forward(p, y, mask); }, {{"predictions", p.data(), g.data(), p.size()}});
  EXPECT_TRUE(result.passed()) << result.report();
}

}  // namespace

template <class S>
class MeanAbsoluteErrorReference : public ::testing::Test {};
using MaeScalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MeanAbsoluteErrorReference, MaeScalars);

TYPED_TEST(MeanAbsoluteErrorReference, MatchesPyTorchL1Loss) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-14;
  const ReferenceData ref(data_path("losses.txt"));
  const Tensor3<S> p = ref.tensor<S>("mae_pred"), y = ref.tensor<S>("mae_targets");
  MeanAbsoluteError<S> mae;
  double worst = 0;
  for (const bool masked : {false, true}) {
    const std::string suffix = masked ? "" : "_all";
    const S loss = mae.forward(p, y, masked ? lengths_of(ref, "mae_lengths") : Mask());
    worst = std::max(worst, std::abs(static_cast<double>(loss) - ref.values("mae_loss" + suffix)[0]));
    const Tensor3<S> g = ref.tensor<S>("mae_grad" + suffix);
    ASSERT_EQ(mae.grad().dimensions(), g.dimensions());
    for (Index i = 0; i < g.size(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(mae.grad().data()[i] - g.data()[i])));
      if (g.data()[i] == S(0)) {  // ties and padding
        EXPECT_EQ(mae.grad().data()[i], S(0)) << suffix << " " << i;
      }
    }
  }
  EXPECT_LT(worst, tol);
  // The reference has exact ties p == y at valid elements: their gradient is 0, as torch's.
  EXPECT_EQ(p(0, 0, 1), y(0, 0, 1));
  mae.forward(p, y);
  EXPECT_EQ(mae.grad()(0, 0, 1), S(0));
  EXPECT_NE(mae.grad()(0, 0, 0), S(0));
}

TEST(MeanAbsoluteError, GradientAwayFromKinksWithLengthsAndStepMasks) {
  const Tensor3<double> p = random_tensor(3, 4, 2, 3);
  const Tensor3<double> y = away_from(p, 4);
  expect_gradient_check(p, y, Mask());
  expect_gradient_check(p, y, Mask::from_lengths({0, 1, 4}));
  const Mask steps = random_step_mask(3, 4, 5);
  ASSERT_TRUE(steps.has_holes());
  expect_gradient_check(p, y, steps);
}

TEST(MeanAbsoluteError, ValueAndGradientByHand) {
  // p - y = [[1, -2, 0], [0.5, 4, -1]] with the second step of sequence 0 masked out by lengths {1, 2}...
  Tensor3<double> p(2, 2, 3), y(2, 2, 3);
  p.setZero();
  y.setZero();
  const double d[2][3] = {{1, -2, 0}, {0.5, 4, -1}};
  for (Index f = 0; f < 3; ++f) {
    p(0, 0, f) = d[0][f];
    p(1, 0, f) = 3.0 + d[1][f];
    y(1, 0, f) = 3.0;
    p(0, 1, f) = 100.0;  // padded
    p(1, 1, f) = -2.0;   // valid, |d| = 2
  }
  MeanAbsoluteError<double> mae;
  EXPECT_DOUBLE_EQ(mae.forward(p, y, Mask::from_lengths({1, 2})), (3.0 + 5.5 + 6.0) / 9.0);
  EXPECT_EQ(mae.valid_count(), 9);
  const double n = 9.0;
  const double want[2][2][3] = {{{1 / n, -1 / n, 0}, {0, 0, 0}}, {{1 / n, 1 / n, -1 / n}, {-1 / n, -1 / n, -1 / n}}};
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 2; ++t)
      for (Index f = 0; f < 3; ++f) EXPECT_DOUBLE_EQ(mae.grad()(b, t, f), want[b][t][f]) << b << t << f;
}

TEST(MeanAbsoluteError, PaddedAndMaskedElementsAreIgnoredWithZeroGradient) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor3<double> p = random_tensor(2, 3, 2, 5), y = away_from(p, 6);
  MeanAbsoluteError<double> mae;
  mae.forward(p, y);  // fills every gradient, so the masked forward must clear the padded ones
  const Mask mask = Mask::from_lengths({3, 1});
  const double l0 = mae.forward(p, y, mask);
  EXPECT_EQ(mae.valid_count(), 8);
  for (Index t = 1; t < 3; ++t)
    for (Index f = 0; f < 2; ++f) {
      EXPECT_EQ(mae.grad()(1, t, f), 0.0);
      p(1, t, f) = nan;  // padded predictions and targets are never read
      y(1, t, f) = nan;
    }
  EXPECT_EQ(mae.forward(p, y, mask), l0);
  EXPECT_EQ(mae.forward(p, y, Mask::from_lengths({0, 0})), 0.0);
  for (Index i = 0; i < p.size(); ++i) EXPECT_EQ(mae.grad().data()[i], 0.0);
  // Step masks: the kept steps only, NaN at masked steps never read; masked gradients exactly 0.
  const Mask steps = random_step_mask(4, 6, 7);
  ASSERT_TRUE(steps.has_holes());
  const Tensor3<double> q = random_tensor(4, 6, 3, 8), z = away_from(q, 9);
  double total = 0;
  Index kept = 0;
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 6; ++t)
      if (steps.valid(b, t, 6))
        for (Index f = 0; f < 3; ++f, ++kept) total += std::abs(q(b, t, f) - z(b, t, f));
  const auto garbage = [nan](Index) { return nan; };
  const double l = mae.forward(with_masked_values(q, steps, garbage), with_masked_values(z, steps, garbage), steps);
  EXPECT_NEAR(l, total / static_cast<double>(kept), 1e-15);
  EXPECT_EQ(mae.valid_count(), kept);
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 6; ++t)
      for (Index f = 0; f < 3; ++f) {
        const double want = steps.valid(b, t, 6) ? (q(b, t, f) > z(b, t, f) ? 1.0 : -1.0) / kept : 0.0;
        EXPECT_EQ(mae.grad()(b, t, f), want) << b << "," << t << "," << f;
      }
}

TEST(MeanAbsoluteError, NanPredictionGivesNanLossAndGradient) {
  Tensor3<double> p = random_tensor(1, 2, 2, 1);
  const Tensor3<double> y = away_from(p, 2);
  p(0, 1, 0) = std::numeric_limits<double>::quiet_NaN();
  MeanAbsoluteError<double> mae;
  EXPECT_TRUE(std::isnan(mae.forward(p, y)));
  EXPECT_TRUE(std::isnan(mae.grad()(0, 1, 0)));
  EXPECT_FALSE(std::isnan(mae.grad()(0, 0, 0)));
}

TEST(MeanAbsoluteError, SteadyLoopAllocatesNothing) {
  const Tensor3<float> p = random_tensor(3, 6, 5, 7).cast<float>();
  const Tensor3<float> y = random_tensor(3, 6, 5, 8).cast<float>();
  for (const Mask& mask : {Mask(), Mask::from_lengths({6, 2, 0}), random_step_mask(3, 6, 2)}) {
    MeanAbsoluteError<float> mae;
    mae.forward(p, y, mask);
    Eigen::internal::set_is_malloc_allowed(false);
    const float l = mae.forward(p, y, mask);
    Eigen::internal::set_is_malloc_allowed(true);
    EXPECT_TRUE(std::isfinite(l));
  }
}

TEST(MeanAbsoluteError, Errors) {
  using seqattn::testing::error_of;
  MeanAbsoluteError<float> mae;
  Tensor3<float> p(2, 3, 4), y(2, 3, 5), empty(0, 3, 4);
  p.setZero();
  y.setZero();
  EXPECT_EQ(error_of<ShapeError>([&] { mae.forward(p, y); }),
            "MeanAbsoluteError: targets expected (2, 3, 4) (the shape of the predictions) but got (2, 3, 5)");
  EXPECT_EQ(error_of<ShapeError>([&] { mae.forward(p, p, Mask::from_lengths({3, 4})); }),
            "MeanAbsoluteError: mask length of sequence 1 is 4 but the input has only 3 steps");
  EXPECT_EQ(error_of<ShapeError>([&] { mae.forward(p, p, Mask::from_lengths({1, 1, 1})); }),
            "MeanAbsoluteError: mask has 3 lengths but the batch has 2 sequences");
  EXPECT_EQ(error_of<ShapeError>([&] { mae.forward(p, p, random_step_mask(2, 7, 1)); }),
            "MeanAbsoluteError: step mask has 7 steps but the input has 3");
  EXPECT_EQ(error_of<ShapeError>([&] { mae.forward(empty, empty); }),
            "MeanAbsoluteError: predictions expected at least one sequence, step and feature but got (0, 3, 4)");
}

// train_step takes it unchanged: one step of a Dense model on MAE, its loss and the model's gradient.
TEST(MeanAbsoluteError, TrainStep) {
  Sequential<double> model(3);
  model.add<Dense<double>>(2, DenseOptions().seed(1));
  const Tensor3<double> x = random_tensor(2, 4, 3, 1);
  const Tensor3<double> y = random_tensor(2, 4, 2, 2) * 3.0;
  const Mask mask = Mask::from_lengths({4, 2});
  MeanAbsoluteError<double> mae, check;
  model.zero_grad();
  const StepLoss<double> step = train_step(model, mae, x, mask, y);
  EXPECT_EQ(step.data, check.forward(model.predict(x, mask), y, mask));
  double grad_norm = 0;
  for (const auto& param : model.params())
    for (Index i = 0; i < param.size(); ++i) grad_norm += std::abs(param.grad[i]);
  EXPECT_GT(grad_norm, 0.0);
}
