#pragma once
// The checks of Sequential's finite-check mode (model/sequential.hpp, set_check_finite).
//   check_finite(x, mask, prefix, what, suffix)   throws Error "<prefix>NaN|Inf<what> at (sequence b, step t,
//                                                 feature f)<suffix>" for the first non-finite value of x at a
//                                                 valid step of mask (padded values are never read)
//   check_finite_param(p, prefix)                 the same for the gradient of parameter p, at a flat index

#include <cmath>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

template <class S>
const char* non_finite_name(S v) {
  return std::isnan(v) ? "NaN" : "Inf";
}

// x (B, T, F), mask fits (B, T)
template <class S>
void check_finite(const Tensor3<S>& x, const Mask& mask, const std::string& prefix, const char* what,
                  const char* suffix = "") {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  for (Index b = 0; b < B; ++b) {
    const S* row = x.data() + b * T * F;
    const Index n = mask.length(b, T) * F;
    for (Index i = 0; i < n; ++i)
      if (!std::isfinite(row[i]))
        throw Error(cat(prefix, non_finite_name(row[i]), what, " at (sequence ", b, ", step ", i / F, ", feature ",
                        i % F, ")", suffix));
  }
}

template <class S>
void check_finite_param(const Param<S>& p, const std::string& prefix) {
  for (Index i = 0; i < p.size(); ++i)
    if (!std::isfinite(p.grad[i]))
      throw Error(cat(prefix, non_finite_name(p.grad[i]), " in the gradient of its parameter '", p.name, "' at index ",
                      i, " (backward)"));
}

}  // namespace seqattn::detail
