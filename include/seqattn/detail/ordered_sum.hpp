#pragma once
// Reductions whose bits depend only on the values and the length, never on their addresses. Eigen vectorizes
// sum(), mean(), dot() and squaredNorm() of a row of a larger buffer after peeling the leading elements up to
// the next aligned address, so the same row values sum in another order when the row sits elsewhere (a batch
// padded to more steps moves every row). These add element i into SIMD lane i % (2 P) of two packets (P =
// the packet size, detail/simd.hpp; the last partial packet through a zero-padded local buffer), then reduce
// the lanes in Eigen's fixed order: the same order for every address, at SIMD speed. Used where a valid output
// must be bitwise independent of padding. The vectors are contiguous (rows of row-major matrices).
//   ordered_sum(v)        sum_i v(i)
//   ordered_dot(a, b)     sum_i a(i) b(i)

#include <Eigen/Core>
#include <algorithm>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/simd.hpp"

namespace seqattn::detail {

// sum_i a[i] * (b ? b[i] : 1) over i < n, lane by lane.
template <class S>
S lane_sum(const S* a, const S* b, Index n) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  auto load = [](const S* p, Index i, Index count) {
    if (count >= kSimdSize<S>) return ei::ploadu<Packet>(p + i);
    EIGEN_ALIGN_MAX S buf[kSimdSize<S>] = {};
    std::copy(p + i, p + i + count, buf);
    return ei::pload<Packet>(buf);
  };
  Packet acc0 = ei::pset1<Packet>(S(0)), acc1 = acc0;
  Index i = 0;
  for (; i + 2 * P <= n; i += 2 * P) {
    if (b) {
      acc0 = ei::pmadd(ei::ploadu<Packet>(a + i), ei::ploadu<Packet>(b + i), acc0);
      acc1 = ei::pmadd(ei::ploadu<Packet>(a + i + P), ei::ploadu<Packet>(b + i + P), acc1);
    } else {
      acc0 = ei::padd(acc0, ei::ploadu<Packet>(a + i));
      acc1 = ei::padd(acc1, ei::ploadu<Packet>(a + i + P));
    }
  }
  for (; i < n; i += P) {
    const Index count = std::min(P, n - i);
    acc0 = b ? ei::pmadd(load(a, i, count), load(b, i, count), acc0) : ei::padd(acc0, load(a, i, count));
  }
  return ei::predux(ei::padd(acc0, acc1));
}

template <class V>
typename V::Scalar ordered_sum(const V& v) {
  eigen_assert(v.size() <= 1 || v.innerStride() == 1);
  return lane_sum<typename V::Scalar>(v.data(), nullptr, v.size());
}

template <class A, class B>
typename A::Scalar ordered_dot(const A& a, const B& b) {
  eigen_assert(a.size() == b.size() && (a.size() <= 1 || (a.innerStride() == 1 && b.innerStride() == 1)));
  return lane_sum<typename A::Scalar>(a.data(), b.data(), a.size());
}

}  // namespace seqattn::detail
