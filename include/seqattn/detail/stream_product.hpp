#pragma once
// The weight products of the stream forms (core/stream.hpp) over the B*n new rows of a step:
//   stream_product(dst, X, W, accumulate)   dst (N, n) = (or +=) X (N, k) * W (k, n)
// One row (one step of one stream, the latency case) is Eigen's matrix-vector product on the operands in place
// (no packing of W: a few hundred nanoseconds for a (32) x (32, 256) product); more rows go through the tiled
// GEMM of detail/stable_product.hpp. Neither allocates. dst must not alias X or W; all have unit inner stride.
// The bits of a row can differ in the last place from the full forward's row-stable product of the same row
// (another summation order), never more.

#include <type_traits>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/stable_product.hpp"

namespace seqattn::detail {

template <class Dst, class XM, class WM>
void stream_product(Dst&& dst, const XM& X, const WM& W, bool accumulate = false) {
  using S = typename std::decay_t<Dst>::Scalar;
  if (X.rows() == 1) {  // GEMV straight on the operands
    if (accumulate)
      dst.noalias() += X * W;
    else
      dst.noalias() = X * W;
  } else {
    gemm(dst, X, W, S(1), accumulate);
  }
}

}  // namespace seqattn::detail
