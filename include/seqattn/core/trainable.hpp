#pragma once
/// \file
/// Trainable\<S>: one trainable matrix that belongs to no layer (a learned query vector, a temperature, a table used
/// by the program's own code), which the optimizers take exactly as a layer's parameters:
///
/// ```unparsed
///   Trainable<float> query("query", 1, 16, Init::normal(0.02));       value (1, 16), gradient zero
///   Adam<float> adam(join_params(model.params(), query.params()));    one optimizer for both (core/param.hpp)
///   ... use query.value(), add dL/dquery into query.grad() ...
///   adam.step();  adam.zero_grad();                                   (or query.zero_grad())
///
///   value(), grad()          the (rows, cols) matrices; their storage never moves, so views stay valid
///   params()                 one tracked view (core/param.hpp) named `name`: an optimizer built from it refuses to
///                            step after this Trainable is destroyed or reassigned with another shape (UsageError)
///   set_trainable(false)     frozen: optimizers skip it (Keras' trainable)
///   set_regularizer(L1L2)    regularization_loss() = l1 sum|w| + l2 sum w^2; add_regularization_grad() adds its
///                            gradient into grad() (a layer does that in its backward; here the program calls it)
///   set_constraint(c)        applied by the optimizers after each step (core/weight_rules.hpp)
/// ```
/// The role (weight rules) is ParamRole::Other unless given. A copy is a new tensor with the same values, rules and
/// gradient, and a new identity (views of the original do not follow it).
/// Errors (ConfigError naming the Trainable): rows or cols \< 1, an empty name, a value with no element.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/init.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/core/weight_rules.hpp"

namespace seqattn {

/// A free trainable matrix (a learned query, a scale) with its gradient and weight rules, for models built
/// outside the layers; see the file documentation.
template <class S>
class Trainable {
 public:
  /// (rows, cols) filled by `init` (fan_in = rows, fan_out = cols) from `seed` (default next_seed()).
  Trainable(std::string name, Index rows, Index cols, Init init = Init::zeros(), std::uint64_t seed = next_seed(),
            ParamRole role = ParamRole::Other)
      : name_(std::move(name)), role_(role) {
    check_name();
    if (rows < 1 || cols < 1)
      detail::throw_config(describe(), ": shape expected at least (1, 1) but got (", rows, ", ", cols, ")");
    value_.resize(rows, cols);
    Rng rng(seed);
    init.fill(value_, rows, cols, rng);
    grad_ = Matrix<S>::Zero(rows, cols);
  }
  /// Starts from the given values.
  Trainable(std::string name, Matrix<S> value, ParamRole role = ParamRole::Other)
      : name_(std::move(name)), value_(std::move(value)), role_(role) {
    check_name();
    if (value_.size() == 0)
      detail::throw_config(describe(), ": value expected at least one element but got shape (", value_.rows(), ", ",
                           value_.cols(), ")");
    grad_ = Matrix<S>::Zero(value_.rows(), value_.cols());
  }

  /// A copy with a new identity (same values, gradient and rules).
  Trainable(const Trainable& other) : name_(other.name_), value_(other.value_), grad_(other.grad_), role_(other.role_) {
    identity_->rules = other.identity_->rules;
  }
  /// Keeps this object's identity; views taken before stay valid when the shape is the same (the storage is kept),
  /// and are refused by the optimizers otherwise.
  Trainable& operator=(const Trainable& other) {
    if (this == &other) return *this;
    if (value_.rows() != other.value_.rows() || value_.cols() != other.value_.cols()) ++identity_->generation;
    name_ = other.name_;
    value_ = other.value_;
    grad_ = other.grad_;
    role_ = other.role_;
    identity_->rules = other.identity_->rules;
    return *this;
  }

  /// The name in params() and weights files.
  const std::string& name() const { return name_; }
  /// "Trainable '\<name>'", for messages.
  std::string describe() const { return "Trainable '" + name_ + "'"; }
  /// The values.
  Matrix<S>& value() { return value_; }
  /// The values.
  const Matrix<S>& value() const { return value_; }
  /// The gradient (same shape; the caller adds into it).
  Matrix<S>& grad() { return grad_; }
  /// The gradient.
  const Matrix<S>& grad() const { return grad_; }
  /// Sets the gradient to zero.
  void zero_grad() { grad_.setZero(); }

  /// One tracked view, for the optimizers.
  ParamList<S> params() {
    Param<S> p = matrix_param(name_, value_, &grad_, role_);
    p.owner = identity_;
    p.generation = identity_->generation;
    p.tracked = true;
    return {p};
  }

  /// Weight rules (core/weight_rules.hpp), read live by the optimizers through params().
  bool trainable() const { return identity_->rules.trainable; }
  /// Freezes (false) or unfreezes the matrix: the optimizers skip frozen parameters.
  void set_trainable(bool trainable) { identity_->rules.trainable = trainable; }
  /// Sets the L1/L2 penalty of the matrix (ConfigError for invalid values).
  void set_regularizer(const L1L2& regularizer) {
    regularizer.check(describe(), "regularizer");
    identity_->rules.regularizers[static_cast<std::size_t>(role_)] = regularizer;
  }
  /// Sets the constraint the optimizers apply after each step (ConfigError for invalid values or axis).
  void set_constraint(const Constraint& constraint) {
    constraint.check(describe(), "constraint");
    if (constraint.active() && constraint.uses_axis() && constraint.axis_for(2) < 0)
      detail::throw_config(describe(), ": constraint ", constraint.describe(), " has axis ", constraint.axis,
                           " but the value has shape (", value_.rows(), ", ", value_.cols(), ")");
    identity_->rules.constraints[static_cast<std::size_t>(role_)] = constraint;
  }
  /// l1 sum|w| + l2 sum w^2 (0 without a regularizer).
  S regularization_loss() const { return regularizer().penalty(value_.data(), value_.size()); }
  /// grad() += the gradient of regularization_loss().
  void add_regularization_grad() { regularizer().add_gradient(value_.data(), grad_.data(), value_.size()); }

 private:
  const L1L2& regularizer() const { return identity_->rules.regularizer(role_); }
  void check_name() const {
    if (name_.empty()) detail::throw_config("Trainable: name expected non-empty but got \"\"");
  }

  std::string name_;
  Matrix<S> value_, grad_;
  ParamRole role_;
  std::shared_ptr<LayerIdentity> identity_ = std::make_shared<LayerIdentity>();
};

}  // namespace seqattn
