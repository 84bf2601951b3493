#pragma once
/// \file
/// Weight rules: what a layer's parameters are under besides their gradient, as Keras's layer options.
///
/// ```unparsed
///   ParamRole       what a parameter is to its layer: kernel, recurrent (kernel), bias, embeddings, gamma, beta,
///                   other. Keras's option prefixes: kernel_regularizer, recurrent_constraint, bias_regularizer,
///                   embeddings_constraint, gamma_regularizer, beta_constraint. Each layer tags its parameters in
///                   collect_params (core/param.hpp); untagged parameters are "other" (no rule reaches them).
///   L1L2            penalty l1 * sum|w| + l2 * sum w^2 added to regularization_loss(), its gradient
///                   l1 * sign(w) + 2 l2 w added by backward (Keras L1L2; sign(0) = 0 as Keras's).
///   Constraint      a projection applied by the optimizers (optim/sgd.hpp, optim/adam.hpp) after each step,
///                   exactly Keras's formulas with eps = 1e-7 and norms over `axis` of the parameter:
///                     max_norm(m, axis):           w * clip(n, 0, m) / (eps + n)
///                     non_neg():                   w * (w >= 0)
///                     unit_norm(axis):             w / (eps + n)
///                     min_max_norm(lo, hi, rate, axis):  w * (rate * clip(n, lo, hi) + (1 - rate) * n) / (eps + n)
///                   n = sqrt(sum of w^2 along `axis`), one norm per index of the other axis. A matrix parameter
///                   (rows, cols): axis 0 = one norm per column over the rows (for every kernel (in, out) of
///                   seqattn: one norm per output unit over its inputs, Keras's default for a Dense kernel), axis
///                   1 = one norm per row (Embedding: per token vector). A vector parameter (n,): axis 0 = its
///                   whole norm. Layouts per layer: Dense W (in, units); Conv1D W (kernel_size * in, filters), so
///                   axis 0 = one norm per filter over all its taps and inputs (Keras axis [0, 1] of its (k, in,
///                   filters) kernel); LSTM / GRU kernel (in, gates * units), recurrent (units, gates * units), GRU
///                   bias (2, 3 units) (Keras layouts); Embedding (vocab, dim); MultiHeadAttention Wq (in, heads *
///                   head_size), Wk, Wv (key features, heads * head_size), Wo (heads * head_size, output features)
///                   (Keras's MultiHeadAttention kernels are 3-D: its axes do not carry over one to one).
///   WeightRules     a layer's rules: trainable, and per role a regularizer and a constraint. Held by the layer's
///                   LayerIdentity (core/param.hpp) so that optimizers read them live through the parameter views.
/// ```
/// Invalid values throw ConfigError naming the layer and the value (checked by Layer::set_regularizer /
/// set_constraint, core/layer.hpp): negative or non-finite l1, l2; max_value \<= 0; min_value > max_value; rate
/// outside [0, 1]; an axis other than 0 or 1 (-1: the last axis).
/// Model files (core/layer_config.hpp): a regularizer is {"l1": .., "l2": ..} (also read: Keras's {"class_name":
/// "L1L2" | "L1" | "L2", "config": {...}}), a constraint {"class_name": "MaxNorm", "max_value": 2, "axis": 0}
/// (also read: Keras's nested {"class_name": .., "config": {..}}); class names MaxNorm, NonNeg, UnitNorm,
/// MinMaxNorm (Keras 2 and 3 serialize these names; the snake-case aliases max_norm, ... are read too).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// What a parameter is to its layer; the weight rules are set per role.
enum class ParamRole { Kernel, Recurrent, Bias, Embeddings, Gamma, Beta, Other };
/// The number of ParamRole values.
constexpr std::size_t kParamRoles = 7;

/// Keras option prefixes ("kernel" -> kernel_regularizer, kernel_constraint).
inline const char* to_string(ParamRole role) {
  static const char* const names[kParamRoles] = {"kernel", "recurrent", "bias", "embeddings", "gamma", "beta", "other"};
  return names[static_cast<std::size_t>(role)];
}

/// Keras L1L2: l1 * sum|w| + l2 * sum w^2.
struct L1L2 {
  double l1 = 0.0;  ///< Weight of sum |w|.
  double l2 = 0.0;  ///< Weight of sum w^2.
  /// True when l1 or l2 is not zero.
  bool active() const { return l1 != 0.0 || l2 != 0.0; }
  /// Equal weights.
  friend bool operator==(const L1L2& a, const L1L2& b) { return a.l1 == b.l1 && a.l2 == b.l2; }
  /// Not equal.
  friend bool operator!=(const L1L2& a, const L1L2& b) { return !(a == b); }

  /// ConfigError "\<who>: kernel_regularizer l1 must be finite and >= 0 but got -1".
  void check(const std::string& who, const std::string& option) const {
    if (!(l1 >= 0.0) || !std::isfinite(l1))
      detail::throw_config(who, ": ", option, " l1 must be finite and >= 0 but got ", l1);
    if (!(l2 >= 0.0) || !std::isfinite(l2))
      detail::throw_config(who, ": ", option, " l2 must be finite and >= 0 but got ", l2);
  }
  /// l1 * sum|w| + l2 * sum w^2 over n values (accumulated in S).
  template <class S>
  S penalty(const S* w, Index n) const {
    if (!active()) return S(0);
    const Eigen::Map<const Vector<S>> v(w, n);
    return static_cast<S>(l1) * v.cwiseAbs().sum() + static_cast<S>(l2) * v.squaredNorm();
  }
  /// g += l1 * sign(w) + 2 l2 w
  template <class S>
  void add_gradient(const S* w, S* g, Index n) const {
    if (!active()) return;
    const Eigen::Map<const Vector<S>> v(w, n);
    Eigen::Map<Vector<S>>(g, n).array() += static_cast<S>(l1) * v.array().sign() + static_cast<S>(2.0 * l2) * v.array();
  }
};

/// A Keras weight constraint (see the file comment).
struct Constraint {
  /// The constraint's formula (Keras classes).
  enum class Kind { None, MaxNorm, NonNeg, UnitNorm, MinMaxNorm };
  static constexpr double kEpsilon = 1e-7;  ///< Keras backend.epsilon()

  /// No constraint.
  static Constraint none() { return {}; }
  /// Keras MaxNorm: scales the norms along `axis` down to at most max_value.
  static Constraint max_norm(double max_value = 2.0, int axis = 0) {
    return {Kind::MaxNorm, 0.0, max_value, 1.0, axis};
  }
  /// Keras NonNeg: negative values become 0.
  static Constraint non_neg() { return {Kind::NonNeg, 0.0, 0.0, 1.0, 0}; }
  /// Keras UnitNorm: norm 1 along `axis`.
  static Constraint unit_norm(int axis = 0) { return {Kind::UnitNorm, 0.0, 0.0, 1.0, axis}; }
  /// Keras MinMaxNorm: norms along `axis` moved into [min_value, max_value] at `rate`.
  static Constraint min_max_norm(double min_value = 0.0, double max_value = 1.0, double rate = 1.0, int axis = 0) {
    return {Kind::MinMaxNorm, min_value, max_value, rate, axis};
  }

  Kind kind = Kind::None;  ///< Which constraint.
  ///@{
  /// The norm bounds (MinMaxNorm; max_value for MaxNorm) and MinMaxNorm's rate.
  double min_value = 0.0, max_value = 0.0, rate = 1.0;
  ///@}
  int axis = 0;  ///< The axis the norms are taken along (Keras axis of the kernel).

  /// True unless none().
  bool active() const { return kind != Kind::None; }
  /// True for the constraints that take an axis (all but none and NonNeg).
  bool uses_axis() const { return kind != Kind::None && kind != Kind::NonNeg; }
  /// Same kind and values.
  friend bool operator==(const Constraint& a, const Constraint& b) {
    return a.kind == b.kind && a.min_value == b.min_value && a.max_value == b.max_value && a.rate == b.rate &&
           a.axis == b.axis;
  }
  /// Not equal.
  friend bool operator!=(const Constraint& a, const Constraint& b) { return !(a == b); }

  /// Keras class name ("MaxNorm"), "" for none.
  const char* class_name() const {
    switch (kind) {
      case Kind::MaxNorm: return "MaxNorm";
      case Kind::NonNeg: return "NonNeg";
      case Kind::UnitNorm: return "UnitNorm";
      case Kind::MinMaxNorm: return "MinMaxNorm";
      default: return "";
    }
  }
  /// The constraint with its values, for messages: "MaxNorm(max_value=2, axis=0)".
  std::string describe() const {
    switch (kind) {
      case Kind::MaxNorm: return detail::cat("MaxNorm(max_value=", max_value, ", axis=", axis, ")");
      case Kind::NonNeg: return "NonNeg()";
      case Kind::UnitNorm: return detail::cat("UnitNorm(axis=", axis, ")");
      case Kind::MinMaxNorm:
        return detail::cat("MinMaxNorm(min_value=", min_value, ", max_value=", max_value, ", rate=", rate,
                           ", axis=", axis, ")");
      default: return "none";
    }
  }

  /// ConfigError "\<who>: kernel_constraint MaxNorm max_value must be finite and > 0 but got 0".
  void check(const std::string& who, const std::string& option) const {
    const auto fail = [&](auto&&... parts) {
      detail::throw_config(who, ": ", option, " ", class_name(), " ", parts...);
    };
    if (kind == Kind::MaxNorm && !(max_value > 0.0 && std::isfinite(max_value)))
      fail("max_value must be finite and > 0 but got ", max_value);
    if (kind == Kind::MinMaxNorm) {
      if (!(min_value >= 0.0 && std::isfinite(min_value)))
        fail("min_value must be finite and >= 0 but got ", min_value);
      if (!(max_value >= min_value && std::isfinite(max_value)))
        fail("max_value must be finite and >= min_value ", min_value, " but got ", max_value);
      if (!(rate >= 0.0 && rate <= 1.0)) fail("rate must be in [0, 1] but got ", rate);
    }
    if (uses_axis() && axis != 0 && axis != 1 && axis != -1) fail("axis must be 0, 1 or -1 but got ", axis);
  }
  /// The axis for a tensor of `rank` dimensions (-1: the last); -1 when it has no such axis.
  int axis_for(std::size_t rank) const {
    const int a = axis < 0 ? static_cast<int>(rank) + axis : axis;
    return a >= 0 && a < static_cast<int>(rank) ? a : -1;
  }

  /// Projects w (row-major, `shape` of rank 1 or 2) in place; the caller checked the axis (axis_for >= 0).
  template <class S>
  void apply(S* w, const std::vector<Index>& shape) const {
    if (kind == Kind::None) return;
    Index n = 1;
    for (const Index d : shape) n *= d;
    if (kind == Kind::NonNeg) {
      for (Index k = 0; k < n; ++k) w[k] = w[k] >= S(0) ? w[k] : S(0);  // w * (w >= 0)
      return;
    }
    const Index rows = shape.size() == 2 ? shape[0] : n, cols = shape.size() == 2 ? shape[1] : 1;
    const bool per_column = axis_for(shape.size()) == 0;  // norm over the rows, one per column
    const Index groups = per_column ? cols : rows, length = per_column ? rows : cols;
    const Index stride = per_column ? cols : 1, step = per_column ? 1 : cols;
    for (Index g = 0; g < groups; ++g) {
      S* first = w + g * step;
      S sum = S(0);
      for (Index i = 0; i < length; ++i) sum += first[i * stride] * first[i * stride];
      const S norm = std::sqrt(sum);
      S desired = norm;
      switch (kind) {
        case Kind::MaxNorm: desired = std::min(std::max(norm, S(0)), static_cast<S>(max_value)); break;
        case Kind::UnitNorm: desired = S(1); break;
        case Kind::MinMaxNorm:
          desired =
              static_cast<S>(rate) * std::min(std::max(norm, static_cast<S>(min_value)), static_cast<S>(max_value)) +
              static_cast<S>(1.0 - rate) * norm;
          break;
        default: break;
      }
      const S scale = desired / (static_cast<S>(kEpsilon) + norm);
      for (Index i = 0; i < length; ++i) first[i * stride] *= scale;
    }
  }
};

/// The rules of one layer's own parameters (containers: their children hold their own).
struct WeightRules {
  bool trainable = true;  ///< False: frozen (the optimizers leave the parameters alone).
  std::array<L1L2, kParamRoles> regularizers{};  ///< The regularizer of each role.
  std::array<Constraint, kParamRoles> constraints{};  ///< The constraint of each role.

  /// The regularizer of a role.
  const L1L2& regularizer(ParamRole role) const { return regularizers[static_cast<std::size_t>(role)]; }
  /// The constraint of a role.
  const Constraint& constraint(ParamRole role) const { return constraints[static_cast<std::size_t>(role)]; }
  /// True when any role has an active regularizer.
  bool any_regularizer() const {
    for (const auto& r : regularizers)
      if (r.active()) return true;
    return false;
  }
  /// True for the rules of a new layer (trainable, no regularizer, no constraint).
  bool is_default() const { return *this == WeightRules(); }
  /// Same rules.
  friend bool operator==(const WeightRules& a, const WeightRules& b) {
    return a.trainable == b.trainable && a.regularizers == b.regularizers && a.constraints == b.constraints;
  }
  /// Not equal.
  friend bool operator!=(const WeightRules& a, const WeightRules& b) { return !(a == b); }
};

namespace detail {
// Keras's nested form {"module", "class_name", "config", "registered_name"}: the "config" object (the other keys
// are checked and consumed); the flat form: the object itself, its "class_name" consumed.
inline const Config& rule_fields(const Config& c, ConfigReader& outer) {
  if (!outer.has("config")) return c;
  if (outer.has("module")) outer.get("module");
  if (outer.has("registered_name")) outer.get("registered_name");
  const Config& inner = outer.get("config");
  outer.finish();
  return inner;
}
}  // namespace detail

/// A regularizer in a model file: {"l1": .., "l2": ..}; Keras's {"class_name": "L1L2" | "L1" | "L2", "config":
/// {..}} is read too (Keras 2 and 3 configs, io/keras).
template <>
struct ConfigCodec<L1L2> {
  /// The regularizer as {"l1": .., "l2": ..}.
  static Config write(const L1L2& v) {
    Config c = Config::object();
    c.set("l1", v.l1);
    c.set("l2", v.l2);
    return c;
  }
  /// The value of key `key` (ConfigError through `r` for a bad object).
  static L1L2 read(const Config& c, ConfigReader& r, const std::string& key) {
    const char* expected = "a regularizer {\"l1\": .., \"l2\": ..} or {\"class_name\": \"L1L2\", \"config\": {..}}";
    if (!c.is_object()) r.fail(key, expected, c);
    const std::string who = r.who() + " '" + key + "'";
    L1L2 v;
    if (!c.find("class_name")) {
      ConfigReader fields(c, who);
      fields.read_into("l1", v.l1);
      fields.read_into("l2", v.l2);
      fields.finish();
      return v;
    }
    ConfigReader outer(c, who);
    const std::string n = outer.read<std::string>("class_name");
    if (n != "L1L2" && n != "L1" && n != "L2" && n != "l1_l2" && n != "l1" && n != "l2") r.fail(key, expected, c);
    if (!outer.has("config")) r.fail(key, expected, c);
    ConfigReader fields(detail::rule_fields(c, outer), who + " config");
    if (n != "L2" && n != "l2") fields.read_into("l1", v.l1);
    if (n != "L1" && n != "l1") fields.read_into("l2", v.l2);
    fields.finish();
    return v;
  }
};

/// A constraint in a model file: {"class_name": "MaxNorm", "max_value": 2, "axis": 0} (only the fields of its
/// kind), null for none; Keras's nested {"class_name": .., "config": {..}} is read too.
template <>
struct ConfigCodec<Constraint> {
  /// The constraint as a Keras object.
  static Config write(const Constraint& v) {
    if (!v.active()) return Config();
    Config c = Config::object();
    c.set("class_name", v.class_name());
    if (v.kind == Constraint::Kind::MinMaxNorm) c.set("min_value", v.min_value);
    if (v.kind == Constraint::Kind::MaxNorm || v.kind == Constraint::Kind::MinMaxNorm) c.set("max_value", v.max_value);
    if (v.kind == Constraint::Kind::MinMaxNorm) c.set("rate", v.rate);
    if (v.uses_axis()) c.set("axis", static_cast<std::int64_t>(v.axis));
    return c;
  }
  /// The value of key `key` (ConfigError through `r` for a bad object).
  static Constraint read(const Config& c, ConfigReader& r, const std::string& key) {
    const char* expected =
        "a constraint {\"class_name\": \"MaxNorm\" | \"NonNeg\" | \"UnitNorm\" | \"MinMaxNorm\", ..}";
    if (c.is_null()) return Constraint::none();
    if (!c.is_object()) r.fail(key, expected, c);
    const std::string who = r.who() + " '" + key + "'";
    ConfigReader outer(c, who);
    const std::string n = outer.read<std::string>("class_name");
    Constraint v;
    if (n == "MaxNorm" || n == "max_norm") {
      v = Constraint::max_norm();
    } else if (n == "NonNeg" || n == "non_neg") {
      v = Constraint::non_neg();
    } else if (n == "UnitNorm" || n == "unit_norm") {
      v = Constraint::unit_norm();
    } else if (n == "MinMaxNorm" || n == "min_max_norm") {
      v = Constraint::min_max_norm();
    } else {
      r.fail(key, expected, c);
    }
    const bool nested = outer.has("config");
    ConfigReader fields(detail::rule_fields(c, outer), nested ? who + " config" : who);
    if (!nested) fields.get("class_name");
    if (v.kind == Constraint::Kind::MinMaxNorm) {
      fields.read_into("min_value", v.min_value);
      fields.read_into("rate", v.rate);
    }
    if (v.kind == Constraint::Kind::MaxNorm || v.kind == Constraint::Kind::MinMaxNorm)
      fields.read_into("max_value", v.max_value);
    if (v.uses_axis()) {
      Index axis = v.axis;
      fields.read_into("axis", axis);  // checked by Layer::set_constraint
      v.axis = axis < -1000 || axis > 1000 ? 1000 : static_cast<int>(axis);
    }
    fields.finish();
    return v;
  }
};

/// The rules as a model-file object with Keras option names, only what differs from the defaults:
/// {"trainable": false, "kernel_regularizer": {"l1": 0, "l2": 0.01}, "bias_constraint": {"class_name": "NonNeg"}}.
inline Config weight_rules_config(const WeightRules& rules) {
  Config c = Config::object();
  if (!rules.trainable) c.set("trainable", false);
  for (std::size_t i = 0; i < kParamRoles; ++i) {
    const std::string role = to_string(static_cast<ParamRole>(i));
    if (rules.regularizers[i].active()) c.set(role + "_regularizer", ConfigCodec<L1L2>::write(rules.regularizers[i]));
    if (rules.constraints[i].active())
      c.set(role + "_constraint", ConfigCodec<Constraint>::write(rules.constraints[i]));
  }
  return c;
}
/// The rules of weight_rules_config (values are checked by Layer::set_weight_rules); `who` starts the messages.
inline WeightRules read_weight_rules(const Config& c, const std::string& who) {
  ConfigReader r(c, who);
  WeightRules rules;
  r.read_into("trainable", rules.trainable);
  for (std::size_t i = 0; i < kParamRoles; ++i) {
    const std::string role = to_string(static_cast<ParamRole>(i));
    r.read_into(role + "_regularizer", rules.regularizers[i]);
    r.read_into(role + "_constraint", rules.constraints[i]);
  }
  r.finish();
  return rules;
}

}  // namespace seqattn
