#pragma once
// Runs of kept steps of a Mask (core/mask.hpp) for the layers that honor step masks (holes, left padding):
//   for_each_kept_run(mask, b, T, f)   calls f(t0, n) for each maximal run [t0, t0 + n) of kept steps of sequence b,
//                                      in step order. Lengths form: exactly one call f(0, length) (n may be 0), so a
//                                      layer that writes its lengths code as one run computes the same bits.
//   kept_step(mask, holes, b, t, T)    mask.valid(b, t, T) with the lengths test inlined when holes is false.

#include <cstdint>

#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

template <class F>
void for_each_kept_run(const Mask& mask, Index b, Index T, F&& f) {
  if (!mask.has_holes()) {
    f(Index(0), mask.length(b, T));
    return;
  }
  const std::uint8_t* row = mask.keep_row(b);
  const Index extent = mask.length(b, T);
  Index t = 0;
  while (t < extent) {
    while (t < extent && !row[t]) ++t;
    const Index t0 = t;
    while (t < extent && row[t]) ++t;
    if (t > t0) f(t0, t - t0);
  }
}

inline bool kept_step(const Mask& mask, bool holes, Index b, Index t, Index T) {
  return holes ? mask.valid(b, t, T) : t < mask.length(b, T);
}

}  // namespace seqattn::detail
