#pragma once
/// \file
/// Adam and AdamW, exactly as torch.optim.Adam / torch.optim.AdamW (PyTorch 1.13, single-tensor path).
/// For every parameter p with gradient g, at step t (the counter advances ONCE per step(), for all parameters):
///
/// ```unparsed
///   Adam  (decoupled_weight_decay = false):  g = g + weight_decay * p              (L2 in the gradient)
///   AdamW (decoupled_weight_decay = true):   p = p * (1 - lr * weight_decay)       (before the moments)
///   m = beta1 * m + (1 - beta1) * g
///   v = beta2 * v + (1 - beta2) * g^2
///   (amsgrad: v_max = max(v_max, v), used for v below)
///   denom = sqrt(v) / sqrt(1 - beta2^t) + eps                                      (eps outside the sqrt)
///   p = p - lr / (1 - beta1^t) * m / denom
/// ```
/// Options (AdamOptions, SEQATTN_ARG): lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0,
/// decoupled_weight_decay false, amsgrad false. Invalid values (negative, NaN, infinite) throw ConfigError:
/// "Adam: lr must be a finite number >= 0 but got inf".
/// The optimizer keeps views of the parameters (a ParamList from model.params()); step() and zero_grad() throw
/// UsageError, before changing anything, when a parameter's layer was destroyed or reassigned with other shapes
/// (Sequential::operator= between models of one architecture keeps them valid; see core/param.hpp). The moments are
/// stored per parameter, by position in the list. step() does not allocate. zero_grad() zeroes every gradient (backward
/// adds into them). Weight rules (core/weight_rules.hpp), read live from each parameter's layer: a parameter that is
/// not trainable (Layer::set_trainable(false)) is skipped: no update, no weight decay, its moments unchanged (the bias
/// correction uses the global step count, as Keras's iterations). After its update a parameter with a constraint
/// is projected (param_checks.hpp: apply_constraint), as Keras applies constraints after each optimizer step.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/optim/optimizer_state.hpp"
#include "seqattn/optim/param_checks.hpp"

namespace seqattn {

/// Options of Adam (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct AdamOptions {
  /// Learning rate.
  SEQATTN_ARG(double, lr, 1e-3)
  /// Decay rate of the first moment.
  SEQATTN_ARG(double, beta1, 0.9)
  /// Decay rate of the second moment.
  SEQATTN_ARG(double, beta2, 0.999)
  /// Added to the square root of the second moment in the denominator.
  SEQATTN_ARG(double, eps, 1e-8)
  /// Weight decay: added to the gradient as an L2 term (Adam), or p *= 1 - lr * weight_decay (AdamW).
  SEQATTN_ARG(double, weight_decay, 0.0)
  SEQATTN_ARG(bool, decoupled_weight_decay, false)  ///< true: AdamW
  /// Keeps the maximum of the second moments (AMSGrad).
  SEQATTN_ARG(bool, amsgrad, false)
};

/// Adam and AdamW, as torch.optim.Adam / AdamW; see the file documentation.
template <class S>
class Adam {
 public:
  /// An optimizer of `params` (views of a model's parameters, model.params()).
  explicit Adam(ParamList<S> params, AdamOptions options = AdamOptions())
      : params_(std::move(params)), options_(options) {
    const std::string who = name();
    detail::check_at_least(who, "lr", options.lr(), 0.0);
    detail::check_at_least(who, "eps", options.eps(), 0.0);
    detail::check_at_least(who, "weight_decay", options.weight_decay(), 0.0);
    detail::check_unit(who, "beta1", options.beta1());
    detail::check_unit(who, "beta2", options.beta2());
    detail::check_optimizer_params(params_, who);
    for (const auto& p : params_) {
      m_.push_back(Vector<S>::Zero(p.size()));
      v_.push_back(Vector<S>::Zero(p.size()));
      if (options.amsgrad()) v_max_.push_back(Vector<S>::Zero(p.size()));
    }
  }

  /// One update of every parameter from its current gradient.
  void step() {
    detail::check_params_alive(params_, name());  // before any update
    ++step_;
    const double t = static_cast<double>(step_);
    const double lr = options_.lr(), b1 = options_.beta1(), b2 = options_.beta2(), wd = options_.weight_decay();
    const double bias1 = 1.0 - std::pow(b1, t);
    const double bias2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
    const S step_size = static_cast<S>(lr / bias1);
    const S c1 = static_cast<S>(1.0 - b1), c2 = static_cast<S>(1.0 - b2), sb1 = static_cast<S>(b1),
            sb2 = static_cast<S>(b2), eps = static_cast<S>(options_.eps()), sbias2 = static_cast<S>(bias2_sqrt);
    const bool decoupled = options_.decoupled_weight_decay();
    const S decay = static_cast<S>(decoupled ? 1.0 - lr * wd : wd);
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param<S>& p = params_[i];
      if (!p.trainable()) continue;
      if (m_[i].size() != p.size())
        detail::throw_shape(name(), ": parameter '", p.name, "' has ", p.size(), " values but its state has ",
                            m_[i].size());
      S* w = p.value;
      const S* g = p.grad;
      S* m = m_[i].data();
      S* v = v_[i].data();
      S* vmax = options_.amsgrad() ? v_max_[i].data() : nullptr;
      for (Index k = 0; k < p.size(); ++k) {
        S gk = g[k];
        if (wd != 0.0) {
          if (decoupled)
            w[k] *= decay;
          else
            gk += decay * w[k];
        }
        m[k] = sb1 * m[k] + c1 * gk;
        v[k] = sb2 * v[k] + c2 * gk * gk;
        S vk = v[k];
        if (vmax) vk = vmax[k] = std::max(vmax[k], vk);
        const S denom = std::sqrt(vk) / sbias2 + eps;
        w[k] -= step_size * m[k] / denom;
      }
      detail::apply_constraint(p, name());
    }
  }

  /// Sets the gradients of every parameter to zero.
  void zero_grad() {
    detail::check_params_alive(params_, name());
    for (auto& p : params_) std::fill(p.grad, p.grad + p.size(), S(0));
  }

  /// The learning rate.
  double lr() const { return options_.lr(); }
  /// Sets the learning rate (>= 0), e.g. from a schedule.
  void set_lr(double lr) {
    detail::check_at_least(name(), "lr", lr, 0.0);
    options_.lr(lr);
  }
  /// The number of steps taken.
  std::int64_t step_count() const { return step_; }
  /// The options (lr as set by set_lr).
  const AdamOptions& options() const { return options_; }
  /// The parameters it updates.
  const ParamList<S>& params() const { return params_; }
  /// Moments of parameter i (by position in the list): m (exp_avg) and v (exp_avg_sq).
  const Vector<S>& exp_avg(size_t i) const { return m_.at(i); }
  /// The second moment v of parameter i.
  const Vector<S>& exp_avg_sq(size_t i) const { return v_.at(i); }

  /// "Adam" or "AdamW", for messages.
  std::string name() const { return options_.decoupled_weight_decay() ? "AdamW" : "Adam"; }

  /// The step count, the learning rate and the moments m, v (and v_max with amsgrad) of every parameter, named
  /// "m.\<parameter>", ... (optim/optimizer_state.hpp): what a checkpoint saves.
  OptimizerState<S> state() const {
    OptimizerState<S> s{name(), step_, options_.lr(), {}};
    for (size_t i = 0; i < params_.size(); ++i) {
      s.tensors.emplace_back("m." + params_[i].name, m_[i]);
      s.tensors.emplace_back("v." + params_[i].name, v_[i]);
      if (options_.amsgrad()) s.tensors.emplace_back("v_max." + params_[i].name, v_max_[i]);
    }
    return s;
  }
  /// Restores a state() of an optimizer of the same kind over the same parameters (checked first: ConfigError).
  void load_state(const OptimizerState<S>& s) {
    detail::check_optimizer_state(state(), s);
    detail::check_at_least(name(), "lr", s.lr, 0.0);
    size_t k = 0;
    for (size_t i = 0; i < params_.size(); ++i) {
      m_[i] = s.tensors[k++].second;
      v_[i] = s.tensors[k++].second;
      if (options_.amsgrad()) v_max_[i] = s.tensors[k++].second;
    }
    step_ = s.step;
    options_.lr(s.lr);
  }

 private:
  ParamList<S> params_;
  AdamOptions options_;
  std::vector<Vector<S>> m_, v_, v_max_;
  std::int64_t step_ = 0;
};

}  // namespace seqattn
