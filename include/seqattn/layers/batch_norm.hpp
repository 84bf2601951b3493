#pragma once
/// \file
/// BatchNorm: normalizes each feature over the VALID steps (b, t \< length_b) of the batch, as
/// torch.nn.BatchNorm1d applied to the (N, F) matrix of the valid steps:
///
/// ```unparsed
///     Mode::Train  mu = mean over valid steps, var = biased variance (divides by N) over valid steps
///                  y = gamma * (x - mu) / sqrt(var + eps) + beta
///                  running_mean = (1 - momentum) * running_mean + momentum * mu
///                  running_var  = (1 - momentum) * running_var  + momentum * var * N / (N - 1)   (unbiased)
///                  (the running statistics change at every Train forward, not at backward)
///     Mode::Infer  y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
///   x (B, T, F) -> y (B, T, F). Parameters "gamma", "beta" (F), ones and zeros; buffers (saved, not trained)
///   "running_mean", "running_var" (F), zeros and ones.
/// ```
/// Options: momentum (default 0.1, PyTorch's convention above, in [0, 1]); eps (default 1e-5, > 0); scale
///
/// ```unparsed
///   (learn gamma) and center (learn beta), both default true.
///   Keras' BatchNormalization writes moving = momentum * moving + (1 - momentum) * batch with momentum 0.99 and
///   eps 1e-3: its momentum m_keras is ours 1 - m_keras, so for Keras' defaults use
///   BatchNormOptions().momentum(0.01).eps(1e-3). (Keras also updates the moving variance with the biased
///   variance; we follow PyTorch and use the unbiased one, which differs by the factor N / (N - 1).)
/// ```
/// Masks: padded steps add nothing to the statistics, output 0, get dx = 0 and add nothing to the gradients of
///
/// ```unparsed
///   gamma and beta (their values, NaN included, are never read). Step masks (holes, left padding): the same for
///   every masked step; the statistics are over the kept steps (N = the number of kept steps). Errors: a Train forward
///   with no valid step, or with only one (its variance is undefined; PyTorch refuses it too), throws ShapeError.
/// ```
/// Non-finite statistics: a Train forward whose batch has a NaN or Inf at a valid step throws seqattn::Error
///
/// ```unparsed
///   ("the batch statistics are not finite: feature f has mean NaN and variance NaN because its valid inputs
///   contain NaN; the running statistics were left unchanged") instead of folding NaN into the running statistics
///   for good. Finite inputs of any magnitude give finite, correctly rounded outputs and gradients: a feature whose
///   sum or sum of squares overflows S is recomputed on its values scaled by a power of two
///   (detail/scaled_moments.hpp); var() is then the true variance, Inf when it exceeds the range of S (float:
///   inputs above about 1e19), while rstd and the outputs stay exact. Such a variance cannot enter the running
///   variance: unless momentum is 0, that Train forward throws seqattn::Error naming the feature and leaves the
///   running statistics unchanged (scale the inputs, or use double). Infer computes (x - running_mean) * rstd as
///   written: an input farther than the largest finite value from its running mean overflows there.
/// ```
/// backward follows the mode of the last forward: Train differentiates through mu and var, Infer treats the
/// running statistics as constants.
/// Stream (core/stream.hpp): per step, Mode::Infer: y = gamma * (x - running_mean) * rstd + beta with rstd from
///
/// ```unparsed
///   running_var as forward computes it (bitwise the forward's rows); no state. The running statistics are read
///   at every step, in place.
/// ```

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/detail/scaled_moments.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Options of BatchNorm (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct BatchNormOptions {
  SEQATTN_ARG(double, momentum, 0.1)  ///< PyTorch convention: weight of the new batch statistic
  /// Added to the variance before the square root.
  SEQATTN_ARG(double, eps, 1e-5)
  SEQATTN_ARG(bool, scale, true)  ///< learn gamma
  SEQATTN_ARG(bool, center, true)  ///< learn beta

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("momentum", o.momentum_);
    v("epsilon", o.eps_);
    v("scale", o.scale_);
    v("center", o.center_);
  }
};

/// Batch normalization over the features of every kept step, with running statistics for inference; see the
/// file documentation.
template <class S>
class BatchNorm final : public Layer<S> {
 public:
  /// Batch normalization of `in_features` features.
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
    next_mean_ = Vector<S>::Zero(in_features);
    next_var_ = Vector<S>::Zero(in_features);
    scaled_.resize(static_cast<size_t>(in_features));
    scaled_features_.reserve(static_cast<size_t>(in_features));  // a steady loop allocates nothing
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "batch_norm"; }
  std::string class_name() const override { return "BatchNorm"; }
  /// Step masks: the statistics use the kept steps only; masked steps are treated as padded ones.
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "BatchNorm config");
    const BatchNormOptions options = read_options<BatchNormOptions>(r);
    r.finish();
    return std::make_unique<BatchNorm>(in_features, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("BatchNorm(momentum=", options_.momentum(), ", eps=", options_.eps());
    if (!options_.scale()) s += ", scale=false";
    if (!options_.center()) s += ", center=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<BatchNorm>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const BatchNorm&>(other); }
  /// Per step with the running statistics (Mode::Infer), bitwise the forward's rows; no state.
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<BatchNormStream>(*this);
  }

  /// The options the layer was built with.
  const BatchNormOptions& options() const { return options_; }
  /// gamma is used only when scale is on, beta only when center is on.
  Vector<S>& gamma() { return gamma_; }
  /// The shift beta (in place; used only with center).
  Vector<S>& beta() { return beta_; }
  /// The running mean used in Mode::Infer (a buffer; in place).
  Vector<S>& running_mean() { return running_mean_; }
  /// The running variance used in Mode::Infer (a buffer; in place).
  Vector<S>& running_var() { return running_var_; }
  /// Statistics of the last forward: batch mean and biased variance (Train), running ones (Infer).
  const Vector<S>& mean() const { return mean_; }
  /// The variance of the last forward: the biased batch variance (Train), the running one (Infer).
  const Vector<S>& var() const { return var_; }
  /// Valid steps of the last forward.
  Index valid_steps() const { return count_; }

 protected:
  /// x (N = B*T rows, F); only valid rows count.  mu, var (F) -> rstd = 1 / sqrt(var + eps) (F)
  /// -> xhat = (x - mu) * rstd (N, F) cached -> y = xhat * gamma + beta; padded rows 0
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    const bool holes = mask.has_holes();  // step mask: the kept runs of each sequence (one run [0, len) otherwise)
    count_ = 0;
    for (Index b = 0; b < B; ++b) count_ += mask.count(b, T);
    scaled_features_.clear();
    if (mode == Mode::Train) {
      if (count_ <= 1)
        detail::throw_shape(describe(),
                            ": a Train forward needs at least 2 valid steps to compute batch statistics but got ",
                            count_, " (input ", shape_string(x), ")");
      mean_.setZero();
      for (Index b = 0; b < B; ++b)
        detail::for_each_kept_run(mask, b, T, [&](Index t0, Index n) {
          mean_ += sample_matrix(x, b).middleRows(t0, n).colwise().sum().transpose();
        });
      mean_ /= static_cast<S>(count_);
      var_.setZero();
      for (Index b = 0; b < B; ++b)
        detail::for_each_kept_run(mask, b, T, [&](Index t0, Index n) {
          var_ +=
              (sample_matrix(x, b).middleRows(t0, n).rowwise() - mean_.transpose()).colwise().squaredNorm().transpose();
        });
      var_ /= static_cast<S>(count_);
      // Finite inputs too large for the sums above are rescaled; NaN or Inf inputs throw (before any update).
      if (!mean_.allFinite() || !var_.allFinite()) rescale_statistics(x, mask);
      update_running_statistics();
    } else {
      mean_ = running_mean_;
      var_ = running_var_;
    }
    rstd_ = (var_.array() + static_cast<S>(options_.eps())).rsqrt().matrix();
    for (const Index f : scaled_features_) rstd_(f) = scaled_[f].rstd;
    ensure_shape(xhat_, B * T, F);
    MatrixMap<S> Y = as_matrix(y);
    for (Index b = 0; b < B; ++b) {
      if (holes) {  // masked steps output 0 like padded ones; the kept runs are written below
        xhat_.middleRows(b * T, T).setZero();
        Y.middleRows(b * T, T).setZero();
      }
      detail::for_each_kept_run(mask, b, T, [&](Index t0, Index len) {
        const Index r = b * T + t0;
        xhat_.middleRows(r, len) =
            ((sample_matrix(x, b).middleRows(t0, len).rowwise() - mean_.transpose()).array().rowwise() *
             rstd_.transpose().array())
                .matrix();
        if (!scaled_features_.empty()) normalize_scaled(x, b, t0, len);
        Y.middleRows(r, len) = xhat_.middleRows(r, len);
        if (options_.scale()) Y.middleRows(r, len).array().rowwise() *= gamma_.transpose().array();
        if (options_.center()) Y.middleRows(r, len).rowwise() += beta_.transpose();
      });
      if (!holes) {
        const Index len = mask.length(b, T);
        xhat_.middleRows(b * T + len, T - len).setZero();
        Y.middleRows(b * T + len, T - len).setZero();
      }
    }
  }

  /// dy (N, F) over the N valid rows; gscale = gamma * rstd (F) (rstd alone when scale is off):
  ///
  /// ```unparsed
  ///   dgamma += sum_n dy * xhat;  dbeta += sum_n dy      (inverts y = xhat * gamma + beta)
  ///   Train: dx = gscale * (dy - mean_n dy - xhat * mean_n(dy * xhat))   (inverts xhat = (x - mu) * rstd with mu
  ///          and var functions of x)
  ///   Infer: dx = gscale * dy                                            (running statistics are constants)
  ///   Padded rows: dx = 0.
  /// ```
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    ConstMatrixMap<S> DY = as_matrix(dy);
    MatrixMap<S> DX = as_matrix(dx);
    const bool holes = mask.has_holes();
    sum_g_.setZero();
    sum_gx_.setZero();
    for (Index b = 0; b < B; ++b)
      detail::for_each_kept_run(mask, b, T, [&](Index t0, Index len) {
        // sum_n dy and sum_n dy * xhat per feature
        sum_g_ += DY.middleRows(b * T + t0, len).colwise().sum().transpose();
        sum_gx_ += (DY.middleRows(b * T + t0, len).array() * xhat_.middleRows(b * T + t0, len).array())
                       .colwise()
                       .sum()
                       .matrix()
                       .transpose();
      });
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
      if (holes) DX.middleRows(b * T, T).setZero();  // masked steps: dx = 0; the kept runs are written below
      detail::for_each_kept_run(mask, b, T, [&](Index t0, Index len) {
        for (Index n = b * T + t0; n < b * T + t0 + len; ++n) {
          if (train)
            DX.row(n) =
                ((DY.row(n).array() - sum_g_.transpose().array() - xhat_.row(n).array() * sum_gx_.transpose().array()) *
                 gscale_.transpose().array())
                    .matrix();
          else
            DX.row(n) = (DY.row(n).array() * gscale_.transpose().array()).matrix();
        }
      });
      if (!holes) {
        const Index len = mask.length(b, T);
        DX.middleRows(b * T + len, T - len).setZero();
      }
    }
  }

  void collect_params(ParamList<S>& list) override {
    if (options_.scale()) list.push_back(vector_param<S>("gamma", gamma_, &dgamma_, ParamRole::Gamma));
    if (options_.center()) list.push_back(vector_param<S>("beta", beta_, &dbeta_, ParamRole::Beta));
  }
  void collect_buffers(ParamList<S>& list) override {
    list.push_back(vector_param<S>("running_mean", running_mean_, nullptr));
    list.push_back(vector_param<S>("running_var", running_var_, nullptr));
  }

 private:
  // Train statistics of the features whose mean or variance is not finite: finite inputs too large for the plain
  // sums are recomputed from the values scaled by a power of two (detail/scaled_moments.hpp); mean_ gets the
  // true mean, var_ the true variance (Inf when it exceeds the range of S), rstd and xhat come from the scaled
  // moments. A feature with a NaN or Inf at a valid step throws instead.
  void rescale_statistics(const Tensor3<S>& x, const Mask& mask) {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    const S eps = static_cast<S>(options_.eps());
    const bool holes = mask.has_holes();
    for (Index f = 0; f < F; ++f) {
      if (std::isfinite(mean_(f)) && std::isfinite(var_(f))) continue;
      bool nan = false, inf = false;
      S max_abs = S(0);
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t) {
          if (!detail::kept_step(mask, holes, b, t, T)) continue;
          const S v = x(b, t, f);
          nan = nan || std::isnan(v);
          inf = inf || std::isinf(v);
          max_abs = std::max(max_abs, std::abs(v));
        }
      if (nan || inf)
        throw Error(detail::cat(describe(), ": the batch statistics are not finite: feature ", f, " has mean ",
                                show(mean_(f)), " and variance ", show(var_(f)), " because its valid inputs contain ",
                                nan && inf ? "NaN and Inf" : (nan ? "NaN" : "Inf"),
                                "; the running statistics were left unchanged"));
      // plain loops over the valid steps in order: the same bits whatever T and the padding
      detail::ScaledMoments<S>& m = scaled_[f];
      m.exponent = detail::scale_exponent(max_abs);
      const detail::InverseScale<S> down(m.exponent);
      S sum = S(0);
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t)
          if (detail::kept_step(mask, holes, b, t, T)) sum += (x(b, t, f) * down.first) * down.second;
      m.mean = sum / static_cast<S>(count_);
      S correction = S(0);  // the rounding of the mean (all-equal values then give exactly 0 variance)
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t)
          if (detail::kept_step(mask, holes, b, t, T)) correction += (x(b, t, f) * down.first) * down.second - m.mean;
      m.mean += correction / static_cast<S>(count_);
      S squares = S(0);
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t) {
          if (!detail::kept_step(mask, holes, b, t, T)) continue;
          const S d = (x(b, t, f) * down.first) * down.second - m.mean;
          squares += d * d;
        }
      m.var = squares / static_cast<S>(count_);
      detail::finish_scaled(m, eps);
      mean_(f) = std::ldexp(m.mean, m.exponent);
      var_(f) = std::ldexp(m.var, 2 * m.exponent);  // Inf when the variance exceeds the range of S
      scaled_features_.push_back(f);
    }
  }

  static std::string show(S v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "Inf" : "-Inf";
    return detail::cat(v);
  }

  // running = (1 - momentum) * running + momentum * batch (variance unbiased), computed aside and stored only
  // when every value is finite: otherwise throws, leaving the running statistics unchanged.
  void update_running_statistics() {
    const S m = static_cast<S>(options_.momentum());
    const S unbias = static_cast<S>(count_) / static_cast<S>(count_ - 1);
    next_mean_ = (S(1) - m) * running_mean_ + m * mean_;
    next_var_ = (S(1) - m) * running_var_ + (m * unbias) * var_;
    for (const Index f : scaled_features_)  // the variance term from the scaled one (0 for momentum 0)
      next_var_(f) = (S(1) - m) * running_var_(f) + std::ldexp((m * unbias) * scaled_[f].var, 2 * scaled_[f].exponent);
    if (!next_mean_.allFinite() || !next_var_.allFinite()) {
      Index f = 0;
      while (std::isfinite(next_mean_(f)) && std::isfinite(next_var_(f))) ++f;
      const long double var = std::isfinite(var_(f))
                                  ? static_cast<long double>(var_(f))
                                  : std::ldexp(static_cast<long double>(scaled_[f].var), 2 * scaled_[f].exponent);
      throw Error(detail::cat(describe(), ": the batch statistics are not finite in ",
                              std::is_same<S, float>::value ? "float" : "double", ": feature ", f, " has variance ",
                              var, " (its valid inputs are finite but too large), so its running ",
                              std::isfinite(next_mean_(f)) ? "variance" : "mean",
                              " would overflow; the running statistics were left unchanged"));
    }
    running_mean_ = next_mean_;
    running_var_ = next_var_;
  }

  // Rows [b T + t0, b T + t0 + len) of xhat, the columns of the scaled features: xhat = (z - mz) * norm with
  // z = x 2^-e.
  void normalize_scaled(const Tensor3<S>& x, Index b, Index t0, Index len) {
    const Index T = x.dimension(1);
    for (const Index f : scaled_features_) {
      const detail::ScaledMoments<S>& m = scaled_[f];
      const detail::InverseScale<S> down(m.exponent);
      for (Index t = t0; t < t0 + len; ++t)
        xhat_(b * T + t, f) = ((x(b, t, f) * down.first) * down.second - m.mean) * m.norm;
    }
  }

  // Per step, Mode::Infer: the forward's expressions on the B*n new rows (elementwise: the same bits).
  struct BatchNormStream final : PerStepStream<S> {
    const BatchNorm& layer;
    Vector<S> rstd;  // (F) 1 / sqrt(running_var + eps), recomputed at every step
    explicit BatchNormStream(const BatchNorm& l) : layer(l), rstd(l.in_features()) {}
    // x (B*n, F) -> y = (x - running_mean) * rstd * gamma + beta (B*n, F)
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {
      rstd = (layer.running_var_.array() + static_cast<S>(layer.options_.eps())).rsqrt().matrix();
      MatrixMap<S> Y = as_matrix(y);
      Y = ((as_matrix(x).rowwise() - layer.running_mean_.transpose()).array().rowwise() * rstd.transpose().array())
              .matrix();
      if (layer.options_.scale()) Y.array().rowwise() *= layer.gamma_.transpose().array();
      if (layer.options_.center()) Y.rowwise() += layer.beta_.transpose();
    }
  };

  BatchNormOptions options_;
  Vector<S> gamma_, beta_, dgamma_, dbeta_;  // (F) parameters and gradients
  Vector<S> running_mean_, running_var_;     // (F) buffers
  Vector<S> mean_, var_, rstd_;              // (F) statistics used by the last forward
  Vector<S> sum_g_, sum_gx_, gscale_;        // (F) backward scratch
  Matrix<S> xhat_;                           // (B*T, F) normalized input of the last forward
  Index count_ = 0;                          // valid steps of the last forward
  Vector<S> next_mean_, next_var_;           // (F) running statistics before they are stored
  std::vector<detail::ScaledMoments<S>> scaled_;  // (F) scaled moments of the features in scaled_features_
  std::vector<Index> scaled_features_;            // features of the last Train forward with scaled moments
};

}  // namespace seqattn
