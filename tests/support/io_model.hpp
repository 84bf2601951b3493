#pragma once
// Models of the io tests.
//   make_io_model<S>(seed)     one layer of every type (every layer with weights or buffers, and the
//                              parameter-free ones between them), input ids (B, 5, 1) in [0, kIoVocab) with
//                              exactly kIoSteps steps (TemporalAttention needs them). `seed` seeds the weights;
//                              the dropout seeds are fixed, so models built with different seeds differ only
//                              in their weights.
//   make_dense_model<S>(seed)  Dense(6 -> 8, tanh), Dropout, Dense(8 -> 5, no bias), Dense(5 -> 3): small and
//                              stable, for tests that check names and bytes.
//   io_ids<S>(seed)            a (3, kIoSteps, 1) batch of ids for make_io_model.

#include <cstdint>
#include <memory>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::testing {

inline constexpr Index kIoVocab = 9;
inline constexpr Index kIoSteps = 5;

template <class S>
Sequential<S> make_io_model(std::uint64_t seed) {
  Sequential<S> model(1);
  model.template add<Embedding<S>>(kIoVocab, 6, EmbeddingOptions().seed(seed));                      // 0
  model.template add<SinusoidalPositionalEncoding<S>>();                                           // 1
  model.template add<PositionEmbedding<S>>(8, PositionEmbeddingOptions().seed(seed + 1));           // 2
  model.template add<Dense<S>>(8, DenseOptions().activation(Activation::Tanh).seed(seed + 2));     // 3
  model.template add<Dropout<S>>(0.25, DropoutOptions().seed(99));                                 // 4
  model.template add<LayerNorm<S>>();                                                              // 5
  model.template add<MultiHeadAttention<S>>(2, MultiHeadAttentionOptions().seed(seed + 3));        // 6
  model.template add<SeqSelfAttention<S>>(SeqSelfAttentionOptions().units(4).seed(seed + 4));      // 7
  model.template add<FeatureAttention<S>>(FeatureAttentionOptions().seed(seed + 5));               // 8
  model.template add<TemporalAttention<S>>(kIoSteps, TemporalAttentionOptions().seed(seed + 6));   // 9
  model.template add<Conv1D<S>>(6, 3, Conv1DOptions().padding(Padding::Same).seed(seed + 7));      // 10
  model.template add<BatchNorm<S>>();                                                              // 11
  model.template add<TransformerEncoderBlock<S>>(2, 12, TransformerEncoderOptions().dropout(0.1).seed(seed + 8));
  Sequential<S> body(6);                                                                           // 13
  body.template add<Dense<S>>(6, DenseOptions().seed(seed + 9));
  model.template add<Residual<S>>(std::move(body));
  model.template add<MaxPool1D<S>>(2, PoolOptions().stride(1));                                    // 14
  model.template add<SeqWeightedAttention<S>>(SeqWeightedAttentionOptions().seed(seed + 10));      // 15
  model.template add<Dense<S>>(3, DenseOptions().seed(seed + 11));                                 // 16
  return model;
}

template <class S>
Sequential<S> make_dense_model(std::uint64_t seed) {
  Sequential<S> model(6);
  model.template add<Dense<S>>(8, DenseOptions().activation(Activation::Tanh).seed(seed + 1));
  model.template add<Dropout<S>>(0.25, DropoutOptions().seed(99));
  model.template add<Dense<S>>(5, DenseOptions().use_bias(false).seed(seed + 2));
  model.template add<Dense<S>>(3, DenseOptions().seed(seed + 3));
  return model;
}

template <class S>
Tensor3<S> io_ids(std::uint64_t seed) {
  Tensor3<S> x(3, kIoSteps, 1);
  Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.below(kIoVocab));
  return x;
}

}  // namespace seqattn::testing
