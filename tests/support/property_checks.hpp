#pragma once
// Comparisons shared by the property tests: valid output steps of two runs bitwise equal, finiteness, padding.
//   same_valid_steps(a, ma, b, mb)    every valid step (by each run's own output mask) has the same bits in a and b,
//                                     and both runs have the same valid lengths
//   first_non_finite(x)               "" or the position and value of the first NaN / Inf of x
//   with_padding(x, lengths, T2, g)   x (B, T, F) -> (B, T2, F): valid steps copied, every padded value g(i)
//   padded_nonzero(dx, lengths)       "" or the first padded position of dx that is not exactly 0

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::testing {

template <class S>
::testing::AssertionResult same_valid_steps(const Tensor3<S>& a, const Mask& ma, const Tensor3<S>& b, const Mask& mb) {
  if (a.dimension(0) != b.dimension(0) || a.dimension(2) != b.dimension(2))
    return ::testing::AssertionFailure() << "shapes " << shape_string(a) << " and " << shape_string(b);
  for (Index s = 0; s < a.dimension(0); ++s) {
    const Index la = ma.length(s, a.dimension(1)), lb = mb.length(s, b.dimension(1));
    if (la != lb) return ::testing::AssertionFailure() << "sequence " << s << ": valid lengths " << la << " and " << lb;
    for (Index t = 0; t < la; ++t)
      for (Index f = 0; f < a.dimension(2); ++f)
        if (std::memcmp(&a(s, t, f), &b(s, t, f), sizeof(S)) != 0)
          return ::testing::AssertionFailure() << "valid output (" << s << ", " << t << ", " << f << ") differs: " << a(s, t, f)
                                               << " vs " << b(s, t, f);
  }
  return ::testing::AssertionSuccess();
}

template <class S>
std::string first_non_finite(const S* data, Index n) {
  for (Index i = 0; i < n; ++i)
    if (!std::isfinite(data[i])) return detail::cat("value ", i, " is ", data[i]);
  return "";
}
template <class S>
std::string first_non_finite(const Tensor3<S>& x) {
  return first_non_finite(x.data(), x.size());
}

template <class S, class Garbage>
Tensor3<S> with_padding(const Tensor3<S>& x, const std::vector<Index>& lengths, Index T2, Garbage garbage) {
  Tensor3<S> out(x.dimension(0), T2, x.dimension(2));
  Index i = 0;
  for (Index b = 0; b < x.dimension(0); ++b)
    for (Index t = 0; t < T2; ++t)
      for (Index f = 0; f < x.dimension(2); ++f, ++i)
        out(b, t, f) = t < lengths[static_cast<size_t>(b)] ? x(b, t, f) : garbage(i);
  return out;
}

template <class S>
std::string padded_nonzero(const Tensor3<S>& dx, const std::vector<Index>& lengths) {
  for (Index b = 0; b < dx.dimension(0); ++b)
    for (Index t = lengths[static_cast<size_t>(b)]; t < dx.dimension(1); ++t)
      for (Index f = 0; f < dx.dimension(2); ++f)
        if (dx(b, t, f) != S(0)) return detail::cat("dx(", b, ", ", t, ", ", f, ") = ", dx(b, t, f), " at a padded step");
  return "";
}

}  // namespace seqattn::testing
