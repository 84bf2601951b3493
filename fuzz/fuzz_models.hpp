#pragma once
// The models the fuzz targets load into, shared with fuzz/make_corpus.cpp (which writes their files as seeds).

#include <cstdint>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::fuzzing {

// Dense(2 -> 2), BatchNorm (buffers), Dense(2 -> 1): a 2-kind, 8-tensor weights file.
inline Sequential<float> weights_model() {
  Sequential<float> model(2);
  model.add<Dense<float>>(2, DenseOptions().seed(1));
  model.add<BatchNorm<float>>();
  model.add<Dense<float>>(1, DenseOptions().seed(2));
  return model;
}

// Dense(3 -> 4), MultiHeadAttention(4, 2 heads), Conv1D(4 -> 2, kernel 2), BatchNorm.
inline Sequential<float> safetensors_model() {
  Sequential<float> model(3);
  model.add<Dense<float>>(4, DenseOptions().seed(1));
  model.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().seed(2));
  model.add<Conv1D<float>>(2, 2, Conv1DOptions().seed(3));
  model.add<BatchNorm<float>>();
  return model;
}

inline std::vector<unsigned char> snapshot(Layer<float>& model) {
  std::vector<unsigned char> out;
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list) {
      const auto* b = reinterpret_cast<const unsigned char*>(p.value);
      out.insert(out.end(), b, b + p.size() * static_cast<Index>(sizeof(float)));
    }
  return out;
}

}  // namespace seqattn::fuzzing
