// A steady training loop allocates nothing: Conv1D (every padding), Embedding (with mask_zero),
// FeatureAttention and TemporalAttention run forward and backward with Eigen's allocations forbidden
// (EIGEN_RUNTIME_NO_MALLOC) once warmed up.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

TEST(ConvEmbeddingAttention, SteadyForwardBackwardAllocatesNothing) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(std::make_unique<Conv1D<double>>(4, 5, 3, Conv1DOptions().padding(Padding::Same).stride(2)));
  layers.push_back(std::make_unique<Conv1D<double>>(4, 5, 2, Conv1DOptions().padding(Padding::Causal).dilation(2)));
  layers.push_back(
      std::make_unique<Conv1D<double>>(4, 5, 3, Conv1DOptions().activation(Activation::Tanh).use_bias(false)));
  layers.push_back(std::make_unique<FeatureAttention<double>>(4));
  layers.push_back(std::make_unique<FeatureAttention<double>>(4, FeatureAttentionOptions().shared(true)));
  layers.push_back(std::make_unique<TemporalAttention<double>>(4, 6));
  layers.push_back(std::make_unique<TemporalAttention<double>>(4, 6, TemporalAttentionOptions().shared(true)));
  const Tensor3<double> x = seqattn::testing::random_tensor(3, 6, 4, 1);
  const Mask mask = Mask::from_lengths({6, 2, 0});
  for (auto& layer : layers) {
    const Tensor3<double> dy = seqattn::testing::random_tensor(3, layer->out_time(6), layer->out_features(), 2);
    layer->forward(x, mask, Mode::Train);  // warm-up sizes every buffer
    layer->backward(x, mask, dy);
    Eigen::internal::set_is_malloc_allowed(false);
    layer->forward(x, mask, Mode::Train);
    layer->backward(x, mask, dy);
    Eigen::internal::set_is_malloc_allowed(true);
    SUCCEED() << layer->describe();
  }

  Embedding<double> emb(1, 5, 3, EmbeddingOptions().mask_zero(true));
  Tensor3<double> ids(3, 6, 1);
  ids.setValues({{{1}, {2}, {0}, {4}, {0}, {0}}, {{3}, {3}, {3}, {3}, {3}, {3}}, {{0}, {0}, {0}, {0}, {0}, {0}}});
  const Tensor3<double> dy = seqattn::testing::random_tensor(3, 6, 3, 3);
  emb.forward(ids, mask, Mode::Train);
  emb.backward(ids, mask, dy);
  Eigen::internal::set_is_malloc_allowed(false);
  emb.forward(ids, mask, Mode::Train);
  emb.backward(ids, mask, dy);
  Eigen::internal::set_is_malloc_allowed(true);
}
