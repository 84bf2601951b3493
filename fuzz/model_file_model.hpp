#pragma once
// The model file fuzz_model reads as seeds (written by make_corpus).

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::fuzzing {

// For model files: an Embedding (mask_zero), a Bidirectional GRU, a Residual around SeqSelfAttention and
// LayerNorm, MultiHeadAttention, a Conv1D and a pooling: containers, enums, optional and initializer options.
inline Sequential<float> model_file_model() {
  Sequential<float> model(1);
  model.add<Embedding<float>>(5, 4, EmbeddingOptions().mask_zero(true).seed(1));
  model.add<Bidirectional<float>>(2, GRUOptions().return_sequences(true).seed(2));
  auto& residual = model.add<Residual<float>>();
  residual.body().add<SeqSelfAttention<float>>(SeqSelfAttentionOptions().units(3).attention_width(2).seed(3));
  residual.body().add<LayerNorm<float>>();
  model.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().causal(true).seed(4));
  model.add<Conv1D<float>>(3, 2, Conv1DOptions().padding(Padding::Causal).seed(5));
  model.add<GlobalMaxPool<float>>();
  return model;
}

// For graph model files (load_graph): two inputs of other widths, a Dense applied to both (a shared node), an
// elementwise merge, cross-attention of the merge over input b and a concatenation: the Graph config with node
// inputs by name, "shares", merge options and a several-input layer.
inline Graph<float> graph_file_model() {
  Graph<float> graph({{"a", 3}, {"b", 2}});
  const GraphNode b_wide = graph.add<Dense<float>>("widen", {graph.input("b")}, 3, DenseOptions().seed(6));
  const GraphNode enc = graph.add<Dense<float>>("encode", {graph.input("a")}, 4,
                                                 DenseOptions().activation(Activation::Tanh).seed(7));
  const GraphNode enc_b = graph.add_shared("encode_b", enc, {b_wide});
  const GraphNode sum = graph.merge("sum", MergeOp::Add, {enc, enc_b});
  const GraphNode cross =
      graph.add<MultiHeadAttention<float>>("cross", {sum, graph.input("b")}, 2,
                                           MultiHeadAttentionOptions().key_features(2).seed(8));
  graph.set_outputs({graph.concatenate("joined", {sum, cross})});
  return graph;
}

}  // namespace seqattn::fuzzing
