#pragma once
/// \file
/// Checks shared by the optimizers (Adam, SGD): parameter lists and option ranges. Option checks throw
/// ConfigError naming the optimizer: "Adam: lr must be a finite number >= 0 but got inf"; options are finite
/// (an infinite learning rate would turn every weight into NaN at the first step). check_params_alive throws
/// UsageError when a parameter's layer was destroyed or reassigned (core/param.hpp), before any update.

#include <limits>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/param.hpp"

namespace seqattn::detail {

// A non-empty list of distinct trainable tensors (buffers have no gradient and cannot be trained).
template <class S>
void check_optimizer_params(const ParamList<S>& params, const std::string& who) {
  if (params.empty()) throw_config(who, ": got an empty parameter list");
  for (size_t i = 0; i < params.size(); ++i) {
    const Param<S>& p = params[i];
    if (!p.value || !p.grad)
      throw_config(who, ": parameter ", i, " '", p.name, "' has no gradient (buffers are not trained)");
    if (p.size() <= 0) throw_config(who, ": parameter ", i, " '", p.name, "' is empty");
    for (size_t j = 0; j < i; ++j)
      if (params[j].value == p.value)
        throw_config(who, ": parameter ", i, " '", p.name, "' appears twice in the list (also at ", j, ")");
  }
}

// Every view still belongs to a living layer with the same storage (Param::check_alive).
template <class S>
void check_params_alive(const ParamList<S>& params, const std::string& who) {
  for (const auto& p : params) p.check_alive(who);
}

// Projects p by its layer's constraint for its role (core/weight_rules.hpp), after an optimizer step.
// ConfigError when the constraint's axis does not fit the parameter (its shape changed since it was set).
template <class S>
void apply_constraint(const Param<S>& p, const std::string& who) {
  const Constraint c = p.constraint();
  if (!c.active()) return;
  if (c.uses_axis() && c.axis_for(p.shape.size()) < 0)
    throw_config(who, ": parameter '", p.name, "' of shape ", p.shape_string(), " has no axis ", c.axis, " for ",
                 c.describe());
  c.apply(p.value, p.shape);
}

// value finite and >= lo (NaN and Inf fail).
inline void check_at_least(const std::string& who, const char* name, double value, double lo) {
  if (!(value >= lo && value <= std::numeric_limits<double>::max()))
    throw_config(who, ": ", name, " must be a finite number >= ", lo, " but got ", value);
}
// value in [0, 1) (NaN fails).
inline void check_unit(const std::string& who, const char* name, double value) {
  if (!(value >= 0.0 && value < 1.0)) throw_config(who, ": ", name, " must be in [0, 1) but got ", value);
}

}  // namespace seqattn::detail
