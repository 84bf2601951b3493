#pragma once
/// \file
/// OptimizerState\<S>: everything an optimizer carries between steps, to checkpoint and resume training exactly
/// (io/checkpoint.hpp writes it next to the model):
///
/// ```unparsed
///   OptimizerState<float> s = adam.state();   the step count, the learning rate and every moment tensor, named
///   adam.load_state(s);                        restores them; the next step() continues bit for bit
///
///   optimizer   the optimizer's name() ("Adam", "AdamW", "SGD"); load_state refuses another
///   step        step_count(): Adam's bias correction and SGD's first momentum step depend on it
///   lr          the learning rate at the time (a schedule's current value)
///   tensors     named tensors: "<kind>.<parameter name>" with kind m, v, v_max (Adam) or momentum (SGD), and for
///               SGD "momentum_started" (one 0/1 per parameter: its buffer holds a value)
/// ```
/// load_state checks, before it changes anything, the optimizer's name, that the tensor names are exactly those its
/// own state() gives (same parameters in the same order) and every size; ConfigError otherwise, naming the
/// optimizer, the tensor, the expected and the received value.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// Everything an optimizer carries between steps (see the file documentation).
template <class S>
struct OptimizerState {
  std::string optimizer;   ///< the optimizer's name(): "Adam", "AdamW" or "SGD"
  std::int64_t step = 0;   ///< its step_count()
  double lr = 0.0;         ///< its learning rate
  /// The named state tensors ("m.<parameter>", ...), in the optimizer's order.
  std::vector<std::pair<std::string, Vector<S>>> tensors;
};

namespace detail {
// `state` against the layout `expected` (same names, same sizes, same optimizer), before any change.
template <class S>
void check_optimizer_state(const OptimizerState<S>& expected, const OptimizerState<S>& state) {
  const std::string& who = expected.optimizer;
  if (state.optimizer != expected.optimizer)
    throw_config(who, ": load_state expected the state of an ", expected.optimizer, " but got one of '",
                 state.optimizer, "'");
  if (state.step < 0) throw_config(who, ": load_state expected a step count >= 0 but got ", state.step);
  if (state.tensors.size() != expected.tensors.size())
    throw_config(who, ": load_state expected ", expected.tensors.size(), " state tensors but got ",
                 state.tensors.size());
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    const auto& [name, value] = state.tensors[i];
    const auto& [want_name, want_value] = expected.tensors[i];
    if (name != want_name)
      throw_config(who, ": load_state expected state tensor ", i, " to be '", want_name, "' but got '", name, "'");
    if (value.size() != want_value.size())
      throw_config(who, ": load_state expected state tensor '", name, "' to have ", want_value.size(),
                   " values but got ", value.size());
  }
}
}  // namespace detail

}  // namespace seqattn
