#pragma once
// The model and optimizers fuzz_checkpoint restores into (and make_corpus writes seeds from): the model of
// fuzz_weights (weights_model.hpp: Dense, BatchNorm with buffers, Dense) with Adam or SGD(momentum).

#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/sgd.hpp"
#include "weights_model.hpp"

namespace seqattn::fuzzing {

inline Adam<float> checkpoint_adam(Sequential<float>& model) {
  return Adam<float>(model.params(), AdamOptions().lr(0.01));
}
inline SGD<float> checkpoint_sgd(Sequential<float>& model) {
  return SGD<float>(model.params(), SGDOptions().lr(0.1).momentum(0.9));
}

// Sets the model's parameters and buffers and the optimizer's step, lr and tensors to fixed values that differ
// from fresh ones (make_corpus writes their checkpoints, so that a restore changes every value of the target).
// Set, not trained: the seeds must not depend on the compiler's floating-point contraction (fuzz_corpus_current).
template <class Optimizer>
void set_trained_state(Sequential<float>& model, Optimizer& optimizer, std::int64_t step, double lr) {
  int k = 0;
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list)
      for (Index i = 0; i < p.size(); ++i) p.value[i] = 0.125f * static_cast<float>(k++ % 9 + 1);
  OptimizerState<float> state = optimizer.state();
  state.step = step;
  state.lr = lr;
  for (auto& [name, value] : state.tensors)  // SGD's momentum_started: every parameter started
    for (Index i = 0; i < value.size(); ++i)
      value[i] = name == "momentum_started" ? 1.0f : 0.0625f * static_cast<float>(k++ % 5 + 1);
  optimizer.load_state(state);
}

}  // namespace seqattn::fuzzing
