#pragma once
// The model fuzz_safetensors loads into (and make_corpus writes seeds from).

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::fuzzing {

// Dense(3 -> 4), MultiHeadAttention(4, 2 heads), Conv1D(4 -> 2, kernel 2), BatchNorm.
inline Sequential<float> safetensors_model() {
  Sequential<float> model(3);
  model.add<Dense<float>>(4, DenseOptions().seed(1));
  model.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().seed(2));
  model.add<Conv1D<float>>(2, 2, Conv1DOptions().seed(3));
  model.add<BatchNorm<float>>();
  return model;
}

}  // namespace seqattn::fuzzing
