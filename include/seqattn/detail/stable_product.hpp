#pragma once
// Matrix products for the attention layers, built on Eigen's GEMM kernel with two guarantees:
//
// 1. No heap allocation, whatever the sizes. Eigen packs the operands of a large product into buffers that
//    it allocates on the heap once they exceed EIGEN_STACK_ALLOCATION_LIMIT (128 KB), and glibc returns such
//    blocks to the system, so every call page-faults them in again (20% of a training step measured at
//    (16, 256, 128, 8)). gemm() tiles a product so that each Eigen call packs at most that much per operand.
//
// 2. Every result coefficient depends only on the operand VALUES and the product's sizes (never on
//    addresses, strides or, for row_stable_product, on how many other rows are multiplied). The attention
//    layers rely on it in forward so that valid outputs stay bitwise identical when a batch is padded:
//    - Eigen's kernel computes a coefficient the same way for any address (operands are packed), and tiles
//      are a function of the sizes only;
//    - the last rows.size() % 4 rows of a GEMM take another path (vectorized along k, then reduced), so a
//      row's bits depend on its position: row_stable_product multiplies rows in multiples of kRowQuantum
//      (16, a multiple of every SIMD packet size) and the remainder through a zero-padded 16-row scratch;
//    - tiny products (rows + cols + depth < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) and matrix-vector products
//      use coefficient-based code whose vectorization depends on alignment: they run as plain loops here.
//
//   gemm(dst, lhs, rhs, alpha, accumulate)    dst = (or +=) alpha * lhs * rhs  (dst must not alias lhs/rhs)
//   stable_product(dst, lhs, rhs, alpha)      dst = alpha * lhs * rhs
//   row_stable_product(dst, X, W, scratch)    dst = X W, row by row independent of X.rows()

#include <Eigen/Core>
#include <algorithm>

#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

inline constexpr Index kRowQuantum = 16;

// True when Eigen would not use its GEMM kernel for a (rows, depth) x (depth, cols) product.
inline bool product_is_tiny(Index rows, Index depth, Index cols) {
  return rows == 1 || cols == 1 || rows + depth + cols < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD;
}

// Tile sizes of gemm(): Eigen packs at most kc x max(mc, nc) coefficients per operand of each call. Depth
// and column tiles are balanced (the last one is not a sliver, so no tile is tiny unless the product is);
// row tiles are multiples of kRowQuantum but the last.
struct GemmTiles {
  Index mc, kc, nc;
};
inline Index balanced_tile(Index size, Index max_tile) {
  if (size <= max_tile) return size;
  const Index count = (size + max_tile - 1) / max_tile;
  return (size + count - 1) / count;
}
template <class S>
GemmTiles gemm_tiles(Index m, Index k, Index n) {
  const Index pack = std::max<Index>(Index(EIGEN_STACK_ALLOCATION_LIMIT) / Index(sizeof(S)), 4096);
  const Index kc = balanced_tile(k, pack / 128);  // at most 256 floats, 128 doubles
  const Index side = std::max<Index>(kRowQuantum, pack / kc / kRowQuantum * kRowQuantum);
  return {std::min(m, side), kc, balanced_tile(n, side)};
}

// One tile: dst = (or +=) alpha * lhs * rhs through Eigen's GEMM, or a plain loop when Eigen would not use it.
template <class Dst, class Lhs, class Rhs, class S>
void gemm_tile(Dst&& dst, const Lhs& lhs, const Rhs& rhs, S alpha, bool accumulate) {
  const Index m = lhs.rows(), k = lhs.cols(), n = rhs.cols();
  if (product_is_tiny(m, k, n)) {
    for (Index i = 0; i < m; ++i)
      for (Index j = 0; j < n; ++j) {
        S acc(0);
        for (Index p = 0; p < k; ++p) acc += lhs(i, p) * rhs(p, j);
        dst(i, j) = accumulate ? dst(i, j) + alpha * acc : alpha * acc;
      }
    return;
  }
  if (accumulate)
    dst.noalias() += alpha * lhs * rhs;
  else
    dst.noalias() = alpha * lhs * rhs;
}

// An operand of gemm() as a plain strided map, row- or column-major as the expression is stored (a transposed
// row-major block is a column-major map). Every product then instantiates Eigen's GEMM for one of a few
// operand layouts instead of once per expression type (Block of Map, Transpose of Block, ...), which made up
// much of the compile time of the layers. The expressions have direct access and unit inner stride.
template <class S, int Order>
using GemmTarget = Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>>;
template <class S, int Order>
using GemmOperand =
    Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>>;

template <class E>
auto strided_view(const E& e) {
  using S = typename E::Scalar;
  eigen_assert(e.innerStride() == 1 || e.size() <= 1);
  return GemmOperand<S, E::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor>(e.data(), e.rows(), e.cols(),
                                                                              Eigen::OuterStride<>(e.outerStride()));
}
template <class E>
auto strided_target(E& e) {
  using S = typename E::Scalar;
  eigen_assert(e.innerStride() == 1 || e.size() <= 1);
  return GemmTarget<S, E::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor>(e.data(), e.rows(), e.cols(),
                                                                         Eigen::OuterStride<>(e.outerStride()));
}

// gemm() on strided maps.
template <class Dst, class Lhs, class Rhs, class S>
void gemm_strided(Dst dst, const Lhs& lhs, const Rhs& rhs, S alpha, bool accumulate) {
  const Index m = lhs.rows(), k = lhs.cols(), n = rhs.cols();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) dst.setZero();
    return;
  }
  const GemmTiles t = gemm_tiles<S>(m, k, n);
  for (Index j = 0; j < n; j += t.nc) {
    const Index nj = std::min(t.nc, n - j);
    for (Index i = 0; i < m; i += t.mc) {
      const Index mi = std::min(t.mc, m - i);
      for (Index p = 0; p < k; p += t.kc) {
        const Index kp = std::min(t.kc, k - p);
        gemm_tile(dst.block(i, j, mi, nj), lhs.block(i, p, mi, kp), rhs.block(p, j, kp, nj), alpha,
                  accumulate || p > 0);
      }
    }
  }
}

// dst (m, n) = (or +=) alpha * lhs (m, k) * rhs (k, n), in tiles that never make Eigen allocate. dst may be an
// expression (block, map) and must not alias lhs or rhs; all three have direct access (blocks, maps, their
// transposes).
template <class Dst, class Lhs, class Rhs, class S>
void gemm(Dst&& dst, const Lhs& lhs, const Rhs& rhs, S alpha, bool accumulate = false) {
  gemm_strided(strided_target(dst), strided_view(lhs), strided_view(rhs), alpha, accumulate);
}

// dst (m, n) = alpha * lhs (m, k) * rhs (k, n); every coefficient depends only on the values and (m, k, n).
template <class Dst, class Lhs, class Rhs, class S>
void stable_product(Dst&& dst, const Lhs& lhs, const Rhs& rhs, S alpha) {
  gemm(dst, lhs, rhs, alpha, false);
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
  if (n == 1 || k + n < 4) {  // every tile would be tiny for some row counts only: one path for all rows
    for (Index i = 0; i < N; ++i)
      for (Index j = 0; j < n; ++j) {
        S acc(0);
        for (Index p = 0; p < k; ++p) acc += X(i, p) * W(p, j);
        dst(i, j) = acc;
      }
    return;
  }
  const Index rem = N % kRowQuantum, main = N - rem;
  if (main > 0) gemm(dst.topRows(main), X.topRows(main), W, S(1));
  if (rem > 0) {
    ensure_shape(scratch.in, kRowQuantum, k);
    ensure_shape(scratch.out, kRowQuantum, n);
    scratch.in.topRows(rem) = X.bottomRows(rem);
    scratch.in.bottomRows(kRowQuantum - rem).setZero();
    gemm(scratch.out, scratch.in, W, S(1));
    dst.bottomRows(rem) = scratch.out.topRows(rem);
  }
}

}  // namespace seqattn::detail
