// PositionEmbedding: learned table added or concatenated at valid steps, masked gradients in both modes,
// padding invariance (also past max_length), max_length and option errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(PositionEmbedding, AddsOrConcatenatesTheTableRowOfEachValidStep) {
  const auto x = random_tensor(2, 4, 3, 1);
  const Mask mask = Mask::from_lengths({4, 2});
  PositionEmbedding<double> add(3, 6, PositionEmbeddingOptions().seed(3));
  PositionEmbedding<double> concat(3, 6, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2).seed(4));
  ASSERT_EQ(add.embeddings().rows(), 6);
  ASSERT_EQ(concat.embeddings().cols(), 2);
  EXPECT_LE(add.embeddings().cwiseAbs().maxCoeff(), 0.05);  // Keras 'uniform' initializer
  EXPECT_GT(add.embeddings().cwiseAbs().maxCoeff(), 0.0);
  const Tensor3<double> ya = add.forward(x, mask);
  const Tensor3<double> yc = concat.forward(x, mask);
  ASSERT_EQ(yc.dimension(2), 5);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 4; ++t) {
      const bool valid = t < mask.length(b, 4);
      for (Index f = 0; f < 3; ++f) {
        EXPECT_EQ(ya(b, t, f), x(b, t, f) + (valid ? add.embeddings()(t, f) : 0.0));
        EXPECT_EQ(yc(b, t, f), x(b, t, f));
      }
      for (Index f = 0; f < 2; ++f) EXPECT_EQ(yc(b, t, 3 + f), valid ? concat.embeddings()(t, f) : 0.0);
    }
  ASSERT_EQ(add.params().size(), 1u);
  EXPECT_EQ(add.params()[0].name, "embeddings");
  EXPECT_EQ(add.params()[0].shape_string(), "(6, 3)");
}

TEST(PositionEmbedding, GradientsMatchFiniteDifferencesInBothModes) {
  const Mask mask = Mask::from_lengths({5, 1, 0});
  PositionEmbedding<double> add(4, 7, PositionEmbeddingOptions().seed(1));
  auto r = check_layer_gradients(add, random_tensor(3, 5, 4, 7), mask);
  EXPECT_TRUE(r.passed()) << r.report();
  PositionEmbedding<double> concat(4, 5, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(3).seed(2));
  r = check_layer_gradients(concat, random_tensor(3, 5, 4, 8), mask);
  EXPECT_TRUE(r.passed()) << r.report();
}

TEST(PositionEmbedding, EmbeddingRowsOfPaddedOrUnusedStepsGetNoGradient) {
  PositionEmbedding<double> pe(2, 6, PositionEmbeddingOptions().seed(5));
  const auto x = random_tensor(2, 4, 2, 9);
  const Mask mask = Mask::from_lengths({3, 1});
  pe.forward(x, mask);
  pe.zero_grad();
  Tensor3<double> dy(2, 4, 2);
  dy.setConstant(1.0);
  pe.backward(x, mask, dy);
  const ParamList<double> params = pe.params();
  Eigen::Map<const Matrix<double>> dE(params[0].grad, 6, 2);
  EXPECT_EQ(dE(0, 0), 2.0);  // step 0 valid in both sequences
  EXPECT_EQ(dE(1, 1), 1.0);
  EXPECT_EQ(dE(2, 0), 1.0);
  EXPECT_EQ(dE.bottomRows(3).cwiseAbs().maxCoeff(), 0.0);  // step 3 is padding everywhere; 4, 5 unused
}

TEST(PositionEmbedding, PaddingInvarianceIncludingPaddingPastMaxLength) {
  for (Index extra : {0, 4}) {  // 5 + 4 steps > max_length 6: the padded steps past it are fine
    seqattn::testing::expect_padding_invariant(PositionEmbedding<double>(4, 6, PositionEmbeddingOptions().seed(1)), 3,
                                               5, {5, 1, 0}, extra);
    seqattn::testing::expect_padding_invariant(
        PositionEmbedding<double>(4, 6, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2).seed(1)), 3,
        5, {2, 5, 0}, extra);
  }
}

TEST(PositionEmbedding, ValidStepPastMaxLengthThrowsShapeError) {
  PositionEmbedding<float> pe(3, 6);
  Tensor3<float> x(2, 8, 3);
  x.setZero();
  EXPECT_EQ(error_of([&] { pe.forward(x); }),
            "PositionEmbedding(max_length=6, mode=add): input has 8 steps but max_length is 6");
  EXPECT_EQ(error_of([&] {
              pe.forward(x, Mask::from_lengths({6, 7}));
            }),
            "PositionEmbedding(max_length=6, mode=add): sequence 1 has 7 valid steps but max_length is 6 (steps "
            "past max_length must be padding)");
  EXPECT_THROW(pe.forward(x, Mask::from_lengths({6, 7})), ShapeError);
  EXPECT_NO_THROW(pe.forward(x, Mask::from_lengths({6, 0})));
}

TEST(PositionEmbedding, RejectsBadOptionsNamingTheLayer) {
  EXPECT_EQ(error_of([] { PositionEmbedding<float>(3, 0); }),
            "PositionEmbedding(max_length=0, mode=add): max_length must be positive but got 0");
  EXPECT_EQ(error_of([] { PositionEmbedding<float>(3, 4, PositionEmbeddingOptions().mode(PositionMode::Concat)); }),
            "PositionEmbedding(max_length=4, mode=concat, output_dim=0): output_dim must be positive in concat mode "
            "but got 0");
  EXPECT_EQ(error_of([] { PositionEmbedding<float>(3, 4, PositionEmbeddingOptions().output_dim(5)); }),
            "PositionEmbedding(max_length=4, mode=add): output_dim must be 0 or the input features 3 in add mode but "
            "got 5");
  EXPECT_THROW(PositionEmbedding<float>(3, -1), ConfigError);
}
