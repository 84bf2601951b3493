#pragma once
// Reductions whose bits depend only on the values, never on their addresses. Eigen vectorizes sum(), mean(),
// dot() and squaredNorm() of a row of a larger buffer after peeling the leading elements up to the next
// aligned address, so the same row values sum in another order when the row sits elsewhere (a batch padded
// to more steps moves every row). These loop in index order with one accumulator (no -ffast-math: the
// compiler keeps the order). Used where a valid output must be bitwise independent of padding.
//   ordered_sum(v)        sum_i v(i)
//   ordered_dot(a, b)     sum_i a(i) b(i)

#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

template <class V>
typename V::Scalar ordered_sum(const V& v) {
  typename V::Scalar acc(0);
  for (Index i = 0; i < v.size(); ++i) acc += v.coeff(i);
  return acc;
}

template <class A, class B>
typename A::Scalar ordered_dot(const A& a, const B& b) {
  typename A::Scalar acc(0);
  for (Index i = 0; i < a.size(); ++i) acc += a.coeff(i) * b.coeff(i);
  return acc;
}

}  // namespace seqattn::detail
