// Sizes near 2^31, 2^32, 2^62 and 2^63 in every size argument and size option of every layer (issue 19, item 6).
// heads x head_size, units x 4, dilation x kernel overflowed signed arithmetic (undefined behaviour, then a
// segfault or an Eigen assertion). Every construction, and a forward on a small batch when it succeeds, must now
// either work or throw a seqattn::Error: ConfigError when a size product overflows, MemoryError when the
// parameters exceed the memory limit (set to 64 MiB here so nothing large is ever allocated). Under
// ./build.sh sanitize, UBSan makes any remaining overflow fail this test.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/memory_limit.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/sequential.hpp"

using namespace seqattn;

namespace {

using Factory = std::function<std::unique_ptr<Layer<float>>(Index)>;

const std::vector<Index> kHugeSizes = {Index{1} << 31,        (Index{1} << 32) + 1, Index{1} << 40,
                                       (Index{1} << 62) + 3, std::numeric_limits<Index>::max()};

struct LimitScope {
  LimitScope() { set_memory_limit(64u << 20); }
  ~LimitScope() { reset_memory_limit(); }
};

// Builds the layer with size s; when that works, runs a forward on a (2, 5, in_features) batch.
void check(const std::string& what, const Factory& make) {
  for (const Index s : kHugeSizes) {
    SCOPED_TRACE(what + " with size " + std::to_string(s));
    std::unique_ptr<Layer<float>> layer;
    try {
      layer = make(s);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_FALSE(message.empty());
      EXPECT_TRUE(dynamic_cast<const ConfigError*>(&e) || dynamic_cast<const MemoryError*>(&e)) << message;
      continue;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "construction threw a non-seqattn exception: " << e.what();
      continue;
    }
    if (layer->in_features() > 64) continue;  // no input batch of that width is built here
    Tensor3<float> x(2, 5, layer->in_features());
    x.setConstant(1.0f);
    try {
      layer->forward(x);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "forward threw a non-seqattn exception: " << e.what();
    }
  }
}

template <class L, class... Args>
std::unique_ptr<Layer<float>> make(Args&&... args) {
  return std::make_unique<L>(std::forward<Args>(args)...);
}

TEST(SizeGuards, DenseConvolutionEmbeddingAndPooling) {
  const LimitScope limit;
  check("Dense in", [](Index s) { return make<Dense<float>>(s, 4); });
  check("Dense units", [](Index s) { return make<Dense<float>>(4, s); });
  check("Conv1D in", [](Index s) { return make<Conv1D<float>>(s, 4, 3); });
  check("Conv1D filters", [](Index s) { return make<Conv1D<float>>(4, s, 3); });
  check("Conv1D kernel", [](Index s) { return make<Conv1D<float>>(4, 4, s); });
  for (const Padding p : {Padding::Valid, Padding::Same, Padding::Causal}) {
    check("Conv1D dilation", [p](Index s) { return make<Conv1D<float>>(4, 4, 3, Conv1DOptions().dilation(s).padding(p)); });
    check("Conv1D stride", [p](Index s) { return make<Conv1D<float>>(4, 4, 3, Conv1DOptions().stride(s).padding(p)); });
    check("Conv1D dilation and kernel",
          [p](Index s) { return make<Conv1D<float>>(4, 4, s / 4 + 2, Conv1DOptions().dilation(s / 2).padding(p)); });
  }
  check("Embedding vocab", [](Index s) { return make<Embedding<float>>(1, s, 4); });
  check("Embedding dim", [](Index s) { return make<Embedding<float>>(1, 4, s); });
  check("MaxPool1D size", [](Index s) { return make<MaxPool1D<float>>(4, s); });
  check("AvgPool1D stride", [](Index s) { return make<AvgPool1D<float>>(4, 2, PoolOptions().stride(s)); });
}

TEST(SizeGuards, RecurrentLayers) {
  const LimitScope limit;
  check("LSTM units", [](Index s) { return make<LSTM<float>>(4, s); });
  check("LSTM in", [](Index s) { return make<LSTM<float>>(s, 4); });
  check("GRU units", [](Index s) { return make<GRU<float>>(4, s); });
  check("GRU in", [](Index s) { return make<GRU<float>>(s, 4); });
  check("Bidirectional units", [](Index s) { return make<Bidirectional<float>>(4, s, LSTMOptions()); });
}

TEST(SizeGuards, AttentionLayers) {
  const LimitScope limit;
  check("MultiHeadAttention heads", [](Index s) { return make<MultiHeadAttention<float>>(8, s); });
  check("MultiHeadAttention head_size",
        [](Index s) { return make<MultiHeadAttention<float>>(8, 2, MultiHeadAttentionOptions().head_size(s)); });
  check("MultiHeadAttention heads x head_size",
        [](Index s) { return make<MultiHeadAttention<float>>(8, 4, MultiHeadAttentionOptions().head_size(s / 2)); });
  check("MultiHeadAttention key_features",
        [](Index s) { return make<MultiHeadAttention<float>>(8, 2, MultiHeadAttentionOptions().key_features(s)); });
  check("MultiHeadAttention output_features",
        [](Index s) { return make<MultiHeadAttention<float>>(8, 2, MultiHeadAttentionOptions().output_features(s)); });
  check("MultiHeadAttention attention_window", [](Index s) {
    return make<MultiHeadAttention<float>>(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(s));
  });
  check("SeqSelfAttention units", [](Index s) { return make<SeqSelfAttention<float>>(4, SeqSelfAttentionOptions().units(s)); });
  check("SeqSelfAttention in", [](Index s) { return make<SeqSelfAttention<float>>(s); });
  check("SeqSelfAttention width",
        [](Index s) { return make<SeqSelfAttention<float>>(4, SeqSelfAttentionOptions().attention_width(s)); });
  check("SeqWeightedAttention in", [](Index s) { return make<SeqWeightedAttention<float>>(s); });
  check("TemporalAttention steps", [](Index s) { return make<TemporalAttention<float>>(4, s); });
  check("FeatureAttention in", [](Index s) { return make<FeatureAttention<float>>(s); });
  check("TransformerEncoderBlock ff", [](Index s) { return make<TransformerEncoderBlock<float>>(8, 2, s); });
  check("TransformerEncoderBlock d_model", [](Index s) { return make<TransformerEncoderBlock<float>>(s, 2, 8); });
  check("TransformerEncoderBlock heads", [](Index s) { return make<TransformerEncoderBlock<float>>(8, s, 8); });
  check("TransformerEncoderBlock attention_window", [](Index s) {
    return make<TransformerEncoderBlock<float>>(8, 2, 8, TransformerEncoderOptions().causal(true).attention_window(s));
  });
}

TEST(SizeGuards, PositionalNormalizationAndShapeOnlyLayers) {
  const LimitScope limit;
  check("PositionEmbedding max_length", [](Index s) { return make<PositionEmbedding<float>>(4, s); });
  check("PositionEmbedding concat dim", [](Index s) {
    return make<PositionEmbedding<float>>(4, 8, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(s));
  });
  check("Sinusoidal concat dim", [](Index s) { return make<SinusoidalPositionalEncoding<float>>(4, PositionMode::Concat, s); });
  check("LayerNorm in", [](Index s) { return make<LayerNorm<float>>(s); });
  check("BatchNorm in", [](Index s) { return make<BatchNorm<float>>(s); });
  check("Dropout in", [](Index s) { return make<Dropout<float>>(s, 0.5); });
  check("ActivationLayer in", [](Index s) { return make<ActivationLayer<float>>(s, Activation::ReLU); });
  check("GlobalMaxPool in", [](Index s) { return make<GlobalMaxPool<float>>(s); });
  check("Sequential in", [](Index s) { return make<Sequential<float>>(s); });
}

}  // namespace
