#pragma once
// The models the fuzz targets load into, shared with fuzz/make_corpus.cpp (which writes their files as seeds),
// and the targets' helpers: snapshot (bitwise), all_finite, a scratch file for the path overloads.

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
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

inline std::vector<unsigned char> snapshot(Layer<float>& model) {
  std::vector<unsigned char> out;
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list) {
      const auto* b = reinterpret_cast<const unsigned char*>(p.value);
      out.insert(out.end(), b, b + p.size() * static_cast<Index>(sizeof(float)));
    }
  return out;
}

// True when no parameter or buffer holds a NaN or Inf.
inline bool all_finite(Layer<float>& model) {
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list)
      for (Index i = 0; i < p.size(); ++i)
        if (!std::isfinite(p.value[i])) return false;
  return true;
}

// A scratch file of this process (the targets' path overloads): created, then unlinked at once and reached
// through /proc/self/fd (Linux), so that nothing is left behind when libFuzzer ends the process with _Exit.
inline const std::string& scratch_path() {
  static const std::string path = [] {
    char name[] = "/tmp/seqattn_fuzz_XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) std::abort();
    unlink(name);
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  return path;
}

inline void write_scratch(const std::uint8_t* data, std::size_t size) {
  std::ofstream out(scratch_path(), std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();
}

}  // namespace seqattn::fuzzing
