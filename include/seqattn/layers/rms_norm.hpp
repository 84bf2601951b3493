#pragma once
/// \file
/// RMSNorm: scales the features of each step by their root mean square, as torch.nn.RMSNorm(F) and Keras 3's
/// RMSNormalization (no centering, no bias):
///
/// ```unparsed
///     rstd = 1 / sqrt(mean_f x[f]^2 + eps),  xhat = x * rstd,  y = gamma * xhat
///   x (B, T, F) -> y (B, T, F); gamma (F), initialized to ones. Parameter "gamma" (when scale), as LayerNorm's.
/// ```
/// Options: eps (model-file key "epsilon"; default 1e-6 as Keras' RMSNormalization; torch.nn.RMSNorm's eps=None
///
/// ```unparsed
///   means the machine epsilon of the dtype, 1.19e-7 for float: pass it explicitly to match), must be > 0 and
///   finite; scale (learn gamma, default true; false is torch's elementwise_affine=False).
/// ```
/// Masks: padded steps (t >= length) output 0, get dx = 0 and add nothing to the gradient of gamma (their values,
///
/// ```unparsed
///   NaN included, are never read). Every step is normalized on its own, so valid outputs never depend on padding.
///   Step masks (holes, left padding): a masked step is treated as a padded one (supports_step_masks()).
/// ```
/// Range: any finite step gives a finite output. A step whose sum of squares overflows S is normalized again on
///
/// ```unparsed
///   its values scaled by a power of two (z = x 2^-e, rstd = 2^-e / sqrt(mean z^2 + eps 4^-e)); steps of
///   ordinary magnitude never take that path. A NaN or Inf in a valid step makes that step's output NaN.
/// ```
/// Backward: g = dy * gamma;  dx = rstd * (g - xhat * mean_f(g * xhat));  dgamma += sum_n dy * xhat.
/// Stream (core/stream.hpp): per step, no state; each row goes through the forward's own per-row function, so a
///
/// ```unparsed
///   stream's outputs are bitwise those of predict.
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

/// Options of RMSNorm (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct RMSNormOptions {
  /// Added to the mean of the squares before the square root.
  SEQATTN_ARG(double, eps, 1e-6)
  SEQATTN_ARG(bool, scale, true)  ///< learn gamma

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("epsilon", o.eps_);
    v("scale", o.scale_);
  }
};

/// Root-mean-square normalization over the features of each step; see the file documentation.
template <class S>
class RMSNorm final : public Layer<S> {
 public:
  /// RMS normalization of `in_features` features.
  explicit RMSNorm(Index in_features, RMSNormOptions options = RMSNormOptions())
      : Layer<S>(in_features), options_(options) {
    if (!(options.eps() > 0.0) || !std::isfinite(options.eps()))
      detail::throw_config(describe(), ": eps must be positive and finite but got ", options.eps());
    detail::checked_parameter<S>(describe(), "gamma", {1, in_features});
    gamma_ = Vector<S>::Ones(in_features);
    dgamma_ = Vector<S>::Zero(in_features);
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "rms_norm"; }
  std::string class_name() const override { return "RMSNorm"; }
  /// Step masks: a masked step is treated as a padded one (output 0, dx 0, no parameter gradient).
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "RMSNorm config");
    const RMSNormOptions options = read_options<RMSNormOptions>(r);
    r.finish();
    return std::make_unique<RMSNorm>(in_features, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("RMSNorm(eps=", options_.eps());
    if (!options_.scale()) s += ", scale=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<RMSNorm>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const RMSNorm&>(other); }
  /// Per step (no state): bitwise the forward's rows, the scaled path included.
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<RMSNormStream>(*this);
  }

  /// The options the layer was built with.
  const RMSNormOptions& options() const { return options_; }
  /// gamma is used only when scale is on.
  Vector<S>& gamma() { return gamma_; }

 protected:
  /// x (N = B*T rows, F) -> xhat (N, F), rstd (N) cached -> y = xhat * gamma (N, F); padded rows 0.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const bool holes = mask.has_holes();  // step mask: test each step
    const Index T = x.dimension(1), F = x.dimension(2), N = x.dimension(0) * T;
    ConstMatrixMap<S> X = as_matrix(x);
    MatrixMap<S> Y = as_matrix(y);
    ensure_shape(xhat_, N, F);
    ensure_shape(rstd_, N);
    const Index chunks = detail::chunk_count(N);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 5.0 * double(N) * double(F)), [&](Index c) {
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
  }

  /// dy (N, F) -> g = dy * gamma;  dx = rstd * (g - xhat * mean_f(g * xhat));  dgamma += sum_n dy * xhat.
  /// Padded rows: dx = 0, no parameter gradient. Row chunks as in forward, dgamma summed chunk by chunk in order.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool holes = mask.has_holes();  // step mask: test each step
    const Index T = x.dimension(1), F = x.dimension(2), N = x.dimension(0) * T;
    ConstMatrixMap<S> DY = as_matrix(dy);
    MatrixMap<S> DX = as_matrix(dx);
    if (options_.scale()) ggamma_.begin(N, dgamma_.data(), 1, F);
    const Index chunks = detail::chunk_count(N);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 8.0 * double(N) * double(F)), [&](Index c) {
      const Index r0 = c * detail::kChunkRows, r1 = r0 + detail::chunk_rows(N, c);
      MatrixMap<S> dgamma = options_.scale() ? ggamma_.target(c) : MatrixMap<S>(nullptr, 0, 0);
      for (Index n = r0; n < r1; ++n) {
        if (!detail::kept_step(mask, holes, n / T, n % T, T)) {  // padding or a masked step
          DX.row(n).setZero();
          continue;
        }
        if (options_.scale()) dgamma.array() += DY.row(n).array() * xhat_.row(n).array();
        DX.row(n) = DY.row(n);  // g = dy * gamma
        if (options_.scale()) DX.row(n).array() *= gamma_.transpose().array();
        const S mean_gx = detail::ordered_dot(DX.row(n), xhat_.row(n)) / static_cast<S>(F);
        DX.row(n) = rstd_(n) * (DX.row(n).array() - xhat_.row(n).array() * mean_gx).matrix();
      }
    });
    if (options_.scale()) ggamma_.finish();
  }

  void collect_params(ParamList<S>& list) override {
    if (options_.scale()) list.push_back(vector_param<S>("gamma", gamma_, &dgamma_, ParamRole::Gamma));
  }

 private:
  // One step (forward and stream): x (F) -> xhat = x * rstd (F), rstd -> y = xhat * gamma (F). Ordered
  // reductions: a row's bits do not depend on its address. When the sum of squares overflows on finite values,
  // the step is normalized from z = x 2^-e (the exponent of detail/scaled_moments.hpp).
  template <class XR, class HR, class YR>
  EIGEN_ALWAYS_INLINE void normalize_row(const XR& x, HR&& xhat, S& rstd, YR&& y) const {
    const Index F = x.size();
    const S eps = static_cast<S>(options_.eps());
    const S ms = detail::ordered_dot(x, x) / static_cast<S>(F);
    if (std::isfinite(ms) || !x.allFinite()) {
      rstd = S(1) / std::sqrt(ms + eps);
      xhat = x * rstd;
    } else {
      normalize_row_scaled(x, xhat, rstd);
    }
    y = xhat;
    if (options_.scale()) y.array() *= gamma_.transpose().array();
  }
  // The rare path: z = x 2^-e (largest |z| in [0.5, 1)), norm = 1 / sqrt(mean z^2 + eps 4^-e), xhat = z * norm,
  // rstd = norm 2^-e.
  template <class XR, class HR>
  EIGEN_DONT_INLINE static void normalize_row_scaled_impl(const XR& x, HR&& xhat, S& rstd, S eps) {
    const Index F = x.size();
    const int e = detail::scale_exponent<S>(x.cwiseAbs().maxCoeff());
    const detail::InverseScale<S> down(e);
    xhat = (x * down.first) * down.second;
    const S ms = detail::ordered_dot(xhat, xhat) / static_cast<S>(F);
    const S norm = S(1) / std::sqrt(ms + std::ldexp(eps, -2 * e));
    xhat *= norm;
    rstd = std::ldexp(norm, -e);
  }
  template <class XR, class HR>
  void normalize_row_scaled(const XR& x, HR&& xhat, S& rstd) const {
    normalize_row_scaled_impl(x, xhat, rstd, static_cast<S>(options_.eps()));
  }

  // Per step: each of the B*n new rows normalized by normalize_row, bitwise as in forward. No state.
  struct RMSNormStream final : PerStepStream<S> {
    const RMSNorm& layer;
    Matrix<S> xhat;  // (1, F) scratch
    explicit RMSNormStream(const RMSNorm& l) : layer(l), xhat(1, l.in_features()) {}
    // x (B*n, F) -> y (B*n, F)
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {
      ConstMatrixMap<S> X = as_matrix(x);
      MatrixMap<S> Y = as_matrix(y);
      for (Index r = 0; r < X.rows(); ++r) {
        S rstd;
        layer.normalize_row(X.row(r), xhat.row(0), rstd, Y.row(r));
      }
    }
  };

  RMSNormOptions options_;
  Vector<S> gamma_, dgamma_;   // (F)
  Matrix<S> xhat_;             // (B*T, F) normalized input of the last forward
  Vector<S> rstd_;             // (B*T) 1 / sqrt(mean x^2 + eps)
  detail::GradSum<S> ggamma_;  // per-chunk partials of dgamma
};

}  // namespace seqattn
