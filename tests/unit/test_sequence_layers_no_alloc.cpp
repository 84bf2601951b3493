// A steady training loop allocates nothing: positional encodings, LayerNorm, BatchNorm, the pools,
// LastStepAttention and (Residual)ScaledDotProductAttention run forward and backward with Eigen's allocations forbidden
// (EIGEN_RUNTIME_NO_MALLOC) once warmed up.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/last_step_attention.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/scaled_dot_product_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

TEST(SequenceLayers, SteadyForwardBackwardAllocatesNothing) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(std::make_unique<SinusoidalPositionalEncoding<double>>(4));
  layers.push_back(std::make_unique<SinusoidalPositionalEncoding<double>>(4, PositionMode::Concat, 3));
  layers.push_back(std::make_unique<PositionEmbedding<double>>(4, 8, PositionEmbeddingOptions().seed(1)));
  layers.push_back(std::make_unique<LayerNorm<double>>(4));
  layers.push_back(std::make_unique<BatchNorm<double>>(4));
  layers.push_back(std::make_unique<GlobalMaxPool<double>>(4));
  layers.push_back(std::make_unique<GlobalAvgPool<double>>(4));
  layers.push_back(std::make_unique<LastStep<double>>(4));
  layers.push_back(std::make_unique<MaxPool1D<double>>(4, 2, PoolOptions().stride(1)));
  layers.push_back(std::make_unique<AvgPool1D<double>>(4, 3, PoolOptions().stride(2).partial_windows(true)));
  for (AttentionScore score : {AttentionScore::Luong, AttentionScore::Bahdanau})
    layers.push_back(
        std::make_unique<LastStepAttention<double>>(4, LastStepAttentionOptions().score(score).units(3).seed(2)));
  for (bool history : {false, true}) {
    layers.push_back(std::make_unique<ScaledDotProductAttention<double>>(
        4, ScaledDotProductAttentionOptions().history_only(history)));
    layers.push_back(std::make_unique<ResidualScaledDotProductAttention<double>>(
        4, ScaledDotProductAttentionOptions().history_only(history)));
  }
  const Tensor3<double> x = seqattn::testing::random_tensor(3, 6, 4, 1);
  const Mask mask = Mask::from_lengths({6, 2, 0});
  for (auto& layer : layers) {
    for (Mode mode : {Mode::Train, Mode::Infer}) {
      const Tensor3<double> dy = seqattn::testing::random_tensor(3, layer->out_time(6), layer->out_features(), 2);
      layer->forward(x, mask, mode);  // warm-up sizes every buffer
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(false);
      layer->forward(x, mask, mode);
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(true);
    }
  }
  SUCCEED();
}
