#pragma once
/// \file
/// Pooling heads of the CNN self-attention encoder write-up: x (B, T, F) -> y (B, 1, ...), over the kept steps.
///
/// GatedMeanPool\<S>(in_features, GatedMeanPoolOptions()): the write-up's 'weighted_mean' pooling:
///
/// ```unparsed
///   g[b, t] = sigmoid(x[b, t] w + b0)                   one gate per step; w (F, 1) "kernel", b0 (1,) "bias"
///                                                       (use_bias false: b0 = 0 and no bias parameter: the write-up's
///                                                       gate, Dense(1) without bias)
///   y[b, 0] = sum_t g[b, t] x[b, t] / sum_t g[b, t]     over the kept steps t   (B, 1, F)
///   gates() (B, T) holds g of the last forward (0 at masked and padded steps).
///   Unlike a softmax's bias, b0 changes the output (a common shift of the logits changes the ratios g_t / g_s).
///   The write-up divides by sum g + 1e-8; here by sum g exactly (a relative difference below 1e-8 / sum g).
/// ```
/// BertPool\<S>(in_features, BertPoolOptions().units(U)): the write-up's 'bert' pooling: the first kept step through
///
/// ```unparsed
///   a Dense layer with tanh (BERT's pooler):
///   y[b, 0] = tanh(x[b, t_first] W + c)                 W (F, U) "kernel", c (U,) "bias"; U = units, default F
/// ```
/// Masks (lengths and step masks, supports_step_masks(); as GlobalAvgPool / LastStep): only kept steps are read
/// (outputs bitwise independent of masked values, NaN and Inf included; dx = 0 there); a sequence with no kept step
/// outputs zeros and passes no gradient. out_mask() is all valid (empty Mask).
/// Streams: refused (GatedMeanPool could keep running sums, BertPool the first step; not implemented yet).

#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Options of GatedMeanPool (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct GatedMeanPoolOptions {
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("use_bias", o.use_bias_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// Mean over the kept steps weighted by a learned sigmoid gate; see the file documentation.
template <class S>
class GatedMeanPool final : public Layer<S> {
 public:
  /// Gated mean pooling of `in_features` features.
  explicit GatedMeanPool(Index in_features, GatedMeanPoolOptions options = GatedMeanPoolOptions())
      : Layer<S>(in_features), options_(options) {
    detail::checked_parameter<S>(describe(), "kernel", {in_features, 1});
    Rng rng(options.seed().value_or(next_seed()));
    w_.resize(in_features, 1);
    options.kernel_init().fill(w_, in_features, 1, rng);
    dw_ = Matrix<S>::Zero(in_features, 1);
    b_ = Vector<S>::Zero(1);
    if (options.use_bias()) options.bias_init().fill(b_, in_features, 1, rng);
    db_ = Vector<S>::Zero(1);
  }

  Index out_features() const override { return this->in_features(); }
  Index out_time(Index /*T*/) const override { return 1; }
  Mask out_mask(const Mask& /*mask*/, Index /*T*/) const override { return Mask(); }
  std::string name() const override { return "gated_mean_pool"; }
  std::string class_name() const override { return "GatedMeanPool"; }
  bool supports_step_masks() const override { return true; }
  std::string stream_refusal() const override { return "its stream form is not implemented"; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "GatedMeanPool config");
    const GatedMeanPoolOptions options = read_options<GatedMeanPoolOptions>(r);
    r.finish();
    return std::make_unique<GatedMeanPool>(in_features, options);
  }
  std::string describe() const override { return options_.use_bias() ? "GatedMeanPool()" : "GatedMeanPool(use_bias=false)"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<GatedMeanPool>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const GatedMeanPool&>(other); }

  Matrix<S>& kernel() { return w_; }  ///< (F, 1)
  Vector<S>& bias() { return b_; }  ///< (1); stays 0 without use_bias
  /// Gates of the last forward, (B, T); 0 at masked and padded steps.
  const Matrix<S>& gates() const { return g_; }

 protected:
  /// x (B, T, F) -> g (B, T) -> y (B, 1, F)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(g_, B, T);
    ensure_shape(sum_, B);
    const bool holes = mask.has_holes();
    g_.setZero();
    for (Index b = 0; b < B; ++b) {
      auto X = sample_matrix(x, b);  // (T, F)
      auto Y = sample_matrix(y, b);  // (1, F)
      Y.setZero();
      S G(0);
      for (Index t = 0; t < T; ++t) {
        if (!detail::kept_step(mask, holes, b, t, T)) continue;
        // g_t = sigmoid(x_t w + b0), in feature order
        S s = b_(0);
        for (Index f = 0; f < F; ++f) s += X(t, f) * w_(f, 0);
        const S g = S(1) / (S(1) + std::exp(-s));
        g_(b, t) = g;
        G += g;
        Y.noalias() += g * X.row(t);  // N = sum_t g_t x_t
      }
      sum_(b) = G;
      if (G > S(0)) Y /= G;  // y = N / G (no kept step: G = 0, y = 0)
    }
  }

  /// dy (B, 1, F) -> dx (B, T, F); dw, db added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(y_, 1, F);
    const bool holes = mask.has_holes();
    for (Index b = 0; b < B; ++b) {
      auto X = sample_matrix(x, b);    // (T, F)
      auto DX = sample_matrix(dx, b);  // (T, F)
      auto DY = sample_matrix(dy, b);  // (1, F)
      DX.setZero();
      const S G = sum_(b);
      if (!(G > S(0))) continue;
      // the forward's y, recomputed from the cached gates in the same order
      y_.setZero();
      for (Index t = 0; t < T; ++t)
        if (detail::kept_step(mask, holes, b, t, T)) y_.noalias() += g_(b, t) * X.row(t);
      y_ /= G;
      for (Index t = 0; t < T; ++t) {
        if (!detail::kept_step(mask, holes, b, t, T)) continue;
        const S g = g_(b, t);
        // inverts y = sum g_t x_t / G:  dx_t = g_t dy / G,  dg_t = dy . (x_t - y) / G
        S dg(0);
        for (Index f = 0; f < F; ++f) dg += DY(0, f) * (X(t, f) - y_(0, f));
        dg /= G;
        // inverts g = sigmoid(s):  ds = dg g (1 - g);  s = x_t w + b0:  dx_t += ds w^T,  dw += x_t^T ds,  db += ds
        const S ds = dg * g * (S(1) - g);
        DX.row(t) = (g / G) * DY + ds * w_.col(0).transpose();
        dw_.col(0).transpose() += ds * X.row(t);
        if (options_.use_bias()) db_(0) += ds;
      }
    }
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("kernel", w_, &dw_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("bias", b_, &db_, ParamRole::Bias));
  }

 private:
  GatedMeanPoolOptions options_;
  Matrix<S> w_, dw_;  // (F, 1)
  Vector<S> b_, db_;  // (1)
  Matrix<S> g_;       // (B, T) gates of the last forward
  Vector<S> sum_;     // (B) sum of the gates over the kept steps
  Matrix<S> y_;       // (1, F) backward scratch
};

/// Options of BertPool (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct BertPoolOptions {
  SEQATTN_ARG(Index, units, 0)  ///< 0: in_features (the write-up's Dense(F, tanh))
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("units", o.units_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// The write-up's 'bert' pooling: the first kept step through a dense layer; see the file documentation.
template <class S>
class BertPool final : public Layer<S> {
 public:
  /// BERT pooling of `in_features` features.
  explicit BertPool(Index in_features, BertPoolOptions options = BertPoolOptions())
      : Layer<S>(in_features), options_(options) {
    if (options.units() < 0)
      detail::throw_config("BertPool: units expected 0 (the input features) or a positive integer but got ",
                           options.units());
    units_ = options.units() == 0 ? in_features : options.units();
    detail::checked_parameter<S>(describe(), "kernel", {in_features, units_});
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(in_features, units_);
    options.kernel_init().fill(W_, in_features, units_, rng);
    dW_ = Matrix<S>::Zero(in_features, units_);
    c_.resize(units_);
    options.bias_init().fill(c_, in_features, units_, rng);
    dc_ = Vector<S>::Zero(units_);
  }

  Index out_features() const override { return units_; }
  Index out_time(Index /*T*/) const override { return 1; }
  Mask out_mask(const Mask& /*mask*/, Index /*T*/) const override { return Mask(); }
  std::string name() const override { return "bert_pool"; }
  std::string class_name() const override { return "BertPool"; }
  bool supports_step_masks() const override { return true; }
  std::string stream_refusal() const override { return "its stream form is not implemented"; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "BertPool config");
    const BertPoolOptions options = read_options<BertPoolOptions>(r);
    r.finish();
    return std::make_unique<BertPool>(in_features, options);
  }
  std::string describe() const override { return detail::cat("BertPool(units=", units_, ")"); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<BertPool>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const BertPool&>(other); }

  Matrix<S>& kernel() { return W_; }  ///< (F, units)
  Vector<S>& bias() { return c_; }  ///< (units)

 protected:
  /// x (B, T, F) -> y (B, 1, units): tanh(x_first W + c), 0 when no step is kept
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    MatrixMap<S> Y = as_matrix(y);  // (B, units)
    for (Index b = 0; b < B; ++b) {
      const Index t = mask.first(b, T);
      if (t >= mask.length(b, T)) {
        Y.row(b).setZero();
        continue;
      }
      Y.row(b).noalias() = sample_matrix(x, b).row(t) * W_;
      Y.row(b) = (Y.row(b) + c_.transpose()).array().tanh().matrix();
    }
    ensure_shape(y_, B, units_);
    y_ = Y;
  }

  /// dy (B, 1, units) -> dx (B, T, F); dW, dc added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    ensure_shape(dh_, 1, units_);
    ConstMatrixMap<S> DY = as_matrix(dy);  // (B, units)
    for (Index b = 0; b < B; ++b) {
      auto DX = sample_matrix(dx, b);  // (T, F)
      DX.setZero();
      const Index t = mask.first(b, T);
      if (t >= mask.length(b, T)) continue;
      // inverts y = tanh(h):  dh = dy (1 - y^2);  h = x_first W + c:  dW += x^T dh,  dc += dh,  dx_first = dh W^T
      dh_ = (DY.row(b).array() * (S(1) - y_.row(b).array().square())).matrix();
      dW_.noalias() += sample_matrix(x, b).row(t).transpose() * dh_;
      dc_ += dh_.row(0).transpose();
      DX.row(t).noalias() = dh_ * W_.transpose();
    }
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("kernel", W_, &dW_, ParamRole::Kernel));
    list.push_back(vector_param<S>("bias", c_, &dc_, ParamRole::Bias));
  }

 private:
  BertPoolOptions options_;
  Index units_ = 0;
  Matrix<S> W_, dW_;  // (F, units)
  Vector<S> c_, dc_;  // (units)
  Matrix<S> y_;       // (B, units) output of the last forward
  Matrix<S> dh_;      // (1, units) backward scratch
};

}  // namespace seqattn
