#pragma once
// SeqWeightedAttention: attention pooling over time (keras-self-attention's SeqWeightedAttention).
//   z[b, t] = x[b, t] W + b          one score per step
//   a[b, :] = softmax(z[b, :]) over the valid steps t < len_b (padded steps get weight exactly 0)
//   y[b, 0] = sum_t a[b, t] x[b, t]
// Shapes: x (B, T, F) -> y (B, 1, F); out_mask() is all valid (empty Mask). A sequence of length 0 outputs
// zeros (no NaN) and passes no gradient. attention() (B, T) holds the weights of the last forward.
// Parameters: W (F, 1), b (1,) (Keras names). b shifts every score of a sequence equally, so it never
// changes the output (softmax is shift invariant) and its gradient is 0 up to rounding; it is kept for
// Keras weight compatibility (use_bias(false) drops it).
// Differences from Keras: Keras subtracts 10000 from masked scores and adds K.epsilon() to the softmax
// denominator; here masked steps are excluded exactly. Keras outputs (B, F); here (B, 1, F) (Flatten it).
// Keras' return_attention=True output is attention() here.
// Options: use_bias (true), kernel_init (glorot_uniform), bias_init (zeros), seed (default next_seed()).
// Valid outputs are bitwise independent of padding (fixed-order loops, detail/masked_softmax.hpp).

#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/masked_softmax.hpp"

namespace seqattn {

struct SeqWeightedAttentionOptions {
  SEQATTN_ARG(bool, use_bias, true)
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)  // default: next_seed()
};

template <class S>
class SeqWeightedAttention final : public Layer<S> {
 public:
  explicit SeqWeightedAttention(Index in_features, SeqWeightedAttentionOptions options = SeqWeightedAttentionOptions())
      : Layer<S>(in_features), options_(options) {
    detail::checked_parameter<S>(describe(), "kernel W", {in_features, 1});
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(in_features, 1);
    options.kernel_init().fill(W_, in_features, 1, rng);
    dW_ = Matrix<S>::Zero(in_features, 1);
    if (options.use_bias()) {
      b_.resize(1);
      options.bias_init().fill(b_, in_features, 1, rng);
      db_ = Vector<S>::Zero(1);
    }
  }

  Index out_features() const override { return this->in_features(); }
  Index out_time(Index /*T*/) const override { return 1; }
  Mask out_mask(const Mask& /*mask*/, Index /*T*/) const override { return Mask(); }
  std::string name() const override { return "seq_weighted_attention"; }
  std::string describe() const override {
    return options_.use_bias() ? "SeqWeightedAttention()" : "SeqWeightedAttention(use_bias=false)";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<SeqWeightedAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const SeqWeightedAttention&>(other); }

  const SeqWeightedAttentionOptions& options() const { return options_; }
  Matrix<S>& kernel() { return W_; }
  Vector<S>& bias() { return b_; }
  // Weights of the last forward, (B, T); 0 at padded steps and for sequences of length 0.
  const Matrix<S>& attention() const { return a_; }

 protected:
  // x (B, T, F) -> z (B, T) -> a (B, T) -> y (B, 1, F)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(a_, B, T);
    const S bias = options_.use_bias() ? b_(0) : S(0);
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      auto X = sample_matrix(x, b);  // (T, F)
      // z_t = x_t W + b, in a fixed order (the same bits whatever the padding)
      for (Index t = 0; t < L; ++t) {
        S z(0);
        for (Index f = 0; f < F; ++f) z += X(t, f) * W_(f, 0);
        a_(b, t) = z + bias;
      }
      detail::masked_softmax_row(&a_(b, 0), L, T);  // a = softmax over t < L, 0 elsewhere
      auto yb = sample_matrix(y, b);                // (1, F)
      yb.setZero();
      for (Index t = 0; t < L; ++t) yb.noalias() += a_(b, t) * X.row(t);  // y = sum_t a_t x_t
    }
  }

  // dy (B, 1, F) -> dx (B, T, F); dW, db added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    ensure_shape(dz_, T);
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      auto X = sample_matrix(x, b);    // (T, F)
      auto DX = sample_matrix(dx, b);  // (T, F)
      auto DY = sample_matrix(dy, b);  // (1, F)
      DX.setZero();
      if (L == 0) continue;
      // inverts y = sum_t a_t x_t:  da_t = dy . x_t,  dx_t = a_t dy
      dz_.head(L).noalias() = X.topRows(L) * DY.transpose();
      for (Index t = 0; t < L; ++t) DX.row(t) = a_(b, t) * DY;
      // inverts a = softmax(z): dz = a * (da - a . da)
      detail::masked_softmax_row_backward(&a_(b, 0), dz_.data(), L, L, S(1));
      // inverts z = x W + b:  dx_t += dz_t W^T,  dW += x^T dz,  db += sum dz
      DX.topRows(L).noalias() += dz_.head(L) * W_.transpose();
      dW_.noalias() += X.topRows(L).transpose() * dz_.head(L);
      if (options_.use_bias()) db_(0) += dz_.head(L).sum();
    }
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_));
  }

 private:
  SeqWeightedAttentionOptions options_;
  Matrix<S> W_, dW_;  // (F, 1)
  Vector<S> b_, db_;  // (1)
  Matrix<S> a_;       // (B, T) attention weights of the last forward
  Vector<S> dz_;      // (T) backward scratch
};

}  // namespace seqattn
