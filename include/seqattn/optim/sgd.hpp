#pragma once
/// \file
/// SGD with momentum, dampening, Nesterov momentum and L2 weight decay, exactly as torch.optim.SGD (1.13):
///
/// ```unparsed
///   g = g + weight_decay * p
///   momentum != 0:  buf = g at the first step, then buf = momentum * buf + (1 - dampening) * g
///                   g = nesterov ? g + momentum * buf : buf
///   p = p - lr * g
/// ```
/// Options (SGDOptions, SEQATTN_ARG): lr 1e-2, momentum 0, dampening 0, nesterov false, weight_decay 0.
/// ConfigError for a negative or non-finite lr, momentum or weight decay, a dampening outside [0, 1], and
/// nesterov without momentum or with dampening (as PyTorch). Like Adam, it keeps views of the parameters and
/// refuses (UsageError) views whose layer was destroyed or reassigned, one momentum buffer per parameter by position,
/// and step() does not allocate. Weight rules (core/weight_rules.hpp), read live from each parameter's layer: a
/// parameter that is not trainable is skipped (no update, its momentum buffer unchanged; the buffer starts at the
/// parameter's first trained step, as PyTorch's for a parameter without gradient); a parameter with a constraint is
/// projected after its update.

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/options.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/optim/optimizer_state.hpp"
#include "seqattn/optim/param_checks.hpp"

namespace seqattn {

/// Options of SGD (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct SGDOptions {
  /// Learning rate.
  SEQATTN_ARG(double, lr, 1e-2)
  /// Momentum factor (0: none).
  SEQATTN_ARG(double, momentum, 0.0)
  /// Dampening of the momentum, in [0, 1].
  SEQATTN_ARG(double, dampening, 0.0)
  /// Nesterov momentum (needs momentum > 0 and dampening 0).
  SEQATTN_ARG(bool, nesterov, false)
  /// L2 penalty added to the gradient.
  SEQATTN_ARG(double, weight_decay, 0.0)
};

/// Stochastic gradient descent with momentum, as torch.optim.SGD; see the file documentation.
template <class S>
class SGD {
 public:
  /// An optimizer of `params` (views of a model's parameters, model.params()).
  explicit SGD(ParamList<S> params, SGDOptions options = SGDOptions()) : params_(std::move(params)), options_(options) {
    detail::check_at_least("SGD", "lr", options.lr(), 0.0);
    detail::check_at_least("SGD", "momentum", options.momentum(), 0.0);
    detail::check_at_least("SGD", "weight_decay", options.weight_decay(), 0.0);
    if (!(options.dampening() >= 0.0 && options.dampening() <= 1.0))
      detail::throw_config("SGD: dampening must be in [0, 1] but got ", options.dampening());
    if (options.nesterov() && (options.momentum() <= 0.0 || options.dampening() != 0.0))
      detail::throw_config("SGD: nesterov momentum requires momentum > 0 and dampening 0 but got momentum ",
                           options.momentum(), " and dampening ", options.dampening());
    detail::check_optimizer_params(params_, "SGD");
    if (options.momentum() != 0.0)
      for (const auto& p : params_) buf_.push_back(Vector<S>::Zero(p.size()));
    buf_started_.assign(params_.size(), false);
  }

  /// Updates every trainable parameter from its gradient, then applies the constraints.
  void step() {
    detail::check_params_alive(params_, "SGD");  // before any update
    ++step_;
    const S lr = static_cast<S>(options_.lr()), mom = static_cast<S>(options_.momentum()),
            damp = static_cast<S>(1.0 - options_.dampening()), wd = static_cast<S>(options_.weight_decay());
    const bool use_momentum = options_.momentum() != 0.0, nesterov = options_.nesterov();
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param<S>& p = params_[i];
      if (!p.trainable()) continue;
      const bool first = !buf_started_[i];
      buf_started_[i] = true;
      S* w = p.value;
      const S* g = p.grad;
      S* buf = use_momentum ? buf_[i].data() : nullptr;
      if (buf && buf_[i].size() != p.size())
        detail::throw_shape("SGD: parameter '", p.name, "' has ", p.size(), " values but its state has ",
                            buf_[i].size());
      for (Index k = 0; k < p.size(); ++k) {
        S d = g[k];
        if (options_.weight_decay() != 0.0) d += wd * w[k];
        if (buf) {
          buf[k] = first ? d : mom * buf[k] + damp * d;
          d = nesterov ? d + mom * buf[k] : buf[k];
        }
        w[k] -= lr * d;
      }
      detail::apply_constraint(p, "SGD");
    }
  }

  /// Sets the gradients of every parameter to zero.
  void zero_grad() {
    detail::check_params_alive(params_, "SGD");
    for (auto& p : params_) std::fill(p.grad, p.grad + p.size(), S(0));
  }

  /// The learning rate.
  double lr() const { return options_.lr(); }
  /// Sets the learning rate (>= 0), e.g. from a schedule.
  void set_lr(double lr) {
    detail::check_at_least("SGD", "lr", lr, 0.0);
    options_.lr(lr);
  }
  /// The number of steps taken.
  std::int64_t step_count() const { return step_; }
  /// The options (lr as set by set_lr).
  const SGDOptions& options() const { return options_; }
  /// The parameters it updates.
  const ParamList<S>& params() const { return params_; }
  /// Momentum buffer of parameter i (empty without momentum).
  const Vector<S>& momentum_buffer(size_t i) const { return buf_.at(i); }
  /// "SGD" (the name in messages and in OptimizerState).
  std::string name() const { return "SGD"; }

  /// The step count, the learning rate, the momentum buffers "momentum.\<parameter>" (with momentum) and
  /// "momentum_started" (optim/optimizer_state.hpp): what a checkpoint saves.
  OptimizerState<S> state() const {
    OptimizerState<S> s{name(), step_, options_.lr(), {}};
    for (size_t i = 0; i < buf_.size(); ++i) s.tensors.emplace_back("momentum." + params_[i].name, buf_[i]);
    Vector<S> started(static_cast<Index>(params_.size()));
    for (size_t i = 0; i < params_.size(); ++i) started[static_cast<Index>(i)] = buf_started_[i] ? S(1) : S(0);
    s.tensors.emplace_back("momentum_started", started);
    return s;
  }
  /// Restores a state() of an SGD over the same parameters (checked first: ConfigError).
  void load_state(const OptimizerState<S>& s) {
    detail::check_optimizer_state(state(), s);
    detail::check_at_least(name(), "lr", s.lr, 0.0);
    const Vector<S>& started = s.tensors.back().second;
    for (Index i = 0; i < started.size(); ++i)
      if (started[i] != S(0) && started[i] != S(1))
        detail::throw_config("SGD: load_state expected momentum_started values 0 or 1 but got ", started[i],
                             " at parameter ", i);
    for (size_t i = 0; i < buf_.size(); ++i) buf_[i] = s.tensors[i].second;
    for (size_t i = 0; i < params_.size(); ++i) buf_started_[i] = started[static_cast<Index>(i)] != S(0);
    step_ = s.step;
    options_.lr(s.lr);
  }

 private:
  ParamList<S> params_;
  SGDOptions options_;
  std::vector<Vector<S>> buf_;
  std::vector<bool> buf_started_;  // per parameter: trained at least once (its momentum buffer is set)
  std::int64_t step_ = 0;
};

}  // namespace seqattn
