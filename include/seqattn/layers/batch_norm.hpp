#pragma once
// BatchNorm: normalizes each feature over the VALID steps (b, t < length_b) of the batch, as
// torch.nn.BatchNorm1d applied to the (N, F) matrix of the valid steps:
//     Mode::Train  mu = mean over valid steps, var = biased variance (divides by N) over valid steps
//                  y = gamma * (x - mu) / sqrt(var + eps) + beta
//                  running_mean = (1 - momentum) * running_mean + momentum * mu
//                  running_var  = (1 - momentum) * running_var  + momentum * var * N / (N - 1)   (unbiased)
//                  (the running statistics change at every Train forward, not at backward)
//     Mode::Infer  y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
//   x (B, T, F) -> y (B, T, F). Parameters "gamma", "beta" (F), ones and zeros; buffers (saved, not trained)
//   "running_mean", "running_var" (F), zeros and ones.
// Options: momentum (default 0.1, PyTorch's convention above, in [0, 1]); eps (default 1e-5, > 0); scale
//   (learn gamma) and center (learn beta), both default true.
//   Keras' BatchNormalization writes moving = momentum * moving + (1 - momentum) * batch with momentum 0.99 and
//   eps 1e-3: its momentum m_keras is ours 1 - m_keras, so for Keras' defaults use
//   BatchNormOptions().momentum(0.01).eps(1e-3). (Keras also updates the moving variance with the biased
//   variance; we follow PyTorch and use the unbiased one, which differs by the factor N / (N - 1).)
// Masks: padded steps add nothing to the statistics, output 0, get dx = 0 and add nothing to the gradients of
//   gamma and beta. Errors: a Train forward with no valid step, or with only one (its variance is undefined;
//   PyTorch refuses it too), throws ShapeError.
// backward follows the mode of the last forward: Train differentiates through mu and var, Infer treats the
// running statistics as constants.

#include <cmath>
#include <memory>
#include <string>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"

namespace seqattn {

struct BatchNormOptions {
  SEQATTN_ARG(double, momentum, 0.1)  // PyTorch convention: weight of the new batch statistic
  SEQATTN_ARG(double, eps, 1e-5)
  SEQATTN_ARG(bool, scale, true)   // learn gamma
  SEQATTN_ARG(bool, center, true)  // learn beta
};

template <class S>
class BatchNorm final : public Layer<S> {
 public:
  explicit BatchNorm(Index in_features, BatchNormOptions options = BatchNormOptions())
      : Layer<S>(in_features), options_(options) {
    if (!(options.momentum() >= 0.0 && options.momentum() <= 1.0))
      detail::throw_config(describe(), ": momentum must be in [0, 1] but got ", options.momentum());
    if (!(options.eps() > 0.0) || !std::isfinite(options.eps()))
      detail::throw_config(describe(), ": eps must be positive and finite but got ", options.eps());
    detail::checked_parameter<S>(describe(), "gamma, beta, statistics and caches", {6, in_features});
    gamma_ = Vector<S>::Ones(in_features);
    beta_ = Vector<S>::Zero(in_features);
    dgamma_ = Vector<S>::Zero(in_features);
    dbeta_ = Vector<S>::Zero(in_features);
    running_mean_ = Vector<S>::Zero(in_features);
    running_var_ = Vector<S>::Ones(in_features);
    mean_ = Vector<S>::Zero(in_features);
    var_ = Vector<S>::Zero(in_features);
    rstd_ = Vector<S>::Zero(in_features);
    sum_g_ = Vector<S>::Zero(in_features);
    sum_gx_ = Vector<S>::Zero(in_features);
    gscale_ = Vector<S>::Zero(in_features);
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "batch_norm"; }
  std::string describe() const override {
    std::string s = detail::cat("BatchNorm(momentum=", options_.momentum(), ", eps=", options_.eps());
    if (!options_.scale()) s += ", scale=false";
    if (!options_.center()) s += ", center=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<BatchNorm>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const BatchNorm&>(other); }

  const BatchNormOptions& options() const { return options_; }
  // gamma is used only when scale is on, beta only when center is on.
  Vector<S>& gamma() { return gamma_; }
  Vector<S>& beta() { return beta_; }
  Vector<S>& running_mean() { return running_mean_; }
  Vector<S>& running_var() { return running_var_; }
  // Statistics of the last forward: batch mean and biased variance (Train), running ones (Infer).
  const Vector<S>& mean() const { return mean_; }
  const Vector<S>& var() const { return var_; }
  // Valid steps of the last forward.
  Index valid_steps() const { return count_; }

 protected:
  // x (N = B*T rows, F); only valid rows count.  mu, var (F) -> rstd = 1 / sqrt(var + eps) (F)
  // -> xhat = (x - mu) * rstd (N, F) cached -> y = xhat * gamma + beta; padded rows 0
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    count_ = 0;
    for (Index b = 0; b < B; ++b) count_ += mask.length(b, T);
    if (mode == Mode::Train) {
      if (count_ <= 1)
        detail::throw_shape(describe(),
                            ": a Train forward needs at least 2 valid steps to compute batch statistics but got ",
                            count_, " (input ", shape_string(x), ")");
      mean_.setZero();
      for (Index b = 0; b < B; ++b) mean_ += sample_matrix(x, b).topRows(mask.length(b, T)).colwise().sum().transpose();
      mean_ /= static_cast<S>(count_);
      var_.setZero();
      for (Index b = 0; b < B; ++b)
        var_ += (sample_matrix(x, b).topRows(mask.length(b, T)).rowwise() - mean_.transpose())
                    .colwise()
                    .squaredNorm()
                    .transpose();
      var_ /= static_cast<S>(count_);
      const S m = static_cast<S>(options_.momentum());
      const S unbias = static_cast<S>(count_) / static_cast<S>(count_ - 1);
      running_mean_ = (S(1) - m) * running_mean_ + m * mean_;
      running_var_ = (S(1) - m) * running_var_ + (m * unbias) * var_;
    } else {
      mean_ = running_mean_;
      var_ = running_var_;
    }
    rstd_ = (var_.array() + static_cast<S>(options_.eps())).rsqrt().matrix();
    ensure_shape(xhat_, B * T, F);
    MatrixMap<S> Y = as_matrix(y);
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      xhat_.middleRows(b * T, len) =
          ((sample_matrix(x, b).topRows(len).rowwise() - mean_.transpose()).array().rowwise() *
           rstd_.transpose().array())
              .matrix();
      Y.middleRows(b * T, len) = xhat_.middleRows(b * T, len);
      if (options_.scale()) Y.middleRows(b * T, len).array().rowwise() *= gamma_.transpose().array();
      if (options_.center()) Y.middleRows(b * T, len).rowwise() += beta_.transpose();
      xhat_.middleRows(b * T + len, T - len).setZero();
      Y.middleRows(b * T + len, T - len).setZero();
    }
  }

  // dy (N, F) over the N valid rows; gscale = gamma * rstd (F) (rstd alone when scale is off):
  //   dgamma += sum_n dy * xhat;  dbeta += sum_n dy      (inverts y = xhat * gamma + beta)
  //   Train: dx = gscale * (dy - mean_n dy - xhat * mean_n(dy * xhat))   (inverts xhat = (x - mu) * rstd with mu
  //          and var functions of x)
  //   Infer: dx = gscale * dy                                            (running statistics are constants)
  //   Padded rows: dx = 0.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    ConstMatrixMap<S> DY = as_matrix(dy);
    MatrixMap<S> DX = as_matrix(dx);
    sum_g_.setZero();
    sum_gx_.setZero();
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      // sum_n dy and sum_n dy * xhat per feature
      sum_g_ += DY.middleRows(b * T, len).colwise().sum().transpose();
      sum_gx_ += (DY.middleRows(b * T, len).array() * xhat_.middleRows(b * T, len).array())
                     .colwise()
                     .sum()
                     .matrix()
                     .transpose();
    }
    if (options_.scale()) dgamma_ += sum_gx_;
    if (options_.center()) dbeta_ += sum_g_;
    const bool train = this->last_mode() == Mode::Train;
    if (options_.scale())
      gscale_ = (gamma_.array() * rstd_.array()).matrix();
    else
      gscale_ = rstd_;
    const S inv_n = S(1) / static_cast<S>(count_ > 0 ? count_ : 1);
    sum_g_ *= inv_n;   // mean_n dy
    sum_gx_ *= inv_n;  // mean_n dy * xhat
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      for (Index n = b * T; n < b * T + len; ++n) {
        if (train)
          DX.row(n) =
              ((DY.row(n).array() - sum_g_.transpose().array() - xhat_.row(n).array() * sum_gx_.transpose().array()) *
               gscale_.transpose().array())
                  .matrix();
        else
          DX.row(n) = (DY.row(n).array() * gscale_.transpose().array()).matrix();
      }
      DX.middleRows(b * T + len, T - len).setZero();
    }
  }

  void collect_params(ParamList<S>& list) override {
    if (options_.scale()) list.push_back(vector_param<S>("gamma", gamma_, &dgamma_));
    if (options_.center()) list.push_back(vector_param<S>("beta", beta_, &dbeta_));
  }
  void collect_buffers(ParamList<S>& list) override {
    list.push_back(vector_param<S>("running_mean", running_mean_, nullptr));
    list.push_back(vector_param<S>("running_var", running_var_, nullptr));
  }

 private:
  BatchNormOptions options_;
  Vector<S> gamma_, beta_, dgamma_, dbeta_;  // (F) parameters and gradients
  Vector<S> running_mean_, running_var_;     // (F) buffers
  Vector<S> mean_, var_, rstd_;              // (F) statistics used by the last forward
  Vector<S> sum_g_, sum_gx_, gscale_;        // (F) backward scratch
  Matrix<S> xhat_;                           // (B*T, F) normalized input of the last forward
  Index count_ = 0;                          // valid steps of the last forward
};

}  // namespace seqattn
