#pragma once
/// \file
/// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2):
///
/// ```unparsed
///   norm  = sqrt(sum over every parameter and coordinate of grad^2)      (accumulated in double)
///   scale = max_norm / (norm + 1e-6); when scale < 1 every gradient is multiplied by it
/// ```
/// Returns the norm before clipping. Parameters without a gradient (buffers) are skipped. A non-finite norm
/// is returned as is (the gradients are then scaled by NaN or 0, as PyTorch does with error_if_nonfinite off).
/// ConfigError for a negative or NaN max_norm (infinity: no clipping); UsageError for a view whose layer was
/// destroyed or reassigned (core/param.hpp).

#include <cmath>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/param.hpp"

namespace seqattn {

/// Scales every gradient so that their global norm is at most max_norm; returns the norm before clipping (see
/// the file documentation).
template <class S>
S clip_grad_norm(const ParamList<S>& params, S max_norm) {
  if (!(max_norm >= S(0))) detail::throw_config("clip_grad_norm: max_norm must be >= 0 but got ", max_norm);
  for (const auto& p : params) p.check_alive("clip_grad_norm");
  double sum = 0.0;
  for (const auto& p : params)
    if (p.grad)
      for (Index k = 0; k < p.size(); ++k) sum += static_cast<double>(p.grad[k]) * static_cast<double>(p.grad[k]);
  const double norm = std::sqrt(sum);
  const double scale = static_cast<double>(max_norm) / (norm + 1e-6);
  if (scale < 1.0 || std::isnan(scale)) {
    const S s = static_cast<S>(scale);
    for (const auto& p : params)
      if (p.grad) p.grads() *= s;
  }
  return static_cast<S>(norm);
}

}  // namespace seqattn
