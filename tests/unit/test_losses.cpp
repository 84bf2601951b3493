// SoftmaxCrossEntropy: finite-difference gradients (per sequence, per step masked), PyTorch reference values in
// float and double, stability with logits of magnitude 1e4, padded steps, no allocation in a steady loop, errors.
// (BinaryCrossEntropy and MeanSquaredError: test_losses_elementwise.cpp; accuracy: test_metrics.cpp.)
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::data_path;
using seqattn::testing::GradCheckResult;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {

// Finite differences of loss.forward(z, labels, mask) w.r.t. z against loss.grad().
GradCheckResult check_ce(Tensor3<double> z, const std::vector<int>& labels, const Mask& mask,
                         double label_smoothing = 0.0) {
  SoftmaxCrossEntropy<double> ce(label_smoothing);
  ce.forward(z, labels, mask);
  const Tensor3<double> g = ce.grad();  // a copy: every forward of the check overwrites grad()
  return check_gradients([&] { return ce.forward(z, labels, mask); }, {{"logits", z.data(), g.data(), z.size()}});
}

std::vector<int> int_values(const ReferenceData& ref, const std::string& name) {
  std::vector<int> out;
  for (double v : ref.values(name)) out.push_back(static_cast<int>(v));
  return out;
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

}  // namespace

TEST(SoftmaxCrossEntropy, GradientOneLabelPerSequence) {
  const auto result = check_ce(random_tensor(3, 1, 4, 1) * 3.0, {2, 0, 3}, Mask());
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(SoftmaxCrossEntropy, GradientOneLabelPerStepMasked) {
  // lengths 3, 1, 0, 2: the padded labels are -1 and must not be read
  const std::vector<int> labels = {0, 4, 2, 1, -1, -1, -1, -1, -1, 3, 3, -1};
  const auto result = check_ce(random_tensor(4, 3, 5, 2) * 3.0, labels, Mask::from_lengths({3, 1, 0, 2}));
  EXPECT_TRUE(result.passed()) << result.report();
  const auto sequence_result = check_ce(random_tensor(3, 1, 5, 3), {1, -1, 4}, Mask::from_lengths({1, 0, 1}));
  EXPECT_TRUE(sequence_result.passed()) << sequence_result.report();
}

TEST(SoftmaxCrossEntropy, PaddedStepsGetExactlyZeroGradientAfterAnUnmaskedForward) {
  SoftmaxCrossEntropy<float> ce;
  const Tensor3<float> z = random_tensor(2, 3, 4, 5).cast<float>();
  const std::vector<int> labels = {0, 1, 2, 3, 0, 1};
  const float full = ce.forward(z, labels);
  EXPECT_NE(ce.grad()(1, 2, 0), 0.0f);
  const float masked = ce.forward(z, labels, Mask::from_lengths({3, 1}));
  EXPECT_EQ(ce.valid_count(), 4);
  for (Index t = 1; t < 3; ++t)
    for (Index c = 0; c < 4; ++c) EXPECT_EQ(ce.grad()(1, t, c), 0.0f);
  // the masked loss is the mean over the 4 valid steps of the per-step losses
  SoftmaxCrossEntropy<float> one;
  float sum = 0.0f;
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < (b == 0 ? 3 : 1); ++t) {
      Tensor3<float> step(1, 1, 4);
      for (Index c = 0; c < 4; ++c) step(0, 0, c) = z(b, t, c);
      sum += one.forward(step, {labels[static_cast<size_t>(b * 3 + t)]});
    }
  EXPECT_NEAR(masked, sum / 4.0f, 1e-6f);
  EXPECT_NE(masked, full);
}

TEST(SoftmaxCrossEntropy, NoValidStepGivesZeroLossAndGradient) {
  SoftmaxCrossEntropy<double> ce;
  const auto z = random_tensor(2, 3, 4, 6);
  EXPECT_EQ(ce.forward(z, std::vector<int>(6, -1), Mask::from_lengths({0, 0})), 0.0);
  for (Index i = 0; i < ce.grad().size(); ++i) EXPECT_EQ(ce.grad().data()[i], 0.0);
}

TEST(SoftmaxCrossEntropy, SteadyLoopAllocatesNothing) {
  SoftmaxCrossEntropy<float> ce;
  const Tensor3<float> z = random_tensor(3, 4, 5, 7).cast<float>();
  const std::vector<int> labels(12, 2);
  const Mask mask = Mask::from_lengths({4, 2, 0});
  ce.forward(z, labels, mask);
  Eigen::internal::set_is_malloc_allowed(false);
  const float loss = ce.forward(z, labels, mask);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_TRUE(std::isfinite(loss));
}

template <class S>
class CrossEntropyReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CrossEntropyReference, Scalars);

TYPED_TEST(CrossEntropyReference, MatchesPyTorch) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
  const ReferenceData ref(data_path("losses.txt"));
  // ce_large: logits of magnitude 1e4, where an unstable softmax overflows
  for (const std::string c : {"ce_seq", "ce_step", "ce_large"}) {
    const Tensor3<S> z = ref.tensor<S>(c + "_logits");
    const Mask mask = ref.has(c + "_lengths") ? mask_values(ref, c + "_lengths") : Mask();
    SoftmaxCrossEntropy<S> ce;
    const S loss = ce.forward(z, int_values(ref, c + "_labels"), mask);
    const double expected = ref.values(c + "_loss")[0];
    EXPECT_TRUE(std::isfinite(loss)) << c;
    EXPECT_NEAR(loss, expected, tol * (1.0 + std::abs(expected))) << c;
    const Tensor3<S> g = ref.tensor<S>(c + "_grad");
    ASSERT_EQ(g.dimensions(), ce.grad().dimensions()) << c;
    for (Index i = 0; i < g.size(); ++i) {
      EXPECT_TRUE(std::isfinite(ce.grad().data()[i])) << c << " grad " << i;
      EXPECT_NEAR(ce.grad().data()[i], g.data()[i], tol * (1.0 + std::abs(g.data()[i]))) << c << " grad " << i;
    }
  }
}

TEST(SoftmaxCrossEntropy, GradientWithLabelSmoothing) {
  for (const double eps : {0.1, 0.5, 0.9}) {
    const auto per_sequence = check_ce(random_tensor(3, 1, 4, 2) * 3.0, {2, 0, 3}, Mask(), eps);
    EXPECT_TRUE(per_sequence.passed()) << "eps " << eps << ": " << per_sequence.report();
    const auto per_step =
        check_ce(random_tensor(3, 4, 5, 3) * 2.0, {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1}, Mask::from_lengths({4, 2, 0}), eps);
    EXPECT_TRUE(per_step.passed()) << "eps " << eps << ": " << per_step.report();
  }
}

TYPED_TEST(CrossEntropyReference, LabelSmoothingMatchesPyTorch) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
  const ReferenceData ref(data_path("losses.txt"));
  struct Case {
    std::string input, result;
    double eps;
  };
  for (const Case& c : {Case{"ce_smooth", "ce_smooth01", 0.1}, Case{"ce_smooth", "ce_smooth03", 0.3},
                        Case{"ce_smooth_step", "ce_smooth_step", 0.2}}) {
    const Tensor3<S> z = ref.tensor<S>(c.input + "_logits");
    const Mask mask = ref.has(c.input + "_lengths") ? mask_values(ref, c.input + "_lengths") : Mask();
    SoftmaxCrossEntropy<S> ce(c.eps);
    EXPECT_EQ(ce.label_smoothing(), c.eps);
    const S loss = ce.forward(z, int_values(ref, c.input + "_labels"), mask);
    const double expected = ref.values(c.result + "_loss")[0];
    EXPECT_NEAR(loss, expected, tol * (1.0 + std::abs(expected))) << c.result;
    const Tensor3<S> g = ref.tensor<S>(c.result + "_grad");
    ASSERT_EQ(g.dimensions(), ce.grad().dimensions()) << c.result;
    for (Index i = 0; i < g.size(); ++i)
      EXPECT_NEAR(ce.grad().data()[i], g.data()[i], tol * (1.0 + std::abs(g.data()[i]))) << c.result << " grad " << i;
  }
  // without smoothing the loss differs: the reference is not satisfied by the plain loss
  const Tensor3<S> z = ref.tensor<S>("ce_smooth_logits");
  SoftmaxCrossEntropy<S> plain;
  EXPECT_GT(std::abs(plain.forward(z, int_values(ref, "ce_smooth_labels")) - ref.values("ce_smooth03_loss")[0]), 1e-3);
}

TEST(SoftmaxCrossEntropy, LabelSmoothingOutOfRangeIsRefused) {
  for (const double eps : {-0.1, 1.0, 2.0, std::nan("")}) {
    try {
      SoftmaxCrossEntropy<float> ce(eps);
      ADD_FAILURE() << "label_smoothing " << eps << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("SoftmaxCrossEntropy: expected label_smoothing in [0, 1) but got"),
                std::string::npos) << e.what();
    }
  }
}

TEST(SoftmaxCrossEntropy, WrongNumberOfLabels) {
  SoftmaxCrossEntropy<float> ce;
  Tensor3<float> z(4, 3, 5);
  z.setZero();
  EXPECT_EQ(error_of([&] { ce.forward(z, std::vector<int>(5, 0)); }),
            "SoftmaxCrossEntropy: labels expected 4 (one per sequence) or 12 (one per step) but got 5");
  Tensor3<float> pooled(4, 1, 5);
  pooled.setZero();
  EXPECT_EQ(error_of([&] { ce.forward(pooled, std::vector<int>(3, 0)); }),
            "SoftmaxCrossEntropy: labels expected 4 (one per sequence) but got 3");
  EXPECT_EQ(error_of([&] { ce.forward(z, std::vector<int>(4, 0)); }),
            "SoftmaxCrossEntropy: one label per sequence (4 labels) requires logits with 1 step but got (4, 3, 5); "
            "pass 12 labels (one per step) or pool over time first");
}

TEST(SoftmaxCrossEntropy, LabelOutOfRangeNamesIndexAndValue) {
  SoftmaxCrossEntropy<float> ce;
  Tensor3<float> z(2, 3, 5);
  z.setZero();
  std::vector<int> labels = {0, 1, 2, 3, 4, 0};
  labels[4] = 5;
  EXPECT_EQ(error_of([&] { ce.forward(z, labels); }),
            "SoftmaxCrossEntropy: label 4 (sequence 1, step 1) is 5 but expected a class in [0, 5)");
  labels[4] = -1;
  EXPECT_EQ(error_of([&] { ce.forward(z, labels); }),
            "SoftmaxCrossEntropy: label 4 (sequence 1, step 1) is -1 but expected a class in [0, 5)");
  EXPECT_NO_THROW(ce.forward(z, labels, Mask::from_lengths({3, 1})));  // step 1 of sequence 1 is padding
  Tensor3<float> pooled(3, 1, 2);
  pooled.setZero();
  EXPECT_EQ(error_of([&] {
              ce.forward(pooled, {0, 2, 1});
            }),
            "SoftmaxCrossEntropy: label 1 is 2 but expected a class in [0, 2)");
}

TEST(SoftmaxCrossEntropy, MaskNotFittingTheLogits) {
  SoftmaxCrossEntropy<float> ce;
  Tensor3<float> z(2, 3, 5);
  z.setZero();
  const std::vector<int> labels(6, 0);
  EXPECT_EQ(error_of([&] { ce.forward(z, labels, Mask::from_lengths({3})); }),
            "SoftmaxCrossEntropy: mask has 1 lengths but the batch has 2 sequences");
  EXPECT_EQ(error_of([&] {
              ce.forward(z, labels, Mask::from_lengths({3, 4}));
            }),
            "SoftmaxCrossEntropy: mask length of sequence 1 is 4 but the input has only 3 steps");
}
