#pragma once
// Masked softmax kernels shared by the attention layers (MultiHeadAttention, SeqWeightedAttention).
//
// Padding invariance is bitwise: a valid output must not change when the batch is padded to more steps,
// which moves every row to another address. Eigen's vectorized expressions pick scalar or SIMD code for an
// element from its address (alignment peeling), and its scalar exp differs from its SIMD exp in the last
// bit. So these kernels call Eigen's packet functions directly (the partial last packet through a padded
// local buffer): every element goes through the same SIMD exp (or tanh) and sums are accumulated lane by
// lane in a fixed order. Results depend only on the values and the row length, never on addresses.
//
//   masked_softmax_row(row, n, total)         row[0, n) = softmax(row[0, n)); row[n, total) = 0 exactly;
//                                             n == 0 gives an all-zero row (no NaN).
//   masked_softmax_row_kept(row, keep, n, total)
//                                             softmax over the entries s < n with keep[s] != 0 (step masks);
//                                             every other entry of row[0, total) = 0 exactly; none kept: all 0.
//   masked_softmax_row_backward(p, d, n, total, scale)
//                                             d[0, n) = scale * p * (d - p . d); d[n, total) = 0.
//   stable_tanh(m)                            m = tanh(m) in place, elementwise, address-independent.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/ordered_sum.hpp"
#include "seqattn/detail/simd.hpp"

namespace seqattn::detail {

// exp(x) of a SIMD packet of x <= 0 (softmax scores minus their maximum). For float: Eigen's pexp (the Cephes
// reduction and polynomial) with 2^m written straight into the exponent bits, instead of Eigen's general
// ldexp (about a third of its cost, for products that may overflow or be subnormal). x is first clamped to
// -87, where exp is 1.6e-38, so that 2^m is a normal number: such weights are at most 1.6e-38 instead of
// smaller (the row's maximum contributes exp(0) = 1). exp_shift_sum spent 22% of a batch-64 inference of the
// example classifier in Eigen's pexp (Zen 2). Double: Eigen's pexp.
template <class S, class Packet>
Packet exp_nonpositive(const Packet& x) {
  namespace ei = Eigen::internal;
  if constexpr (!std::is_same_v<S, float>) {
    return ei::pexp(x);
  } else {
    using PacketI = typename ei::unpacket_traits<Packet>::integer_packet;
    const Packet xc = ei::pmax(x, ei::pset1<Packet>(-87.0f));
    const Packet m = ei::pfloor(ei::pmadd(xc, ei::pset1<Packet>(1.44269504088896341f), ei::pset1<Packet>(0.5f)));
    Packet r = ei::pmadd(m, ei::pset1<Packet>(-0.693359375f), xc);  // r = x - m ln 2, in two parts
    r = ei::pmadd(m, ei::pset1<Packet>(2.12194440e-4f), r);
    const Packet r2 = ei::pmul(r, r), r3 = ei::pmul(r2, r);
    Packet y = ei::pmadd(ei::pset1<Packet>(1.9875691500E-4f), r, ei::pset1<Packet>(1.3981999507E-3f));
    Packet y1 = ei::pmadd(ei::pset1<Packet>(4.1665795894E-2f), r, ei::pset1<Packet>(1.6666665459E-1f));
    const Packet y2 = ei::padd(r, ei::pset1<Packet>(1.0f));
    y = ei::pmadd(y, r, ei::pset1<Packet>(8.3334519073E-3f));
    y1 = ei::pmadd(y1, r, ei::pset1<Packet>(5.0000001201E-1f));
    y = ei::pmadd(y, r3, y1);
    y = ei::pmadd(y, r2, y2);  // exp(r)
    const PacketI e = ei::pcast<Packet, PacketI>(ei::padd(m, ei::pset1<Packet>(127.0f)));  // biased exponent of 2^m
    return ei::pmul(y, ei::preinterpret<Packet>(ei::plogical_shift_left<23>(e)));
  }
}

// row[0, n): x -> exp(x - shift) in place; returns the sum of the results. Every element goes through the
// same SIMD exp (the tail through a padded local packet) and the sum is accumulated lane by lane, so the
// results do not depend on the row's address.
template <class S>
S exp_shift_sum(S* row, Index n, S shift) {
  namespace ei = Eigen::internal;
  if constexpr (!ei::packet_traits<S>::HasExp || kSimdSize<S> == 1) {  // no SIMD exp: scalar for every element
    S sum(0);
    for (Index s = 0; s < n; ++s) sum += (row[s] = std::exp(row[s] - shift));
    return sum;
  } else {
    using Packet = SimdPacket<S>;
    constexpr Index P = kSimdSize<S>;
    const Packet vshift = ei::pset1<Packet>(shift);
    Packet acc0 = ei::pset1<Packet>(S(0)), acc1 = acc0;
    Index s = 0;
    for (; s + 2 * P <= n; s += 2 * P) {  // two independent chains
      const Packet e0 = exp_nonpositive<S>(ei::psub(ei::ploadu<Packet>(row + s), vshift));
      const Packet e1 = exp_nonpositive<S>(ei::psub(ei::ploadu<Packet>(row + s + P), vshift));
      ei::pstoreu(row + s, e0);
      ei::pstoreu(row + s + P, e1);
      acc0 = ei::padd(acc0, e0);
      acc1 = ei::padd(acc1, e1);
    }
    for (; s < n; s += P) {  // the rest, a packet at a time; the last one padded with shift (exp 1, dropped)
      const Index r = std::min(P, n - s);
      EIGEN_ALIGN_MAX S buf[P];
      for (Index i = 0; i < P; ++i) buf[i] = i < r ? row[s + i] : shift;
      const Packet e = exp_nonpositive<S>(ei::psub(ei::pload<Packet>(buf), vshift));
      ei::pstore(buf, e);
      for (Index i = r; i < P; ++i) buf[i] = S(0);
      for (Index i = 0; i < r; ++i) row[s + i] = buf[i];
      acc0 = ei::padd(acc0, ei::pload<Packet>(buf));
    }
    return ei::predux(ei::padd(acc0, acc1));
  }
}

// max of row[0, n), n > 0, a SIMD packet at a time (the tail padded with row[0]); exact in any order. Eigen's
// maxCoeff() peels the row to an aligned address first, and took a fifth of the softmax's time at n = 128.
template <class S>
S row_max(const S* row, Index n) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  Packet m0 = ei::pset1<Packet>(row[0]), m1 = m0;
  Index s = 0;
  for (; s + 2 * P <= n; s += 2 * P) {
    m0 = ei::pmax(m0, ei::ploadu<Packet>(row + s));
    m1 = ei::pmax(m1, ei::ploadu<Packet>(row + s + P));
  }
  for (; s < n; s += P) {
    EIGEN_ALIGN_MAX S buf[P];
    for (Index i = 0; i < P; ++i) buf[i] = s + i < n ? row[s + i] : row[0];
    m0 = ei::pmax(m0, ei::pload<Packet>(buf));
  }
  return ei::predux_max(ei::pmax(m0, m1));
}

// row (total): softmax over row[0, n) (max-subtracted), row[n, total) = 0 exactly; n == 0: all zero.
template <class S>
void masked_softmax_row(S* row, Index n, Index total) {
  if (n > 0) {
    Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> valid(row, n);
    const S mx = row_max(row, n);  // exact whatever the order
    const S sum = exp_shift_sum(row, n, mx);
    valid *= S(1) / sum;  // elementwise: the same rounding for every element
  }
  if (total > n) std::fill(row + std::max<Index>(n, 0), row + total, S(0));
}

// row (total): softmax over the kept entries of row[0, n) (keep[s] != 0), every other entry of row[0, total) 0
// exactly; none kept: all zero. The kept scores are gathered (in order) to the front of the row and go through
// masked_softmax_row, then spread back: masked scores, whatever their value (NaN, Inf), never enter the maximum or
// the sum, and the kept results do not depend on them. masked_softmax_row_backward inverts it as it is (the
// masked probabilities are exactly 0).
template <class S>
void masked_softmax_row_kept(S* row, const std::uint8_t* keep, Index n, Index total) {
  Index c = 0;
  for (Index s = 0; s < n; ++s)
    if (keep[s]) row[c++] = row[s];
  masked_softmax_row(row, c, c);
  for (Index s = n; s-- > 0;) row[s] = keep[s] ? row[--c] : S(0);  // kept rank c <= s: not yet overwritten
  if (total > n) std::fill(row + std::max<Index>(n, 0), row + total, S(0));
}

// Inverts masked_softmax_row. p: its output row; d: dL/dp in, dL/dz * scale out (in place).
//   dz = p * (dp - sum_s p_s dp_s) over s < n;  d[n, total) = 0.
template <class S>
void masked_softmax_row_backward(const S* p, S* d, Index n, Index total, S scale) {
  if (n > 0) {
    Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>> pv(p, n);
    Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> dv(d, n);
    const S dot = lane_sum(p, static_cast<const S*>(d), n);  // in lanes: the same order at any address
    dv = scale * pv * (dv - dot);                              // elementwise: exact whatever the path
  }
  if (total > n) std::fill(d + std::max<Index>(n, 0), d + total, S(0));
}

// m = tanh(m) elementwise through the SIMD tanh for every element (address-independent). Rows contiguous.
template <class S, class Derived>
void stable_tanh(Eigen::MatrixBase<Derived>& m) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  if constexpr (!ei::packet_traits<S>::HasTanh || P == 1) {  // no SIMD tanh (double): scalar for every element
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) m.derived().coeffRef(i, j) = std::tanh(m.derived().coeff(i, j));
    return;
  } else {
    for (Index i = 0; i < m.rows(); ++i) {
      S* row = &m.derived().coeffRef(i, 0);
      const Index n = m.cols();
      for (Index s = 0; s < n; s += P) {
        const Index r = std::min(P, n - s);
        if (r == P) {
          ei::pstoreu(row + s, ei::ptanh(ei::ploadu<Packet>(row + s)));
          continue;
        }
        EIGEN_ALIGN_MAX S buf[P];
        for (Index k = 0; k < P; ++k) buf[k] = k < r ? row[s + k] : S(0);
        ei::pstore(buf, ei::ptanh(ei::pload<Packet>(buf)));
        for (Index k = 0; k < r; ++k) row[s + k] = buf[k];
      }
    }
  }
}

}  // namespace seqattn::detail
