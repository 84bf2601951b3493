#pragma once
// Pieces shared by LSTM and GRU (layers/lstm.hpp, layers/gru.hpp).
//
//   RecurrentBase<S>          the common layer part: units, return_sequences, the kernel (F, G) and recurrent
//                             kernel (U, G) with their gradients (G = gates * U), out_time/out_mask, and the
//                             input projection XW = X W + b over all B*T rows (one GEMM, rows bitwise
//                             independent of T, so padding never changes valid outputs)
//   step_rows(M, t, T, B)     rows (b, t), b = 0..B-1, of a (B*T, n) matrix: a (B, n) map with row stride T*n
//   recurrent_product(...)    dst (B, G) = (or +=) h (B, U) * K (U, G): GEMV for B = 1, tiled GEMM otherwise;
//                             never allocates, and a row's bits depend only on its values and the sizes
//   gate_activation/_grad     the elementwise activations a recurrent layer accepts (linear, relu, tanh,
//                             sigmoid) and their derivatives from the OUTPUT y = act(z), so caches keep
//                             activated gates only
//   RecurrentStream<S>        the part of the stream forms (core/stream.hpp) both cells share: the carried h
//                             (B, 1, U), state "h", and the input projection of a chunk over its B*n rows
//   kept<Holes>(mask, b, t, T) whether step t of sequence b is kept: t < len_b for a length mask (Holes false),
//                             the step flag for a step mask (Holes true); the layers branch once per call on
//                             mask.has_holes() and run the step loop instantiated for it
// Masks: sequence b is processed at its kept steps only; at a masked step (a hole, left padding, or t >= len_b)
// its state is carried unchanged, its output row is zero, and the backward pass carries the state gradient
// across it unchanged and gives zero gradient to its input. Steps at or after the longest extent are skipped.

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/stream.hpp"
#include "seqattn/detail/stable_product.hpp"
#include "seqattn/detail/stream_product.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn::detail {

inline bool is_recurrent_activation(Activation a) {
  return a == Activation::Linear || a == Activation::ReLU || a == Activation::Tanh || a == Activation::Sigmoid;
}

inline void check_recurrent_activation(const std::string& who, const char* option, Activation a) {
  if (!is_recurrent_activation(a))
    throw_config(who, ": ", option, " must be linear, relu, tanh or sigmoid but got ", to_string(a),
                 " (its derivative is needed from the output)");
}

// y = act(z)
template <class S>
S gate_activation(Activation a, S z) {
  switch (a) {
    case Activation::ReLU: return z > S(0) ? z : S(0);
    case Activation::Tanh: return std::tanh(z);
    case Activation::Sigmoid: return S(1) / (S(1) + std::exp(-z));
    default: return z;
  }
}
// dy/dz expressed with y = act(z)
template <class S>
S gate_activation_grad(Activation a, S y) {
  switch (a) {
    case Activation::ReLU: return y > S(0) ? S(1) : S(0);
    case Activation::Tanh: return S(1) - y * y;
    case Activation::Sigmoid: return y * (S(1) - y);
    default: return S(1);
  }
}

// m = act(m) in place on an Eigen block, vectorized (Eigen's packet tanh / logistic for float).
template <class M>
void activate_inplace(Activation a, M&& m) {
  switch (a) {
    case Activation::ReLU: m = m.cwiseMax(typename std::decay_t<M>::Scalar(0)); break;
    case Activation::Tanh: m = m.array().tanh().matrix(); break;
    case Activation::Sigmoid: m = m.array().logistic().matrix(); break;
    default: break;
  }
}
// d = d * act'(z) in place, with act' expressed through the output y = act(z) (same shapes).
template <class Y, class D>
void times_activation_grad(Activation a, const Y& y, D&& d) {
  using S = typename std::decay_t<D>::Scalar;
  switch (a) {
    case Activation::ReLU: d = (y.array() > S(0)).select(d.array(), S(0)).matrix(); break;
    case Activation::Tanh: d = (d.array() * (S(1) - y.array().square())).matrix(); break;
    case Activation::Sigmoid: d = (d.array() * y.array() * (S(1) - y.array())).matrix(); break;
    default: break;
  }
}

template <class S>
using StridedMap = Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>>;

// M (B*T, n), rows ordered (b, t) -> the (B, n) view of step t
template <class S>
StridedMap<S> step_rows(Matrix<S>& M, Index t, Index T, Index B) {
  return StridedMap<S>(M.data() + t * M.cols(), B, M.cols(), Eigen::OuterStride<>(T * M.cols()));
}
template <class S>
StridedMap<S> step_rows(Tensor3<S>& x, Index t) {
  return StridedMap<S>(x.data() + t * x.dimension(2), x.dimension(0), x.dimension(2),
                       Eigen::OuterStride<>(x.dimension(1) * x.dimension(2)));
}
template <class S>
Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>> step_rows(const Tensor3<S>& x, Index t) {
  return Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>(x.data() + t * x.dimension(2), x.dimension(0),
                                                              x.dimension(2),
                                                              Eigen::OuterStride<>(x.dimension(1) * x.dimension(2)));
}

// dst (B, G) = (or +=) h (B, U) * K (U, G); h, K and dst are owned contiguous buffers.
template <class S, class KM>
void recurrent_product(Matrix<S>& dst, const Matrix<S>& h, const KM& K, bool accumulate) {
  if (h.rows() == 1) {  // GEMV: no packing, no allocation
    if (accumulate)
      dst.noalias() += h * K;
    else
      dst.noalias() = h * K;
  } else {
    gemm(dst, h, K, S(1), accumulate);
  }
}

// Whether step t of sequence b is kept (Holes: mask.has_holes(), decided once per call by the caller).
template <bool Holes>
bool kept(const Mask& mask, Index b, Index t, Index T) {
  if constexpr (Holes)
    return mask.keep_row(b)[t] != 0;
  else
    return t < mask.length(b, T);
}

// Longest valid length (step masks: extent) of a (B, T) batch.
inline Index max_length(const Mask& mask, Index B, Index T) {
  Index m = 0;
  for (Index b = 0; b < B; ++b) m = std::max(m, mask.length(b, T));
  return m;
}

template <class S>
class RecurrentBase : public Layer<S> {
 public:
  Index units() const { return units_; }
  bool return_sequences() const { return return_sequences_; }
  Index out_features() const override { return units_; }
  Index out_time(Index T) const override { return return_sequences_ ? T : 1; }
  Mask out_mask(const Mask& mask, Index /*T*/) const override { return return_sequences_ ? mask : Mask(); }

  Matrix<S>& kernel() { return W_; }
  Matrix<S>& recurrent_kernel() { return K_; }

 protected:
  RecurrentBase(Index in_features, Index units, Index gates, bool return_sequences, const char* type)
      : Layer<S>(in_features), units_(units), gates_(gates), return_sequences_(return_sequences) {
    if (units <= 0) throw_config(type, ": units must be positive but got ", units);
    const Index G = checked_product(std::string(type), "gates x units", {gates, units});
    checked_parameter<S>(std::string(type), "kernel", {in_features, G});
    checked_parameter<S>(std::string(type), "recurrent_kernel", {units, G});
    W_.resize(in_features, gates * units);
    dW_ = Matrix<S>::Zero(in_features, gates * units);
    K_.resize(units, gates * units);
    dK_ = Matrix<S>::Zero(units, gates * units);
  }

  // x (B*T, F) -> XW_ (B*T, G) = x W + bias (bias: a (G) row or empty); rows independent of T.
  template <class BiasRow>
  void project_inputs(const Tensor3<S>& x, const BiasRow& bias, bool use_bias) {
    auto X = as_matrix(x);
    ensure_shape(XW_, X.rows(), gates_ * units_);
    row_stable_product<S>(XW_, X, W_, scratch_);
    if (use_bias) XW_.rowwise() += bias;
  }

  // Inverts project_inputs: dW += x^T dXW;  dx = dXW W^T  (dXW (B*T, G), zero at padded rows).
  void project_inputs_backward(const Tensor3<S>& x, const Matrix<S>& dXW, Tensor3<S>& dx) {
    auto X = as_matrix(x);
    auto DX = as_matrix(dx);
    gemm(dW_, X.transpose(), dXW, S(1), true);
    gemm(DX, dXW, W_.transpose(), S(1));
  }

  // Sizes the per-step state (B, U) and the caches shared by both cells; zeroes the state.
  void start_sequence(Index B, Index T) {
    ensure_shape(h_, B, units_);
    h_.setZero();
    ensure_shape(hprev_, B * T, units_);
  }

  // Writes step t of y: h for kept rows, 0 for masked ones (return_sequences), or h at the last kept step
  // (t = extent - 1: the state after the last kept step).
  template <bool Holes>
  void write_output(const Mask& mask, Index t, Index T, Tensor3<S>& y) const {
    const Index B = h_.rows();
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      if (return_sequences_) {
        if (kept<Holes>(mask, b, t, T)) sample_matrix(y, b).row(t) = h_.row(b);
      } else if (t == L - 1) {
        sample_matrix(y, b).row(0) = h_.row(b);
      }
    }
  }

  // dh (B, U) = gradient reaching h_t from the output at step t (added into dh).
  template <bool Holes>
  void add_output_grad(const Mask& mask, const Tensor3<S>& dy, Index t, Index T, Matrix<S>& dh) const {
    for (Index b = 0; b < dh.rows(); ++b) {
      const Index L = mask.length(b, T);
      if (return_sequences_ ? kept<Holes>(mask, b, t, T) : t == L - 1)
        dh.row(b) += sample_matrix(dy, b).row(return_sequences_ ? t : 0);
    }
  }

  std::string base_describe(const char* type) const {
    std::string s = std::string(type) + "(units=" + std::to_string(units_);
    if (return_sequences_) s += ", return_sequences=true";
    return s;
  }

  Index units_, gates_;
  bool return_sequences_;
  Matrix<S> W_, dW_;  // (F, G) kernel
  Matrix<S> K_, dK_;  // (U, G) recurrent kernel
  Matrix<S> XW_;      // (B*T, G) input projection, then activated gates (forward cache)
  Matrix<S> h_;       // (B, U) running state
  Matrix<S> hprev_;   // (B*T, U) the state before step t at row (b, t); zero at masked rows
  RowStableScratch<S> scratch_;
};

// The stream form shared by LSTM and GRU: B streams, each with its carried h (state "h", (B, 1, U), zero for a
// fresh stream). A step of n rows projects all B*n new input rows in one product (xw_), then the derived cell
// runs the recurrence one time step at a time on the (B, U) block of every stream. Without return_sequences
// the layer pools time (out_time 1): its output over a prefix is h at the prefix's last step, which is what
// every step writes, so both settings write h per step and only pools_time() differs.
template <class S>
class RecurrentStream : public LayerStream<S> {
 public:
  void reset(Index b) override { zero_stream(h_, b); }
  void state(StreamStateList<S>& list, const std::string& prefix) override {
    list.push_back({prefix + "h", &h_, false, 0});
  }
  bool pools_time() const override { return pooled_; }

 protected:
  RecurrentStream(Index batch, Index units, bool pooled) : pooled_(pooled) { zero_state(h_, batch, 1, units); }

  // x (B, n, F) -> xw_ (B*n, G) = x W + bias (bias: a (G) row, unused without use_bias)
  template <class BiasRow>
  void project(const Tensor3<S>& x, const Matrix<S>& W, const BiasRow& bias, bool use_bias) {
    const auto X = as_matrix(x);
    ensure_shape(xw_, X.rows(), W.cols());
    stream_product(xw_, X, W);
    if (use_bias) xw_.rowwise() += bias;
  }
  // h (B, U) as a matrix over the state tensor
  MatrixMap<S> h() { return MatrixMap<S>(h_.data(), h_.dimension(0), h_.dimension(2)); }

  Tensor3<S> h_;  // (B, 1, U) carried state
  Matrix<S> xw_;  // (B*n, G) the chunk's input projection, rows (b, i)
  Matrix<S> zs_;  // (B, G) one time step's recurrent product
  bool pooled_;
};

}  // namespace seqattn::detail
