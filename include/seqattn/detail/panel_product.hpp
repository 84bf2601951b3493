#pragma once
// Products of a batch of rows by a weight matrix, out = X W, through the register-tiled loop of
// head_products.hpp (rows_times_panel) with W read in place: the projections of MultiHeadAttention.
// At its sizes (k, n from 16 to a few hundred, a chunk of up to 1024 rows) Eigen's GEMM packs X again for every
// call and zero-fills its output; it ran at 50-55 GFLOP/s on AVX2 (Zen 2), the tiled loop at 75-88.
//
// Every output element is ONE fused multiply-add chain over k in increasing order, from zero (or, with
// `accumulate`, from the value already in out): each row depends only on its own values and W, never on the
// number of rows, their addresses or the blocking below, so valid outputs stay bitwise independent of padding
// without the row-quantum scratch of row_stable_product (detail/stable_product.hpp).
//
//   WeightPanel<S> w;  w.set(W)                W (k, n) as a rows panel: W itself when n is a whole number of
//                                              SIMD packets, else a zero-padded copy (kept, reused)
//                      w.set_transposed(W)     W^T (n, k) as a rows panel (a copy)
//   panel_product(X, ldx, rows, w, out, ldo, accumulate)
//                                              out (rows, n) = (or +=) X (rows, k) * W (k, n); X and out
//                                              row-major with row strides ldx and ldo, out not aliasing X or W
//   add_weight_gradient(X, ldx, rows, k, D, ldd, n, G, ldg)
//                                              G (k, n) += X (rows, k)^T * D (rows, n): the weight gradient of
//                                              out = X W for D = dL/dout: each element of G continues its
//                                              chain over the rows (Eigen's GEMM when n is not a whole number
//                                              of packets).
// Blocking: rows in blocks of kPanelRowBlock (the block of X stays in L2), k in blocks whose slice of W read by
// a tile (k block x kTilePackets packets) stays in half of L1.

#include <algorithm>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/stable_product.hpp"

namespace seqattn::detail {

template <class S>
class WeightPanel {
 public:
  // W (k, n), row-major. The panel points into W when no copy is needed: set it again after W is resized.
  void set(const Matrix<S>& W) {
    rows_ = W.rows();
    cols_ = W.cols();
    if (cols_ % head::kPacket<S> == 0) {
      panel_ = {W.data(), cols_};
      return;
    }
    const Index width = head::padded<S>(cols_);
    head::reserve(copy_, rows_ * width);
    for (Index p = 0; p < rows_; ++p) {
      S* row = copy_.data() + p * width;
      std::copy(W.data() + p * cols_, W.data() + (p + 1) * cols_, row);
      std::fill(row + cols_, row + width, S(0));
    }
    panel_ = {copy_.data(), width};
  }
  // The panel of W^T (n, k) for W (k, n): products by W^T (the input gradients of a projection).
  void set_transposed(const Matrix<S>& W) {
    rows_ = W.cols();
    cols_ = W.rows();
    const Index width = head::padded<S>(cols_);
    head::reserve(copy_, rows_ * width);
    for (Index j = 0; j < rows_; ++j) {
      S* row = copy_.data() + j * width;
      for (Index p = 0; p < cols_; ++p) row[p] = W(p, j);
      std::fill(row + cols_, row + width, S(0));
    }
    panel_ = {copy_.data(), width};
  }

  Index rows() const { return rows_; }  // k
  Index cols() const { return cols_; }  // n
  const head::Panel<S>& panel() const { return panel_; }

 private:
  Vector<S> copy_;
  head::Panel<S> panel_{nullptr, 0};
  Index rows_ = 0, cols_ = 0;
};

inline constexpr Index kPanelRowBlock = 128;

// Depth of a k block: its slice of W for one tile's columns (kTilePackets packets) fills half of a 32 KB L1.
template <class S>
Index panel_depth_block() {
  return std::max<Index>(16, Index(16384) / (head::kTilePackets * head::kPacket<S> * Index(sizeof(S))));
}

// out (rows, n) = (or +=) X (rows, k) * W (k, n), W = w's matrix (k = w.rows(), n = w.cols()).
template <class S>
void panel_product(const S* X, Index ldx, Index rows, const WeightPanel<S>& w, S* out, Index ldo, bool accumulate) {
  const Index k = w.rows(), n = w.cols();
  if (rows == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (Index i = 0; i < rows; ++i) std::fill(out + i * ldo, out + i * ldo + n, S(0));
    return;
  }
  const Index kc = panel_depth_block<S>();
  const head::Panel<S>& W = w.panel();
  for (Index i0 = 0; i0 < rows; i0 += kPanelRowBlock) {
    const Index mb = std::min(kPanelRowBlock, rows - i0);
    for (Index p0 = 0; p0 < k; p0 += kc) {
      const head::Panel<S> slice{W.data + p0 * W.stride, W.stride};
      head::rows_times_panel<S>(X + i0 * ldx + p0, ldx, slice, out + i0 * ldo, ldo, n, mb, std::min(kc, k - p0),
                                accumulate || p0 > 0);
    }
  }
}

// G (k, n) += X (rows, k)^T D (rows, n); row-major, row strides ldx, ldd, ldg. G must not alias X or D.
template <class S>
void add_weight_gradient(const S* X, Index ldx, Index rows, Index k, const S* D, Index ldd, Index n, S* G, Index ldg) {
  if (rows == 0 || k == 0 || n == 0) return;
  // Eigen's GEMM when the rows of D and G are not whole packets. 1024 rows, GFLOP/s of the tiles against
  // Eigen's: Zen 5 AVX-512 234/151 at k = n = 256, 231/137 at 512, 248/157 at 64; Zen 5 AVX2 107/81 at 256;
  // Zen 2 AVX2 49/53 at 256 (the one case where Eigen's packing paid off), 62/54 at 128, 75/52 at 64.
  if (n % head::kPacket<S> != 0) {
    using Strided = Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>;
    Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>> target(G, k, n, Eigen::OuterStride<>(ldg));
    gemm(target, Strided(X, rows, k, Eigen::OuterStride<>(ldx)).transpose(),
         Strided(D, rows, n, Eigen::OuterStride<>(ldd)), S(1), true);
    return;
  }
  for (Index i0 = 0; i0 < rows; i0 += kPanelRowBlock) {  // a block of X and D stays in L2
    const Index mb = std::min(kPanelRowBlock, rows - i0);
    head::add_transposed_times_panel<S>(X + i0 * ldx, ldx, head::Panel<S>{D + i0 * ldd, ldd}, n, G, ldg, mb, k, k);
  }
}

}  // namespace seqattn::detail
