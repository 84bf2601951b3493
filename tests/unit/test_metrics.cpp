// accuracy and argmax_labels: label conventions, masks, ties, PyTorch reference, errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seqattn/loss/metrics.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

namespace {

// (2, 2, 3) logits whose argmax is 2, 0 | 1, 0 (the last step is a tie between classes 0 and 2: 0 wins).
Tensor3<float> logits() {
  Tensor3<float> z(2, 2, 3);
  z.setValues({{{0.1f, 0.2f, 0.9f}, {3.0f, -1.0f, 2.0f}}, {{-2.0f, 5.0f, 4.0f}, {1.0f, 0.0f, 1.0f}}});
  return z;
}

}  // namespace

TEST(Metrics, ArgmaxLabelsPerStepWithPaddingAndTies) {
  EXPECT_EQ(argmax_labels(logits()), (std::vector<int>{2, 0, 1, 0}));
  EXPECT_EQ(argmax_labels(logits(), Mask::from_lengths({1, 2})), (std::vector<int>{2, -1, 1, 0}));
  std::vector<int> out(7, 9);
  argmax_labels(logits(), Mask::from_lengths({0, 1}), out);
  EXPECT_EQ(out, (std::vector<int>{-1, -1, 1, -1}));
}

TEST(Metrics, AccuracyPerStepAndPerSequence) {
  const auto z = logits();
  EXPECT_DOUBLE_EQ(accuracy(z, {2, 0, 1, 0}), 1.0);
  EXPECT_DOUBLE_EQ(accuracy(z, {2, 1, 1, 2}), 0.5);
  EXPECT_DOUBLE_EQ(accuracy(z, {2, 1, 0, 0}), 0.5);
  // padded steps are not counted (and their labels not read)
  EXPECT_DOUBLE_EQ(accuracy(z, {2, -1, 0, 0}, Mask::from_lengths({1, 2})), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(accuracy(z, {0, 0, 0, 0}, Mask::from_lengths({0, 0})), 0.0);
  Tensor3<double> pooled(3, 1, 2);
  pooled.setValues({{{1.0, 0.0}}, {{0.0, 1.0}}, {{0.5, 0.25}}});
  EXPECT_DOUBLE_EQ(accuracy(pooled, {0, 1, 1}), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(accuracy(pooled, {0, 1, 1}, Mask::from_lengths({1, 1, 0})), 1.0);
}

TEST(Metrics, AccuracyMatchesPyTorch) {
  const ReferenceData ref(data_path("losses.txt"));
  std::vector<int> labels;
  for (double v : ref.values("ce_step_labels")) labels.push_back(static_cast<int>(v));
  std::vector<Index> lengths;
  for (double v : ref.values("ce_step_lengths")) lengths.push_back(static_cast<Index>(v));
  const double expected = ref.values("ce_step_accuracy")[0];
  EXPECT_DOUBLE_EQ(accuracy(ref.tensor<double>("ce_step_logits"), labels, Mask::from_lengths(lengths)), expected);
  EXPECT_DOUBLE_EQ(accuracy(ref.tensor<float>("ce_step_logits"), labels, Mask::from_lengths(lengths)), expected);
}

TEST(Metrics, ErrorsNameTheMetric) {
  const auto z = logits();
  try {
    accuracy(z, {0, 1, 2});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "accuracy: labels expected 2 (one per sequence) or 4 (one per step) but got 3");
  }
  try {
    accuracy(z, {0, 1, 3, 0});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "accuracy: label 2 (sequence 1, step 0) is 3 but expected a class in [0, 3)");
  }
  try {
    argmax_labels(z, Mask::from_lengths({1}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "argmax_labels: mask has 1 sequences but the batch has 2 sequences");
  }
}
