#pragma once
// Dense: y = act(x W + b) on the last axis, one GEMM over all B*T rows. Each output row is bitwise
// independent of how many rows the batch has (detail/row_stable_product), so padding never changes valid outputs.
//   x (B, T, in) -> y (B, T, units); W (in, units); b (units). Parameters "W", "b" (Keras names).

#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/stable_product.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn {

struct DenseOptions {
  SEQATTN_ARG(Activation, activation, Activation::Linear)
  SEQATTN_ARG(bool, use_bias, true)
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)  // default: next_seed()
};

template <class S>
class Dense final : public Layer<S> {
 public:
  Dense(Index in_features, Index units, DenseOptions options = DenseOptions())
      : Layer<S>(in_features), units_(units), options_(options) {
    if (units <= 0) detail::throw_config("Dense: units must be positive but got ", units);
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(in_features, units);
    options.kernel_init().fill(W_, in_features, units, rng);
    dW_ = Matrix<S>::Zero(in_features, units);
    if (options.use_bias()) {
      b_.resize(units);
      options.bias_init().fill(b_, in_features, units, rng);
      db_ = Vector<S>::Zero(units);
    }
  }
  Dense(Index in_features, Index units, Activation activation)
      : Dense(in_features, units, DenseOptions().activation(activation)) {}

  Index out_features() const override { return units_; }
  std::string name() const override { return "dense"; }
  std::string describe() const override {
    std::string s = "Dense(units=" + std::to_string(units_);
    if (options_.activation() != Activation::Linear) s += ", activation=" + to_string(options_.activation());
    if (!options_.use_bias()) s += ", use_bias=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Dense>(*this); }

  Index units() const { return units_; }
  const DenseOptions& options() const { return options_; }
  Matrix<S>& kernel() { return W_; }
  Vector<S>& bias() { return b_; }

 protected:
  // x (N=B*T, in) -> z = x W + b (N, units) -> y = act(z)
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override {
    auto X = as_matrix(x);
    auto Y = as_matrix(y);
    const bool has_act = options_.activation() != Activation::Linear;
    if (has_act) ensure_shape(z_, X.rows(), units_);
    auto compute = [&](auto& Z) {
      detail::row_stable_product<S>(Z, X, W_, scratch_);  // row bits independent of B*T (padding)
      if (options_.use_bias()) Z.rowwise() += b_.transpose();
    };
    if (has_act) {
      compute(z_);
      activation_forward<S>(options_.activation(), z_, Y);
    } else {
      compute(Y);
    }
  }

  // dy (N, units) -> dz = dy * act'(z);  dW += x^T dz;  db += sum_rows dz;  dx = dz W^T
  void do_backward(const Tensor3<S>& x, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    auto X = as_matrix(x);
    auto DY = as_matrix(dy);
    auto DX = as_matrix(dx);
    if (options_.activation() != Activation::Linear) {
      ensure_shape(dz_, DY.rows(), units_);
      activation_backward<S>(options_.activation(), z_, as_matrix(this->output()), DY, dz_);
      accumulate(X, dz_, DX);
    } else {
      accumulate(X, DY, DX);
    }
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_));
  }

 private:
  template <class XM, class DZ, class DXM>
  void accumulate(const XM& X, const DZ& dZ, DXM& DX) {
    dW_.noalias() += X.transpose() * dZ;
    if (options_.use_bias()) db_.noalias() += dZ.colwise().sum().transpose();
    DX.noalias() = dZ * W_.transpose();
  }

  Index units_;
  DenseOptions options_;
  Matrix<S> W_, dW_;
  Vector<S> b_, db_;
  Matrix<S> z_, dz_;  // pre-activation and its gradient (only with an activation)
  detail::RowStableScratch<S> scratch_;
};

}  // namespace seqattn
