#pragma once
// Step masks (core/mask.hpp: holes, left padding) in tests: random masks, garbage at masked steps, comparisons.
//   random_step_mask(B, T, seed)          a step mask with holes: per sequence one of {holes, left padding, both,
//                                         a single kept step, no kept step, every step kept}; has_holes() holds
//                                         whenever B >= 2 and T >= 3
//   with_masked_values(x, mask, g)        copy of x (B, T, F) with every value at a masked step replaced by g(i)
//   same_kept_steps(a, ma, b, mb)         the two output masks are equal and every kept step has the same bits
//   masked_nonzero(dx, mask)              "" or the first masked position of dx that is not exactly 0

#include <gtest/gtest.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::testing {

inline Mask random_step_mask(Index B, Index T, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::uint8_t> keep(static_cast<size_t>(B * T), 1);
  for (Index b = 0; b < B; ++b) {
    std::uint8_t* row = keep.data() + b * T;
    // The first two sequences always have a hole and left padding, so the mask cannot be lengths.
    const std::uint64_t kind = b < 2 ? b : rng.below(6);
    switch (kind) {
      case 0:  // holes: about a third of the steps masked, the first and the last kept
        for (Index t = 1; t + 1 < T; ++t) row[t] = rng.below(3) != 0;
        if (T >= 3) row[1 + rng.below(static_cast<std::uint64_t>(T - 2))] = 0;
        break;
      case 1: {  // left padding
        const Index pad = 1 + static_cast<Index>(rng.below(static_cast<std::uint64_t>(std::max<Index>(T - 1, 1))));
        for (Index t = 0; t < std::min(pad, T - 1); ++t) row[t] = 0;
        break;
      }
      case 2:  // left padding, holes and right padding together
        for (Index t = 0; t < T; ++t) row[t] = t > 0 && t + 1 < T && rng.below(2) != 0;
        break;
      case 3:  // a single kept step anywhere
        for (Index t = 0; t < T; ++t) row[t] = 0;
        row[rng.below(static_cast<std::uint64_t>(T))] = 1;
        break;
      case 4:  // nothing kept
        for (Index t = 0; t < T; ++t) row[t] = 0;
        break;
      default:  // every step kept
        break;
    }
  }
  return Mask::from_steps(B, T, std::move(keep));
}

template <class S, class Garbage>
Tensor3<S> with_masked_values(const Tensor3<S>& x, const Mask& mask, Garbage garbage) {
  Tensor3<S> out = x;
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  Index i = 0;
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index f = 0; f < F; ++f, ++i)
        if (!mask.valid(b, t, T)) out(b, t, f) = garbage(i);
  return out;
}

template <class S>
::testing::AssertionResult same_kept_steps(const Tensor3<S>& a, const Mask& ma, const Tensor3<S>& b, const Mask& mb) {
  if (a.dimensions() != b.dimensions())
    return ::testing::AssertionFailure() << "shapes " << shape_string(a) << " and " << shape_string(b);
  if (ma != mb) return ::testing::AssertionFailure() << "the two runs' output masks differ";
  const Index T = a.dimension(1);
  for (Index s = 0; s < a.dimension(0); ++s)
    for (Index t = 0; t < T; ++t) {
      if (!ma.valid(s, t, T)) continue;
      for (Index f = 0; f < a.dimension(2); ++f)
        if (std::memcmp(&a(s, t, f), &b(s, t, f), sizeof(S)) != 0)
          return ::testing::AssertionFailure() << "kept output (" << s << ", " << t << ", " << f << ") differs: "
                                               << a(s, t, f) << " vs " << b(s, t, f);
    }
  return ::testing::AssertionSuccess();
}

template <class S>
std::string masked_nonzero(const Tensor3<S>& dx, const Mask& mask) {
  const Index T = dx.dimension(1);
  for (Index b = 0; b < dx.dimension(0); ++b)
    for (Index t = 0; t < T; ++t) {
      if (mask.valid(b, t, T)) continue;
      for (Index f = 0; f < dx.dimension(2); ++f)
        if (dx(b, t, f) != S(0)) return detail::cat("dx(", b, ", ", t, ", ", f, ") = ", dx(b, t, f), " at a masked step");
    }
  return "";
}

}  // namespace seqattn::testing
