#pragma once
// Mean and variance that cannot overflow, for LayerNorm and BatchNorm. Their fast paths compute
// mean = sum x / n and var = sum (x - mean)^2 / n directly; on finite inputs of large magnitude the sum of squares
// overflows (float: deviations from the mean of about 1e19 and more; double: about 1e154), as can the sum itself
// (n values near the largest finite one) and x - mean. Then the layers recompute that row (LayerNorm) or feature
// (BatchNorm) here, on the values scaled by the power of two 2^-e that brings the largest magnitude into
// [0.5, 1) (an exact scaling, but for values that become subnormal, whose effect on the statistics is below
// rounding):
//   z = x 2^-e,  mz = mean z,  vz = mean (z - mz)^2            (|z| < 1, vz <= 4: nothing overflows)
//   (mz is refined once by the mean of z - mz, so all-equal values give exactly vz = 0)
//   mean = mz 2^e,  var = vz 2^2e                              (var itself may overflow: only rstd is needed)
//   xhat = (x - mean) / sqrt(var + eps) = (z - mz) * norm,    norm = 1 / sqrt(vz + eps 2^-2e)
//   rstd = 1 / sqrt(var + eps) = norm 2^-e
// The eps term: eps 2^-2e may underflow to 0. That changes nothing while vz > 0 (then vz is at least a squared
// rounding step of values near 0.5, far above eps 2^-2e); when vz = 0 (all values equal) xhat = 0 and
// rstd = 1 / sqrt(eps), as in the unscaled formula, and norm is set to 0 instead of 1 / sqrt(0).
//   scale_exponent(max_abs)            e with max_abs 2^-e in [0.5, 1) (0 when max_abs is 0)
//   InverseScale<S>(e)                 z = (x * first) * second = x 2^-e
//   finish_scaled(stats, eps)          norm and rstd from exponent, var (vz) and eps

#include <cmath>

namespace seqattn::detail {

template <class S>
struct ScaledMoments {
  int exponent = 0;  // e: the statistics are those of z = x 2^-e
  S mean = S(0);     // mz, mean of z
  S var = S(0);      // vz, biased variance of z
  S norm = S(0);     // xhat = (z - mz) * norm
  S rstd = S(0);     // 1 / sqrt(var + eps) of the unscaled values
};

template <class S>
int scale_exponent(S max_abs) {
  int e = 0;
  std::frexp(max_abs, &e);  // max_abs = m 2^e, m in [0.5, 1)
  return e;
}

// 2^-e as two factors 2^-(e/2) and 2^-(e - e/2): z = (x * first) * second is exact, and each factor is a normal
// number (2^-e alone is subnormal for e > 126 in float, which a flush-to-zero mode reads as 0).
template <class S>
struct InverseScale {
  S first, second;
  explicit InverseScale(int e) : first(std::ldexp(S(1), -(e / 2))), second(std::ldexp(S(1), -(e - e / 2))) {}
};

template <class S>
void finish_scaled(ScaledMoments<S>& m, S eps) {
  if (m.var > S(0)) {
    m.norm = S(1) / std::sqrt(m.var + std::ldexp(eps, -2 * m.exponent));
    m.rstd = std::ldexp(m.norm, -m.exponent);
  } else {
    m.norm = S(0);
    m.rstd = S(1) / std::sqrt(eps);
  }
}

}  // namespace seqattn::detail
