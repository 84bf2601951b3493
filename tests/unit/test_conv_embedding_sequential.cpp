// Conv1D, Embedding, FeatureAttention and TemporalAttention inside Sequential: masks propagate (mask_zero
// lengths, strided-convolution lengths) and the chained gradients match finite differences.
#include <gtest/gtest.h>

#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

TEST(ConvEmbeddingSequential, MasksFollowMaskZeroAndStride) {
  Sequential<double> model(1);
  model.add<Embedding<double>>(10, 4, EmbeddingOptions().mask_zero(true).seed(1));
  model.add<Conv1D<double>>(3, 3, Conv1DOptions().padding(Padding::Same).stride(2).seed(2));
  model.add<FeatureAttention<double>>(FeatureAttentionOptions().seed(3));
  Tensor3<double> ids(3, 7, 1);
  ids.setValues({{{4}, {2}, {5}, {7}, {1}, {0}, {0}},    // mask_zero length 5 -> ceil(5/2) = 3
                 {{9}, {9}, {9}, {9}, {9}, {9}, {9}},    // incoming length 6 -> 3
                 {{3}, {0}, {0}, {0}, {0}, {0}, {0}}});  // 1 -> 1
  const Mask mask = Mask::from_lengths({7, 6, 7});
  const Tensor3<double> y = model.forward(ids, mask);
  ASSERT_EQ(model.masks().size(), 4u);
  EXPECT_EQ(model.masks()[1].lengths(), (std::vector<Index>{5, 6, 1}));
  EXPECT_EQ(model.output_mask().lengths(), (std::vector<Index>{3, 3, 1}));
  EXPECT_EQ(model.out_mask(mask, 7).lengths(), (std::vector<Index>{3, 3, 1}));
  ASSERT_EQ(y.dimension(1), 4);
  for (Index f = 0; f < 3; ++f) {
    EXPECT_EQ(y(0, 3, f), 0.0);
    EXPECT_EQ(y(2, 1, f), 0.0);
    EXPECT_NE(y(2, 0, f), 0.0);
  }
  const auto names = model.params();
  EXPECT_EQ(names[0].name, "0.embedding.embeddings");
  EXPECT_EQ(names[1].name, "1.conv1d.W");
  EXPECT_EQ(names[3].name, "2.feature_attention.W");
}

TEST(ConvEmbeddingSequential, ChainedGradientsMatchFiniteDifferences) {
  for (bool shared : {false, true}) {
    Sequential<double> model(3);
    model.add<Conv1D<double>>(4, 3,
                              Conv1DOptions().padding(Padding::Same).stride(2).activation(Activation::Tanh).seed(1));
    model.add<FeatureAttention<double>>(FeatureAttentionOptions().shared(shared).seed(2));
    model.add<TemporalAttention<double>>(4, TemporalAttentionOptions().shared(shared).seed(3));  // ceil(7/2) = 4
    model.add<Conv1D<double>>(2, 2, Conv1DOptions().padding(Padding::Causal).dilation(2).seed(4));
    const auto result = check_layer_gradients(model, random_tensor(4, 7, 3, 5), Mask::from_lengths({7, 4, 1, 0}));
    EXPECT_TRUE(result.passed()) << result.report();
  }
}
