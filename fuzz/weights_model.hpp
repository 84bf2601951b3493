#pragma once
// The model fuzz_weights loads into (and make_corpus writes seeds from); one header per target model, so
// each target compiles only the layers it loads.

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dense.hpp"
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

}  // namespace seqattn::fuzzing
