#pragma once
// Parameter gradients summed over the N = B*T rows of a batch, bitwise independent of the thread count (see
// core/threads.hpp): the rows are cut into the fixed chunks of chunk_count(N); chunk c sums its rows into a
// partial of its own, and finish() adds the partials to the gradient in chunk order,
//     grad = ((grad + part_0) + part_1) + ...
// whichever threads computed them. When N fits one chunk, chunk 0 adds straight into the gradient (no partial,
// the same bits as a plain `grad += ...`).
//
//   GradSum<S> g;
//   g.begin(N, grad, rows, cols)   before the chunks: grad is (rows, cols) row-major (a vector: rows = 1)
//   g.target(c)                    (rows, cols) map that chunk c ADDS its sum into (a zeroed partial, or grad)
//   g.finish()                     after every chunk: adds the partials in order
// Partials are a member resized only when the shape changes, so a steady loop allocates nothing.

#include "seqattn/core/tensor.hpp"
#include "seqattn/core/threads.hpp"

namespace seqattn::detail {

template <class S>
class GradSum {
 public:
  void begin(Index batch_rows, S* grad, Index rows, Index cols) {
    grad_ = grad;
    rows_ = rows;
    cols_ = cols;
    chunks_ = chunk_count(batch_rows);
    if (chunks_ > 1) ensure_shape(parts_, chunks_ * rows, cols);
  }

  MatrixMap<S> target(Index c) {
    if (chunks_ <= 1) return MatrixMap<S>(grad_, rows_, cols_);
    MatrixMap<S> part(parts_.data() + c * rows_ * cols_, rows_, cols_);
    part.setZero();
    return part;
  }

  void finish() {
    if (chunks_ <= 1) return;
    MatrixMap<S> grad(grad_, rows_, cols_);
    for (Index c = 0; c < chunks_; ++c) grad += parts_.middleRows(c * rows_, rows_);
  }

 private:
  S* grad_ = nullptr;
  Index rows_ = 0, cols_ = 0, chunks_ = 0;
  Matrix<S> parts_;  // (chunks * rows, cols): partial c in rows [c * rows, (c + 1) * rows)
};

}  // namespace seqattn::detail
