// Tensor3 builders (core/tensor_builders.hpp): flat values, nested lists and padded variable-length batches, their
// layout, and the errors for sizes that do not match.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seqattn/core/tensor_builders.hpp"
#include "seqattn/layers/global_pooling.hpp"

using namespace seqattn;

namespace {

template <class F>
std::string shape_error_of(F&& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    return e.what();
  }
  return "no ShapeError";
}

TEST(TensorBuilders, FlatValuesFillBatchTimeFeatureOrder) {
  std::vector<double> values(2 * 3 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i);
  const Tensor3<double> x = tensor3<double>(2, 3, 4, values);
  ASSERT_EQ(x.dimension(0), 2);
  ASSERT_EQ(x.dimension(1), 3);
  ASSERT_EQ(x.dimension(2), 4);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 3; ++t)
      for (Index f = 0; f < 4; ++f) EXPECT_EQ(x(b, t, f), static_cast<double>((b * 3 + t) * 4 + f));
  EXPECT_EQ(to_vector(x), values);
}

TEST(TensorBuilders, NestedListsAreSequencesStepsFeatures) {
  const Tensor3<float> x = tensor3<float>({{{1, 2, 3}, {4, 5, 6}}, {{7, 8, 9}, {10, 11, 12}}});
  ASSERT_EQ(x.dimension(0), 2);
  ASSERT_EQ(x.dimension(1), 2);
  ASSERT_EQ(x.dimension(2), 3);
  EXPECT_EQ(x(0, 1, 2), 6.0f);
  EXPECT_EQ(x(1, 0, 1), 8.0f);
  EXPECT_EQ(x(1, 1, 0), 10.0f);
}

TEST(TensorBuilders, PadBatchRightPadsAndGivesTheLengths) {
  const std::vector<std::vector<std::vector<double>>> sequences = {{{1, 2}}, {{3, 4}, {5, 6}, {7, 8}}, {{9, 10}, {11, 12}}};
  const PaddedBatch<double> batch = pad_batch(sequences, -1.0);
  ASSERT_EQ(batch.x.dimension(0), 3);
  ASSERT_EQ(batch.x.dimension(1), 3);
  ASSERT_EQ(batch.x.dimension(2), 2);
  EXPECT_EQ(batch.mask, Mask({1, 3, 2}));
  EXPECT_EQ(batch.x(0, 0, 1), 2.0);
  EXPECT_EQ(batch.x(0, 1, 0), -1.0);
  EXPECT_EQ(batch.x(0, 2, 1), -1.0);
  EXPECT_EQ(batch.x(1, 2, 1), 8.0);
  EXPECT_EQ(batch.x(2, 1, 0), 11.0);
  EXPECT_EQ(batch.x(2, 2, 0), -1.0);
  // What the batch is for: a layer reads only the valid steps.
  GlobalAvgPool<double> pool(2);
  const Tensor3<double>& y = pool.forward(batch.x, batch.mask);
  EXPECT_EQ(y(0, 0, 0), 1.0);
  EXPECT_EQ(y(1, 0, 1), 6.0);
  EXPECT_EQ(y(2, 0, 0), 10.0);
}

TEST(TensorBuilders, SizesThatDoNotMatchNameTheBuilderAndThePlace) {
  EXPECT_EQ(shape_error_of([] { tensor3<float>(2, 3, 4, std::vector<float>(23)); }),
            "tensor3: (2, 3, 4) expected B*T*F = 24 values but got 23");
  EXPECT_EQ(shape_error_of([] { tensor3<float>(0, 3, 4, std::vector<float>{}); }),
            "tensor3: sizes expected positive (B, T, F) but got (0, 3, 4)");
  EXPECT_EQ(shape_error_of([] { tensor3<float>({{{1, 2}, {3, 4}}, {{5, 6}}}); }),
            "tensor3 (nested lists): sequence 1 expected 2 steps (as sequence 0) but got 1");
  EXPECT_EQ(shape_error_of([] { tensor3<float>({{{1, 2}, {3}}}); }),
            "tensor3 (nested lists): sequence 0 step 1 expected 2 features (as step 0 of sequence 0) but got 1");
  EXPECT_EQ(shape_error_of([] { tensor3<float>({{{}}}); }),
            "tensor3 (nested lists): sizes expected positive (B, T, F) but got (1, 1, 0)");
  EXPECT_EQ(shape_error_of([] { pad_batch(std::vector<std::vector<std::vector<float>>>{}); }),
            "pad_batch: expected at least one sequence but got none");
  EXPECT_EQ(shape_error_of([] { pad_batch(std::vector<std::vector<std::vector<float>>>{{{1}}, {}}); }),
            "pad_batch: sequence 1 expected at least one step but has none");
  EXPECT_EQ(shape_error_of([] { pad_batch(std::vector<std::vector<std::vector<float>>>{{{1, 2}}, {{1, 2}, {3}}}); }),
            "pad_batch: sequence 1 step 1 expected 2 features (as step 0 of sequence 0) but got 1");
}

TEST(TensorBuilders, OverflowingSizesAreRefusedBeforeAllocating) {
  const Index huge = Index{1} << 40;
  EXPECT_THROW(tensor3<float>(huge, huge, 2, std::vector<float>{}), ConfigError);
}

}  // namespace
