#pragma once
// Naive loops for Conv1D (tests and benchmarks compare the im2col fast path in layers/conv1d.hpp with them).
// Same semantics as Conv1D: sample b has lengths[b] valid steps (all T when lengths is empty), is convolved
// alone with the padding geometry of its own length, and its output steps t >= out_length(lengths[b]) are 0.
// conv1d_step_mask_forward_reference takes a Mask (step masks: holes, left padding).
//   x (B, T, in); W (kernel_size * in, filters), row j * in + c is tap j, input channel c (Keras' kernel
//   (kernel_size, in, filters) flattened); b (filters) or empty for no bias.

#include <vector>

#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/padding.hpp"

namespace seqattn::detail {

// y (B, out_time, filters) = act(conv(x, W) + b) at valid output steps, 0 elsewhere.
// out_time is geometry.out_length(T).
template <class S>
Tensor3<S> conv1d_forward_reference(const Tensor3<S>& x, const std::vector<Index>& lengths, const Matrix<S>& W,
                                    const Vector<S>& b, const WindowGeometry& g,
                                    Activation activation = Activation::Linear) {
  const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2), F = W.cols();
  const Index T_out = g.out_length(T);
  Tensor3<S> y(B, T_out, F);
  y.setZero();
  for (Index bi = 0; bi < B; ++bi) {
    const Index L = lengths.empty() ? T : lengths[static_cast<size_t>(bi)];
    const Index L_out = g.out_length(L), pad = g.pad_left(L);
    Matrix<S> z = Matrix<S>::Zero(L_out, F);
    for (Index t = 0; t < L_out; ++t)
      for (Index f = 0; f < F; ++f) {
        S acc = b.size() ? b(f) : S(0);
        for (Index j = 0; j < g.kernel_size; ++j) {
          const Index p = t * g.stride + j * g.dilation - pad;
          if (p < 0 || p >= L) continue;
          for (Index c = 0; c < C; ++c) acc += x(bi, p, c) * W(j * C + c, f);
        }
        z(t, f) = acc;
      }
    Matrix<S> a(L_out, F);
    activation_forward<S>(activation, z, a);
    for (Index t = 0; t < L_out; ++t)
      for (Index f = 0; f < F; ++f) y(bi, t, f) = a(t, f);
  }
  return y;
}

// Step masks (core/mask.hpp), the same loops: sample b is convolved as above with len_b its extent, masked input
// steps read as zeros, and output step t is 0 unless its aligned input step (WindowGeometry::aligned_step) is
// kept. A length mask (or an empty one) gives conv1d_forward_reference with its lengths.
template <class S>
Tensor3<S> conv1d_step_mask_forward_reference(const Tensor3<S>& x, const Mask& mask, const Matrix<S>& W,
                                              const Vector<S>& b, const WindowGeometry& g,
                                              Activation activation = Activation::Linear) {
  const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2), F = W.cols();
  const Index T_out = g.out_length(T);
  Tensor3<S> y(B, T_out, F);
  y.setZero();
  for (Index bi = 0; bi < B; ++bi) {
    const Index L = mask.length(bi, T), pad = g.pad_left(L);
    for (Index t = 0; t < T_out; ++t) {
      const Index a = g.aligned_step(t);
      if (a >= T || !mask.valid(bi, a, T)) continue;
      Matrix<S> z(1, F), act(1, F);
      for (Index f = 0; f < F; ++f) {
        S acc = b.size() ? b(f) : S(0);
        for (Index j = 0; j < g.kernel_size; ++j) {
          const Index p = t * g.stride + j * g.dilation - pad;
          if (p < 0 || p >= L || !mask.valid(bi, p, T)) continue;
          for (Index c = 0; c < C; ++c) acc += x(bi, p, c) * W(j * C + c, f);
        }
        z(0, f) = acc;
      }
      activation_forward<S>(activation, z, act);
      for (Index f = 0; f < F; ++f) y(bi, t, f) = act(0, f);
    }
  }
  return y;
}

// Backward of the linear convolution: given dz (B, out_time, filters), the gradient of the pre-activation,
// returns dx (B, T, in) and ADDS into dW and db (db may be empty). dz at padded output steps is ignored.
template <class S>
Tensor3<S> conv1d_backward_reference(const Tensor3<S>& x, const std::vector<Index>& lengths, const Matrix<S>& W,
                                     const Tensor3<S>& dz, const WindowGeometry& g, Matrix<S>& dW, Vector<S>& db) {
  const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2), F = W.cols();
  Tensor3<S> dx(B, T, C);
  dx.setZero();
  for (Index bi = 0; bi < B; ++bi) {
    const Index L = lengths.empty() ? T : lengths[static_cast<size_t>(bi)];
    const Index L_out = g.out_length(L), pad = g.pad_left(L);
    for (Index t = 0; t < L_out; ++t)
      for (Index f = 0; f < F; ++f) {
        const S g_tf = dz(bi, t, f);
        if (db.size()) db(f) += g_tf;
        for (Index j = 0; j < g.kernel_size; ++j) {
          const Index p = t * g.stride + j * g.dilation - pad;
          if (p < 0 || p >= L) continue;
          for (Index c = 0; c < C; ++c) {
            dW(j * C + c, f) += x(bi, p, c) * g_tf;
            dx(bi, p, c) += W(j * C + c, f) * g_tf;
          }
        }
      }
  }
  return dx;
}

}  // namespace seqattn::detail
