#pragma once
/// \file
/// Finite-difference gradient checking in double, used by every layer test (and usable for your own layers).
///
/// check_gradients(loss, targets, options): for every target tensor compares its analytic gradient with the
/// central difference (loss(v + eps) - loss(v - eps)) / (2 eps), coordinate by coordinate (all of them, or
/// `max_coords` chosen at random for big tensors). A coordinate passes when
///
/// ```unparsed
///     |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
/// ```
/// The result names the worst coordinate. It also lists every target whose analytic gradient is all zero, so
/// a check cannot pass by comparing zeros with zeros (a test says which targets may legitimately be zero).
///
/// check_layer_gradients(layer, x, mask, options): the standard layer check. The loss is
///
/// ```unparsed
///     L = sum(y * R) + layer.regularization_loss()      R random, fixed by the seed
/// ```
/// and the targets are x and every parameter. It also checks the backward contract: a second backward
/// leaves dx unchanged (dx is overwritten) and doubles every parameter gradient (they are added into).

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/random.hpp"

/// Test helpers: finite-difference gradient checks (check_gradients, check_layer_gradients).
namespace seqattn::testing {

/// Options of check_gradients and check_layer_gradients (see the file documentation).
struct GradCheckOptions {
  double eps = 1e-6;  ///< Step of the central difference.
  double rtol = 1e-5;  ///< Relative tolerance.
  double atol = 1e-8;  ///< Absolute tolerance.
  Index max_coords = 300;  ///< per target; larger tensors are sampled
  std::uint64_t seed = 1234;  ///< Seed of the sampled coordinates and of R.
  Mode mode = Mode::Train;  ///< The mode of check_layer_gradients' forward.
};

/// One tensor whose gradient check_gradients compares.
struct GradTarget {
  std::string name;  ///< Its name in the result.
  double* value;  ///< perturbed in place (restored afterwards)
  const double* analytic;  ///< analytic gradient, same size: a COPY, since loss() may overwrite the original buffer
  Index size;  ///< The number of values.
};

/// The outcome of a gradient check.
struct GradCheckResult {
  bool ok = true;  ///< True when every checked coordinate passes.
  Index checked = 0;  ///< The number of coordinates compared.
  double worst_ratio = 0.0;  ///< max over coordinates of |a - n| / (atol + rtol * max(|a|, |n|)); ok iff \<= 1
  std::string worst;  ///< "W[12]: analytic 0.1 numeric 0.2"
  std::vector<std::string> zero_gradients;  ///< targets whose analytic gradient is exactly zero everywhere
  std::vector<std::string> contract_failures;  ///< backward contract (overwrite dx, accumulate grads)

  /// Whether target `name` has an all-zero analytic gradient.
  bool zero(const std::string& name) const {
    return std::find(zero_gradients.begin(), zero_gradients.end(), name) != zero_gradients.end();
  }
  /// Passed, and no target but those listed has an all-zero gradient.
  bool passed(const std::vector<std::string>& allowed_zero = {}) const {
    if (!ok || !contract_failures.empty()) return false;
    for (const auto& z : zero_gradients)
      if (std::find(allowed_zero.begin(), allowed_zero.end(), z) == allowed_zero.end()) return false;
    return true;
  }
  /// One line: the verdict, the counts, the worst coordinate, zero gradients and contract failures.
  std::string report() const {
    std::ostringstream out;
    out << (ok ? "gradients match" : "GRADIENT MISMATCH") << " (" << checked << " coordinates, worst ratio "
        << worst_ratio << ", worst " << worst << ")";
    for (const auto& z : zero_gradients) out << "; all-zero gradient: " << z;
    for (const auto& c : contract_failures) out << "; contract: " << c;
    return out.str();
  }
};

/// Compares the analytic gradient of every target with central differences of `loss` (see the file
/// documentation).
inline GradCheckResult check_gradients(const std::function<double()>& loss, const std::vector<GradTarget>& targets,
                                       const GradCheckOptions& options = GradCheckOptions()) {
  GradCheckResult result;
  Rng rng(options.seed);
  for (const auto& target : targets) {
    bool all_zero = true;
    for (Index i = 0; i < target.size; ++i)
      if (target.analytic[i] != 0.0) all_zero = false;
    if (all_zero) result.zero_gradients.push_back(target.name);

    std::vector<Index> coords;
    if (target.size <= options.max_coords) {
      for (Index i = 0; i < target.size; ++i) coords.push_back(i);
    } else {
      for (Index k = 0; k < options.max_coords; ++k)
        coords.push_back(static_cast<Index>(rng.below(static_cast<std::uint64_t>(target.size))));
    }
    for (Index i : coords) {
      const double saved = target.value[i];
      target.value[i] = saved + options.eps;
      const double plus = loss();
      target.value[i] = saved - options.eps;
      const double minus = loss();
      target.value[i] = saved;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double analytic = target.analytic[i];
      const double err = std::abs(analytic - numeric);
      const double ratio = err / (options.atol + options.rtol * std::max(std::abs(analytic), std::abs(numeric)));
      ++result.checked;
      if (!(ratio <= 1.0)) result.ok = false;  // also catches NaN
      const bool bad = std::isnan(ratio);
      if (result.worst.empty() || bad || ratio > result.worst_ratio) {
        result.worst_ratio = bad ? std::numeric_limits<double>::infinity() : ratio;
        std::ostringstream w;
        w << target.name << "[" << i << "]: analytic " << analytic << " numeric " << numeric;
        result.worst = w.str();
      }
    }
  }
  return result;
}

/// A fixed random tensor with the given shape, entries uniform in [-1, 1).
inline Tensor3<double> random_tensor(Index B, Index T, Index F, std::uint64_t seed) {
  Tensor3<double> t(B, T, F);
  Rng rng(seed);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = rng.uniform(-1.0, 1.0);
  return t;
}

/// The standard layer check: the gradients of x and of every parameter, and the backward contract (see the file
/// documentation).
inline GradCheckResult check_layer_gradients(Layer<double>& layer, Tensor3<double> x, const Mask& mask = Mask(),
                                             const GradCheckOptions& options = GradCheckOptions()) {
  const Tensor3<double>& y0 = layer.forward(x, mask, options.mode);
  const Tensor3<double> R = random_tensor(y0.dimension(0), y0.dimension(1), y0.dimension(2), options.seed + 1);

  auto loss = [&]() {
    const Tensor3<double>& y = layer.forward(x, mask, options.mode);
    double l = layer.regularization_loss();
    for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * R.data()[i];
    return l;
  };

  loss();
  layer.zero_grad();
  const Tensor3<double> dx = layer.backward(x, mask, R);
  ParamList<double> params = layer.params();
  std::vector<std::vector<double>> grads;
  for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());

  std::vector<GradTarget> targets;
  targets.push_back({"x", x.data(), dx.data(), x.size()});
  for (size_t k = 0; k < params.size(); ++k)
    targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
  GradCheckResult result = check_gradients(loss, targets, options);

  // Contract: forward again, backward twice; dx is the same (overwritten), parameter grads double.
  loss();
  layer.zero_grad();
  layer.backward(x, mask, R);
  const Tensor3<double>& dx2 = layer.backward(x, mask, R);
  for (Index i = 0; i < dx.size(); ++i)
    if (std::abs(dx2.data()[i] - dx.data()[i]) > 1e-12 * (1.0 + std::abs(dx.data()[i]))) {
      result.contract_failures.push_back("dx changed on a second backward (must be overwritten, not added)");
      break;
    }
  for (size_t k = 0; k < params.size(); ++k)
    for (Index i = 0; i < params[k].size(); ++i)
      if (std::abs(params[k].grad[i] - 2.0 * grads[k][i]) > 1e-10 * (1.0 + std::abs(grads[k][i]))) {
        result.contract_failures.push_back(params[k].name + " gradient not accumulated by a second backward");
        break;
      }
  layer.zero_grad();
  return result;
}

/// check_layer_gradients for a call with several inputs (core/layer.hpp, "Several inputs": merges, cross-attention,
/// graphs): every input ("x0", "x1", ...) and parameter, and the backward contract (input gradients overwritten,
/// parameter gradients accumulated).
inline GradCheckResult check_inputs_gradients(Layer<double>& layer, std::vector<Tensor3<double>> xs,
                                              std::vector<Mask> masks = {},
                                              const GradCheckOptions& options = GradCheckOptions()) {
  masks.resize(xs.size());
  LayerInputs<double> inputs;
  for (std::size_t i = 0; i < xs.size(); ++i) inputs.push_back({&xs[i], &masks[i]});
  const Tensor3<double>& y0 = layer.forward(inputs, options.mode);
  const Tensor3<double> R = random_tensor(y0.dimension(0), y0.dimension(1), y0.dimension(2), options.seed + 1);
  auto loss = [&]() {
    const Tensor3<double>& y = layer.forward(inputs, options.mode);
    double l = layer.regularization_loss();
    for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * R.data()[i];
    return l;
  };
  loss();
  layer.zero_grad();
  layer.backward(inputs, R);
  std::vector<Tensor3<double>> dxs;
  for (std::size_t i = 0; i < xs.size(); ++i) dxs.push_back(layer.input_grad(Index(i)));
  ParamList<double> params = layer.params();
  std::vector<std::vector<double>> grads;
  for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
  std::vector<GradTarget> targets;
  for (std::size_t i = 0; i < xs.size(); ++i)
    targets.push_back({"x" + std::to_string(i), xs[i].data(), dxs[i].data(), xs[i].size()});
  for (size_t k = 0; k < params.size(); ++k)
    targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
  GradCheckResult result = check_gradients(loss, targets, options);

  loss();
  layer.zero_grad();
  layer.backward(inputs, R);
  layer.backward(inputs, R);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Tensor3<double>& dx2 = layer.input_grad(Index(i));
    for (Index j = 0; j < dx2.size(); ++j)
      if (std::abs(dx2.data()[j] - dxs[i].data()[j]) > 1e-12 * (1.0 + std::abs(dxs[i].data()[j]))) {
        result.contract_failures.push_back("input " + std::to_string(i) +
                                           " gradient changed on a second backward (must be overwritten)");
        break;
      }
  }
  for (size_t k = 0; k < params.size(); ++k)
    for (Index i = 0; i < params[k].size(); ++i)
      if (std::abs(params[k].grad[i] - 2.0 * grads[k][i]) > 1e-10 * (1.0 + std::abs(grads[k][i]))) {
        result.contract_failures.push_back(params[k].name + " gradient not accumulated by a second backward");
        break;
      }
  layer.zero_grad();
  return result;
}

}  // namespace seqattn::testing
