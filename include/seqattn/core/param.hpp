#pragma once
/// \file
/// Param\<S>: a view of one trainable tensor (or saved buffer) owned by a layer: its name, a pointer to the
/// values, a pointer to the gradient (null for buffers) and its shape. Views stay valid while the layer
/// lives and its shapes do not change. Names follow Keras ("W", "b", "gamma"); Sequential prefixes the
/// layer index and name: "3.multi_head_attention.Wq".
///
/// Liveness: every view that a layer's params() or buffers() returns carries its owner's identity (a
/// LayerIdentity, held weakly) and the identity's generation at that time. Destroying the layer expires the
/// identity; assigning another layer into it (operator=) advances the generation, since its tensors may have
/// been reallocated, unless the assignment went through Layer::assign / Sequential::operator=, which keep the
/// storage and so the generation. check_alive() throws UsageError for a view that is no longer valid: the
/// optimizers call it at every step, so `model = other_model` with another architecture, or an optimizer that
/// outlives its model, is an error, never a write into freed memory. Views built by hand (matrix_param) are not
/// tracked.
///
/// Weight rules (core/weight_rules.hpp): each view carries its role (kernel, recurrent, bias, embeddings, gamma,
/// beta, other), set by its layer's collect_params. The rules themselves (trainable, the role's regularizer and
/// constraint) live in the owner's LayerIdentity, so a view reads them live: trainable(), constraint(),
/// regularizer(). Optimizers skip parameters that are not trainable and apply constraints after each step.
/// Untracked views are trainable and under no rule.

#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/core/weight_rules.hpp"

namespace seqattn {

/// The identity of one layer object (core/layer.hpp): alive while the layer lives; generation advances when
/// another layer is assigned into it in a way that may move its tensors. rules: the weight rules of the layer's
/// own parameters (Layer::set_trainable, set_regularizer, set_constraint), read live by the optimizers.
struct LayerIdentity {
  /// Advances when the layer's tensors may have moved (views taken before are refused).
  std::uint64_t generation = 0;
  /// The weight rules of the layer's own parameters.
  WeightRules rules;
};

/// A view of one parameter or buffer tensor of a layer: its name, values, gradient, shape and role; see the file
/// documentation.
template <class S>
struct Param {
  Param() = default;
  /// A view of `value_` (and `grad_`, null for buffers) with this shape and role.
  Param(std::string name_, S* value_, S* grad_, std::vector<Index> shape_, ParamRole role_ = ParamRole::Other)
      : name(std::move(name_)), value(value_), grad(grad_), shape(std::move(shape_)), role(role_) {}

  /// The name in weights files: "0.dense.W".
  std::string name;
  /// The values (size() of them, row-major).
  S* value = nullptr;
  S* grad = nullptr;  ///< null for buffers (not trained)
  /// The tensor's shape.
  std::vector<Index> shape;
  ParamRole role = ParamRole::Other;  ///< what the tensor is to its layer (weight rules)
  std::weak_ptr<LayerIdentity> owner;  ///< set by Layer::params() / buffers(); empty: not tracked
  std::uint64_t generation = 0;  ///< owner's generation when this view was taken
  /// True for a view taken by Layer::params() / buffers() (checked by check_alive).
  bool tracked = false;

  /// The number of values: the product of shape.
  Index size() const {
    return std::accumulate(shape.begin(), shape.end(), Index{1}, [](Index a, Index b) { return a * b; });
  }
  /// The owner's rules for this view (live; untracked or expired views: trainable, no rule).
  bool trainable() const {
    const std::shared_ptr<LayerIdentity> id = owner.lock();
    return !id || id->rules.trainable;
  }
  /// The owner's constraint for this view's role (none when untracked or expired).
  Constraint constraint() const {
    const std::shared_ptr<LayerIdentity> id = owner.lock();
    return id ? id->rules.constraint(role) : Constraint::none();
  }
  /// The owner's regularizer for this view's role (none when untracked or expired).
  L1L2 regularizer() const {
    const std::shared_ptr<LayerIdentity> id = owner.lock();
    return id ? id->rules.regularizer(role) : L1L2{};
  }
  /// The values as a vector.
  Eigen::Map<Vector<S>> values() const { return Eigen::Map<Vector<S>>(value, size()); }
  /// The gradient as a vector (not for buffers).
  Eigen::Map<Vector<S>> grads() const { return Eigen::Map<Vector<S>>(grad, size()); }
  /// The shape as text: "(4, 8)", "(8,)".
  std::string shape_string() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
  /// UsageError when the layer that owns this view was destroyed, or reassigned so that its tensors may have
  /// moved (see the file comment). `who` names the caller: "Adam".
  void check_alive(const std::string& who) const {
    if (!tracked) return;
    const std::shared_ptr<LayerIdentity> id = owner.lock();
    if (!id)
      detail::throw_usage(who, ": parameter '", name, "' belongs to a layer that no longer exists (the model was "
                          "destroyed, or replaced by assigning a model of another architecture); build the "
                          "optimizer again from model.params()");
    if (id->generation != generation)
      detail::throw_usage(who, ": parameter '", name, "' belongs to a layer that was reassigned (its tensors "
                          "may have moved); build the optimizer again from model.params(), or assign whole "
                          "models of the same architecture (Sequential::operator= keeps the tensors)");
  }
};

/// The parameters (or buffers) of a layer or model.
template <class S>
using ParamList = std::vector<Param<S>>;

/// Helpers for layers: a matrix parameter has shape (rows, cols), a vector parameter (n).
/// The role (weight rules) is one word: matrix_param\<S>("W", W_, &dW_, ParamRole::Kernel).
template <class S>
Param<S> matrix_param(std::string name, Matrix<S>& value, Matrix<S>* grad, ParamRole role = ParamRole::Other) {
  return {std::move(name), value.data(), grad ? grad->data() : nullptr, {value.rows(), value.cols()}, role};
}
/// A vector parameter of shape (n).
template <class S>
Param<S> vector_param(std::string name, Vector<S>& value, Vector<S>* grad, ParamRole role = ParamRole::Other) {
  return {std::move(name), value.data(), grad ? grad->data() : nullptr, {value.size()}, role};
}

/// Both lists as one, for one optimizer over several owners: Adam\<float> adam(join_params(model.params(),
/// query.params())).
template <class S>
ParamList<S> join_params(ParamList<S> first, const ParamList<S>& second) {
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

/// The total number of values in the list.
template <class S>
Index count_values(const ParamList<S>& params) {
  Index n = 0;
  for (const auto& p : params) n += p.size();
  return n;
}

}  // namespace seqattn
