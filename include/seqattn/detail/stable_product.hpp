#pragma once
// Matrix products whose every result coefficient depends only on the operand VALUES and the product's
// sizes, never on addresses, strides or (for row_stable_product) on how many other rows are multiplied.
// The attention layers use them in forward so that valid outputs stay bitwise identical when a batch is
// padded to more steps (padding-invariance tests compare bits).
//
// Why: Eigen's GEMM kernel computes a coefficient the same way for any address (operands are packed), but
//   - the last rows.size() % 4 rows of a GEMM take another path (vectorized along k, then reduced), so a
//     row's bits depend on its position in the product;
//   - tiny products (rows + cols + depth < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) and matrix-vector products
//     use coefficient-based code whose vectorization depends on alignment.
// stable_product sends tiny, single-row and single-column products to a plain loop (sequential in k) and
// everything else to the GEMM kernel; row_stable_product multiplies rows in groups of kRowQuantum (a
// multiple of every SIMD packet size) and the remainder through a zero-padded kRowQuantum-row scratch, so
// every row takes a full-packet path of the GEMM kernel.
//
//   stable_product(dst, lhs, rhs, alpha)            dst = alpha * lhs * rhs      (dst must not alias lhs/rhs)
//   row_stable_product(dst, X, W, scratch)          dst = X W, row by row independent of X.rows()

#include <Eigen/Core>

#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

inline constexpr Index kRowQuantum = 16;

// True when Eigen would not use its GEMM kernel for a (rows, depth) x (depth, cols) product.
inline bool product_is_tiny(Index rows, Index depth, Index cols) {
  return rows == 1 || cols == 1 || rows + depth + cols < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD;
}

// dst (m, n) = alpha * lhs (m, k) * rhs (k, n); dst may be an expression (block, map).
template <class Dst, class Lhs, class Rhs, class S>
void stable_product(Dst&& dst, const Lhs& lhs, const Rhs& rhs, S alpha) {
  const Index m = lhs.rows(), k = lhs.cols(), n = rhs.cols();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    dst.setZero();
    return;
  }
  if (product_is_tiny(m, k, n)) {
    for (Index i = 0; i < m; ++i)
      for (Index j = 0; j < n; ++j) {
        S acc(0);
        for (Index p = 0; p < k; ++p) acc += lhs(i, p) * rhs(p, j);
        dst(i, j) = alpha * acc;
      }
    return;
  }
  if (alpha == S(1))
    dst.noalias() = lhs * rhs;
  else
    dst.noalias() = alpha * lhs * rhs;
}

template <class S>
struct RowStableScratch {
  Matrix<S> in, out;  // (kRowQuantum, k), (kRowQuantum, n)
};

// dst (N, n) = X (N, k) * W (k, n); row i of dst depends only on row i of X and on W.
template <class S, class Dst, class XM, class WM>
void row_stable_product(Dst&& dst, const XM& X, const WM& W, RowStableScratch<S>& scratch) {
  const Index N = X.rows(), k = X.cols(), n = W.cols();
  if (N == 0 || n == 0) return;
  if (product_is_tiny(kRowQuantum, k, n)) {  // also tiny for every multiple of kRowQuantum rows: one path
    for (Index i = 0; i < N; ++i)
      for (Index j = 0; j < n; ++j) {
        S acc(0);
        for (Index p = 0; p < k; ++p) acc += X(i, p) * W(p, j);
        dst(i, j) = acc;
      }
    return;
  }
  const Index rem = N % kRowQuantum, main = N - rem;
  if (main > 0) dst.topRows(main).noalias() = X.topRows(main) * W;
  if (rem > 0) {
    ensure_shape(scratch.in, kRowQuantum, k);
    ensure_shape(scratch.out, kRowQuantum, n);
    scratch.in.topRows(rem) = X.bottomRows(rem);
    scratch.in.bottomRows(kRowQuantum - rem).setZero();
    scratch.out.noalias() = scratch.in * W;
    dst.bottomRows(rem) = scratch.out.topRows(rem);
  }
}

}  // namespace seqattn::detail
