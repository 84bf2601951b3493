#pragma once
/// \file
/// LayerNorm: normalizes the features of each step, as torch.nn.LayerNorm(F) and Keras' LayerNormalization:
///
/// ```unparsed
///     mu = mean_f x[f],  var = mean_f (x[f] - mu)^2  (biased),  xhat = (x - mu) / sqrt(var + eps)
///     y = gamma * xhat + beta
///   x (B, T, F) -> y (B, T, F); gamma, beta (F), initialized to ones and zeros. Parameters "gamma" (when
///   scale) and "beta" (when center), Keras names.
/// ```
/// Options: eps (default 1e-5 as PyTorch; Keras uses 1e-3), must be > 0; scale (learn gamma, default true);
///
/// ```unparsed
///   center (learn beta, default true).
/// ```
/// Masks: padded steps (t >= length) output 0, get dx = 0 and add nothing to the gradients of gamma and beta,
///
/// ```unparsed
///   so padding never reaches the parameters (their values, NaN included, are never read). Every step is
///   normalized on its own, so valid outputs never depend on padding. Step masks (holes, left padding): a masked
///   step is treated as a padded one (supports_step_masks()).
/// ```
/// Range: any finite step gives a finite, correctly rounded output, whatever its magnitude (float up to 3.4e38).
///
/// ```unparsed
///   A step whose sum of squares (or sum) overflows S, which the plain formula would turn into zeros, is
///   normalized again on its values scaled by a power of two (detail/scaled_moments.hpp); xhat and rstd are the
///   true ones, so backward needs nothing else. Steps of ordinary magnitude never take that path (their bits
///   are those of the plain formula). A NaN or Inf in a valid step makes that step's output NaN.
/// ```
/// Stream (core/stream.hpp): per step, no state; each row goes through the forward's own per-row functions
///
/// ```unparsed
///   (normalize_row, normalize_row_scaled), so a stream's outputs are bitwise those of predict.
/// ```

#include <cmath>
#include <memory>
#include <string>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/detail/ordered_sum.hpp"
#include "seqattn/detail/parallel.hpp"
#include "seqattn/detail/scaled_moments.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Options of LayerNorm (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct LayerNormOptions {
  /// Added to the variance before the square root.
  SEQATTN_ARG(double, eps, 1e-5)
  SEQATTN_ARG(bool, scale, true)  ///< learn gamma
  SEQATTN_ARG(bool, center, true)  ///< learn beta

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("epsilon", o.eps_);
    v("scale", o.scale_);
    v("center", o.center_);
  }
};

/// Layer normalization over the features of each step; see the file documentation.
template <class S>
class LayerNorm final : public Layer<S> {
 public:
  /// Layer normalization of `in_features` features.
  explicit LayerNorm(Index in_features, LayerNormOptions options = LayerNormOptions())
      : Layer<S>(in_features), options_(options) {
    if (!(options.eps() > 0.0) || !std::isfinite(options.eps()))
      detail::throw_config(describe(), ": eps must be positive and finite but got ", options.eps());
    detail::checked_parameter<S>(describe(), "gamma and beta", {2, in_features});
    gamma_ = Vector<S>::Ones(in_features);
    beta_ = Vector<S>::Zero(in_features);
    dgamma_ = Vector<S>::Zero(in_features);
    dbeta_ = Vector<S>::Zero(in_features);
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "layer_norm"; }
  std::string class_name() const override { return "LayerNorm"; }
  /// Step masks: a masked step is treated as a padded one (output 0, dx 0, no parameter gradient).
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "LayerNorm config");
    const LayerNormOptions options = read_options<LayerNormOptions>(r);
    r.finish();
    return std::make_unique<LayerNorm>(in_features, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("LayerNorm(eps=", options_.eps());
    if (!options_.scale()) s += ", scale=false";
    if (!options_.center()) s += ", center=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<LayerNorm>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const LayerNorm&>(other); }
  /// Per step (no state): bitwise the forward's rows, the scaled path included.
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<LayerNormStream>(*this);
  }

  /// The options the layer was built with.
  const LayerNormOptions& options() const { return options_; }
  /// gamma is used only when scale is on, beta only when center is on.
  Vector<S>& gamma() { return gamma_; }
  /// The shift beta (in place; a parameter only with center).
  Vector<S>& beta() { return beta_; }

 protected:
  /// x (N = B*T rows, F) -> xhat (N, F), rstd (N) cached -> y = xhat * gamma + beta (N, F); padded rows 0.
  /// Rows in the fixed chunks of core/threads.hpp, shared by the threads (every row is computed alone); then the
  /// rows whose sums overflowed, from scaled statistics.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const bool holes = mask.has_holes();  // step mask: test each step
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), N = B * T;
    ConstMatrixMap<S> X = as_matrix(x);
    MatrixMap<S> Y = as_matrix(y);
    ensure_shape(xhat_, N, F);
    ensure_shape(rstd_, N);
    const Index chunks = detail::chunk_count(N);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 8.0 * double(N) * double(F)), [&](Index c) {
      const Index r0 = c * detail::kChunkRows, r1 = r0 + detail::chunk_rows(N, c);
      for (Index n = r0; n < r1; ++n) {
        if (!detail::kept_step(mask, holes, n / T, n % T, T)) {  // padding or a masked step
          Y.row(n).setZero();
          xhat_.row(n).setZero();
          rstd_(n) = S(0);
          continue;
        }
        normalize_row(X.row(n), xhat_.row(n), rstd_(n), Y.row(n));
      }
    });
    // rstd is 0 (or NaN) exactly where the sum of squares (or the sum) was not finite: those rows are normalized
    // again if their values are finite. Two vectorized reductions per sample find them (a check inside the loop
    // above slowed it by 4% with AVX-512).
    for (Index b = 0; b < B; ++b)
      detail::for_each_kept_run(mask, b, T, [&](Index t0, Index len) {  // lengths: one run [0, length)
        if (len == 0) return;
        const Eigen::Map<const Vector<S>> rstd(rstd_.data() + b * T + t0, len);  // a 0, or a NaN (x * 0 is NaN)
        if (!(rstd.minCoeff() > S(0)) || std::isnan((rstd.array() * S(0)).sum()))
          normalize_scaled(X, b * T + t0, b * T + t0 + len, Y);
      });
  }

  /// dy (N, F) -> g = dy * gamma;  dx = rstd * (g - mean_f(g) - xhat * mean_f(g * xhat))   (inverts the
  /// normalization);  dgamma += sum_n dy * xhat;  dbeta += sum_n dy  (inverts y = xhat * gamma + beta).
  /// Padded rows: dx = 0, no parameter gradient. Row chunks as in forward; dgamma and dbeta are summed row by
  /// row within a chunk, then chunk by chunk in order (detail/parallel.hpp).
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool holes = mask.has_holes();  // step mask: test each step
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), N = B * T;
    ConstMatrixMap<S> DY = as_matrix(dy);
    MatrixMap<S> DX = as_matrix(dx);
    if (options_.scale()) ggamma_.begin(N, dgamma_.data(), 1, F);
    if (options_.center()) gbeta_.begin(N, dbeta_.data(), 1, F);
    const Index chunks = detail::chunk_count(N);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 10.0 * double(N) * double(F)), [&](Index c) {
      const Index r0 = c * detail::kChunkRows, r1 = r0 + detail::chunk_rows(N, c);
      MatrixMap<S> dgamma = options_.scale() ? ggamma_.target(c) : MatrixMap<S>(nullptr, 0, 0);
      MatrixMap<S> dbeta = options_.center() ? gbeta_.target(c) : MatrixMap<S>(nullptr, 0, 0);
      for (Index n = r0; n < r1; ++n) {
        if (!detail::kept_step(mask, holes, n / T, n % T, T)) {  // padding or a masked step
          DX.row(n).setZero();
          continue;
        }
        if (options_.scale()) dgamma.array() += DY.row(n).array() * xhat_.row(n).array();
        if (options_.center()) dbeta += DY.row(n);
        DX.row(n) = DY.row(n);  // g = dy * gamma
        if (options_.scale()) DX.row(n).array() *= gamma_.transpose().array();
        const S mean_g = detail::ordered_sum(DX.row(n)) / static_cast<S>(F);
        const S mean_gx = detail::ordered_dot(DX.row(n), xhat_.row(n)) / static_cast<S>(F);
        DX.row(n) = rstd_(n) * (DX.row(n).array() - mean_g - xhat_.row(n).array() * mean_gx).matrix();
      }
    });
    if (options_.scale()) ggamma_.finish();
    if (options_.center()) gbeta_.finish();
  }

  void collect_params(ParamList<S>& list) override {
    if (options_.scale()) list.push_back(vector_param<S>("gamma", gamma_, &dgamma_, ParamRole::Gamma));
    if (options_.center()) list.push_back(vector_param<S>("beta", beta_, &dbeta_, ParamRole::Beta));
  }

 private:
  // One step, the plain formula (forward's loop and the stream): x (F) -> xhat = (x - mu) * rstd (F), rstd
  // -> y = xhat * gamma + beta (F). Ordered reductions: a row's bits do not depend on its address (so not on the
  // padding, nor on the rows around it in a stream). rstd is 0 or NaN when the sums overflowed (needs_scaling).
  template <class XR, class HR, class YR>
  EIGEN_ALWAYS_INLINE void normalize_row(const XR& x, HR&& xhat, S& rstd, YR&& y) const {
    const Index F = x.size();
    const S mu = detail::ordered_sum(x) / static_cast<S>(F);
    xhat = x.array() - mu;
    rstd = S(1) / std::sqrt(detail::ordered_dot(xhat, xhat) / static_cast<S>(F) + static_cast<S>(options_.eps()));
    xhat *= rstd;
    y = xhat;
    if (options_.scale()) y.array() *= gamma_.transpose().array();
    if (options_.center()) y += beta_.transpose();
  }
  // True when normalize_row's sums overflowed on a finite step (rstd 0 or NaN): normalize_row_scaled redoes it.
  template <class XR>
  static bool needs_scaling(S rstd, const XR& x) {
    return !(rstd > S(0)) && x.allFinite();
  }

  // The valid rows [r0, r1) whose rstd is 0 or NaN and whose values are finite (too large for the plain formula)
  // are normalized again by normalize_row_scaled. Not inlined (the rare path).
  EIGEN_DONT_INLINE void normalize_scaled(const ConstMatrixMap<S>& X, Index r0, Index r1, MatrixMap<S>& Y) {
    for (Index n = r0; n < r1; ++n)
      if (needs_scaling(rstd_(n), X.row(n))) normalize_row_scaled(X.row(n), xhat_.row(n), rstd_(n), Y.row(n));
  }
  // One step from the scaled statistics of detail/scaled_moments.hpp: xhat = (z - mz) * norm with z = x 2^-e,
  // rstd the true one, y = xhat * gamma + beta.
  template <class XR, class HR, class YR>
  void normalize_row_scaled(const XR& x, HR&& xhat, S& rstd, YR&& y) const {
    const Index F = x.size();
    detail::ScaledMoments<S> m;
    m.exponent = detail::scale_exponent<S>(x.cwiseAbs().maxCoeff());
    const detail::InverseScale<S> down(m.exponent);
    xhat = (x * down.first) * down.second;  // z = x 2^-e
    m.mean = detail::ordered_sum(xhat) / static_cast<S>(F);
    xhat.array() -= m.mean;
    const S correction = detail::ordered_sum(xhat) / static_cast<S>(F);  // the rounding of the mean
    xhat.array() -= correction;
    m.mean += correction;
    m.var = detail::ordered_dot(xhat, xhat) / static_cast<S>(F);
    detail::finish_scaled(m, static_cast<S>(options_.eps()));
    xhat *= m.norm;
    rstd = m.rstd;
    y = xhat;
    if (options_.scale()) y.array() *= gamma_.transpose().array();
    if (options_.center()) y += beta_.transpose();
  }

  // Per step: each row of the B*n new rows normalized as in forward (normalize_row, then normalize_row_scaled
  // for the rows it overflowed on), so the outputs are bitwise those of predict. No state.
  struct LayerNormStream final : PerStepStream<S> {
    const LayerNorm& layer;
    Matrix<S> xhat;  // (1, F) scratch
    explicit LayerNormStream(const LayerNorm& l) : layer(l), xhat(1, l.in_features()) {}
    // x (B*n, F) -> y (B*n, F)
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {
      ConstMatrixMap<S> X = as_matrix(x);
      MatrixMap<S> Y = as_matrix(y);
      for (Index r = 0; r < X.rows(); ++r) {
        S rstd;
        layer.normalize_row(X.row(r), xhat.row(0), rstd, Y.row(r));
        if (needs_scaling(rstd, X.row(r))) layer.normalize_row_scaled(X.row(r), xhat.row(0), rstd, Y.row(r));
      }
    }
  };

  LayerNormOptions options_;
  Vector<S> gamma_, beta_, dgamma_, dbeta_;  // (F)
  Matrix<S> xhat_;                           // (B*T, F) normalized input of the last forward
  Vector<S> rstd_;                           // (B*T) 1 / sqrt(var + eps)
  detail::GradSum<S> ggamma_, gbeta_;        // per-chunk partials of dgamma and dbeta
};

}  // namespace seqattn
