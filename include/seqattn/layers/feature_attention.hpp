#pragma once
/// \file
/// FeatureAttention: the feature-wise attention block of keras-attention-mechanism (a Dense with a softmax
/// over the features, multiplied into its input):
///
/// ```unparsed
///   x (B, T, F) -> p[b, t] = softmax_over_features(x[b, t] W + b)  (F,)   -> y[b, t] = x[b, t] * a[b, t]
/// ```
/// with a = p, or with shared=true (keras-attention-mechanism's SINGLE_ATTENTION_VECTOR) one vector per sample,
/// the mean of p over the sample's valid steps, a[b, t] = mean_{t' \< len_b} p[b, t'].
/// Parameters "W" (F, F) and "b" (F) (Keras' Dense names; use_bias=false drops b). Options
/// (FeatureAttentionOptions): shared (false), use_bias (true), kernel_init (glorot_uniform), bias_init (zeros),
/// seed. attention() returns a (B, T, F) of the last forward (keras-attention-mechanism's 'attention_vec').
/// Masks: padded steps (t >= len_b) have attention 0 and output 0, pass no gradient and do not enter the
/// shared mean; a sample of length 0 outputs zeros. Padded values never matter (even NaN).
/// Step masks (core/mask.hpp: holes, left padding): the softmax is per step, so a kept step is computed as for
/// any step; a masked step is treated as a padded one (attention 0, output 0, no gradient), and with shared=true
/// the mean runs over the sample's kept steps only (divided by their count; none kept: zeros). The products read
/// the rows of masked steps (each output row depends only on its own input row), but their results are dropped
/// (assigned 0) and the weight gradient sums over the runs of kept steps only, so masked values (NaN, Inf too)
/// never reach a kept output or a gradient. Lengths masks take the unchanged lengths path.
/// Compute: per sample, one (L, F) x (F, F) GEMM forward and two backward (padded rows are skipped).
/// Stream (core/stream.hpp): shared=false is per step (no state): z = x W + b over the B*n new rows in one
///
/// ```unparsed
///   Eigen product, then the forward's softmax of each row, y = x * p: equal to the forward up to the rounding
///   of the product (a few units in the last place). shared=true cannot stream: every step is weighted by the
///   mean of p over the whole sequence, later steps included.
/// ```

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/ordered_sum.hpp"
#include "seqattn/detail/stable_product.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Options of FeatureAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct FeatureAttentionOptions {
  SEQATTN_ARG(bool, shared, false)  ///< one attention vector per sample (mean over valid steps)
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
    v("shared", o.shared_);
    v("use_bias", o.use_bias_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// Feature-wise attention (keras-attention-mechanism): a softmax over each step's features multiplied into
/// the input; see the file documentation.
template <class S>
class FeatureAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// Feature attention over `in_features` features.
  explicit FeatureAttention(Index in_features, FeatureAttentionOptions options = FeatureAttentionOptions())
      : Layer<S>(in_features), options_(options) {
    const Index F = in_features;
    detail::checked_parameter<S>(describe(), "kernel W", {F, F});
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(F, F);
    options.kernel_init().fill(W_, F, F, rng);
    dW_ = Matrix<S>::Zero(F, F);
    if (options.use_bias()) {
      b_.resize(F);
      options.bias_init().fill(b_, F, F, rng);
      db_ = Vector<S>::Zero(F);
    }
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "feature_attention"; }
  std::string class_name() const override { return "FeatureAttention"; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "FeatureAttention config");
    const FeatureAttentionOptions options = read_options<FeatureAttentionOptions>(r);
    r.finish();
    return std::make_unique<FeatureAttention>(in_features, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("FeatureAttention(features=", this->in_features());
    if (options_.shared()) s += ", shared=true";
    if (!options_.use_bias()) s += ", use_bias=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<FeatureAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const FeatureAttention&>(other); }
  /// Per step with shared=false; ConfigError with shared=true (stream_refusal()).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (options_.shared()) return Layer<S>::open_stream(batch, options);
    return std::make_unique<FeatureStream>(*this);
  }
  std::string stream_refusal() const override {
    return "shared=true weights every step by the mean of the softmax weights over the whole sequence, later "
           "steps included (shared=false weights each step by its own and streams)";
  }

  /// Step masks (holes, left padding): see the header comment.
  bool supports_step_masks() const override { return true; }

  /// The options the layer was built with.
  const FeatureAttentionOptions& options() const { return options_; }
  /// The kernel W (in place).
  Matrix<S>& kernel() { return W_; }
  /// The bias b (in place; empty without use_bias).
  Vector<S>& bias() { return b_; }
  /// a (B, T, F) of the last forward: the weights multiplied into x (0 at padded steps).
  /// Deprecated (CHANGELOG): use attention_map(b, h); removed in the next release.
  const Tensor3<S>& attention() const { return options_.shared() ? shared_ : probs_; }
  /// AttentionMap (core/attention_map.hpp): sequence b's (T, F) weights, step x feature (each step's softmax over
  /// the features; with shared, every kept step holds the shared weights).
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    const Tensor3<S>& a = attention();
    if (a.size() == 0) detail::throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, a.dimension(0));
    return sample_matrix(a, b);
  }
  AttentionAxes attention_axes() const override { return {"step", "feature"}; }

 protected:
  /// x (N=B*T, F) -> z = x W + b (N, F) -> p = softmax rows of z (valid rows; padded rows 0)
  ///
  /// ```unparsed
  ///   -> a = p, or shared: a[b, t] = mean_{t < len_b} p[b, t]  -> y = x * a (N, F)
  /// ```
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    auto X = as_matrix(x);
    ensure_shape(probs_, B, T, F);
    auto P = as_matrix(probs_);
    const bool holes = mask.has_holes();  // step masks: the extent L may hold masked steps
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      // row bits independent of the sample's address (padding): Eigen's own product of a few rows vectorizes
      // by alignment, which with AVX-512 changed valid outputs when a batch was padded
      detail::row_stable_product<S>(P.middleRows(b * T, L), X.middleRows(b * T, L), W_, scratch_);
      if (options_.use_bias()) P.middleRows(b * T, L).rowwise() += b_.transpose();
      for (Index t = 0; t < L; ++t) {
        if (holes && !mask.valid(b, t, T))
          P.row(b * T + t).setZero();
        else
          softmax_row(P.row(b * T + t));
      }
      P.middleRows(b * T + L, T - L).setZero();
    }
    if (options_.shared()) {
      ensure_shape(shared_, B, T, F);
      auto A = as_matrix(shared_);
      for (Index b = 0; b < B; ++b) {
        const Index L = mask.length(b, T);
        A.middleRows(b * T + L, T - L).setZero();
        if (L == 0) continue;
        if (holes) {  // the mean over the kept steps, in step order; masked steps 0
          shared_mean_kept(P, A, mask, b, T);
          continue;
        }
        for (Index f = 0; f < F; ++f) {  // in step order: bits independent of the padding
          S sum(0);
          for (Index t = 0; t < L; ++t) sum += P(b * T + t, f);
          A(b * T, f) = sum / static_cast<S>(L);
        }
        for (Index t = 1; t < L; ++t) A.row(b * T + t) = A.row(b * T);
      }
    }
    auto Y = as_matrix(y);
    Y.array() = X.array() * as_matrix(attention()).array();
    zero_padded(Y, mask, T);  // 0 even when a padded x is not (x * 0 may be nonzero for inf)
  }

  /// dy (N, F) -> dx = dy * a + dz W^T                          (y = x * a, product rule)
  ///
  /// ```unparsed
  ///   da = dy * x;  shared: dp[b, t] = sum_{t' < len_b} da[b, t'] / len_b   (inverts the mean)
  ///   dz = p * (dp - sum_features(p * dp)), padded rows 0      (inverts the softmax)
  ///   dW += x^T dz;  db += sum_rows dz                          (inverts z = x W + b)
  /// ```
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    auto X = as_matrix(x);
    auto DY = as_matrix(dy);
    auto P = as_matrix(probs_);
    ensure_shape(dz_, B * T, F);
    dz_.array() = DY.array() * X.array();  // da
    const bool holes = mask.has_holes();
    if (holes) zero_padded(dz_, mask, T);  // da at masked steps (x may be NaN there) is never used
    if (options_.shared()) {
      ensure_shape(dmean_, F);
      for (Index b = 0; b < B; ++b) {
        const Index L = mask.length(b, T);
        if (L == 0) continue;
        if (holes) {  // inverts the mean over the kept steps
          shared_mean_kept(dz_, dz_, mask, b, T);
          continue;
        }
        for (Index f = 0; f < F; ++f) {
          S sum(0);
          for (Index t = 0; t < L; ++t) sum += dz_(b * T + t, f);
          dmean_(f) = sum / static_cast<S>(L);
        }
        for (Index t = 0; t < L; ++t) dz_.row(b * T + t) = dmean_.transpose();
      }
    }
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      for (Index t = 0; t < L; ++t) {
        const Index r = b * T + t;
        if (holes && !mask.valid(b, t, T)) continue;  // 0 already
        const S dot = detail::ordered_dot(P.row(r), dz_.row(r));
        dz_.row(r).array() = P.row(r).array() * (dz_.row(r).array() - dot);
      }
      dz_.middleRows(b * T + L, T - L).setZero();
    }
    for (Index b = 0; b < B; ++b)  // over the runs of kept steps (lengths: one run [0, L), as before)
      detail::for_each_kept_run(mask, b, T, [&](Index t0, Index n) {
        dW_.noalias() += X.middleRows(b * T + t0, n).transpose() * dz_.middleRows(b * T + t0, n);
      });
    if (options_.use_bias()) db_.noalias() += dz_.colwise().sum().transpose();
    auto DX = as_matrix(dx);
    DX.noalias() = dz_ * W_.transpose();
    DX.array() += DY.array() * as_matrix(attention()).array();
    zero_padded(DX, mask, T);
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_, ParamRole::Bias));
  }

 private:
  // row (F) = softmax(row): scalar exp (bits independent of the address), ordered sum (forward and stream)
  template <class R>
  static void softmax_row(R&& row) {
    const S top = row.maxCoeff();
    for (Index f = 0; f < row.size(); ++f) row(f) = std::exp(row(f) - top);
    row /= detail::ordered_sum(row);
  }

  // Per step (shared=false): x (B*n, F) -> z = x W + b -> p = softmax rows -> y = x * p.
  struct FeatureStream final : PerStepStream<S> {
    const FeatureAttention& layer;
    Matrix<S> z;  // (B*n, F), resized when n grows
    explicit FeatureStream(const FeatureAttention& l) : layer(l) {}
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {
      ConstMatrixMap<S> X = as_matrix(x);
      ensure_shape(z, X.rows(), X.cols());
      z.noalias() = X * layer.W_;
      if (layer.options_.use_bias()) z.rowwise() += layer.b_.transpose();
      for (Index r = 0; r < z.rows(); ++r) softmax_row(z.row(r));
      as_matrix(y).array() = X.array() * z.array();
    }
  };

  template <class M>
  static void zero_padded(M& m, const Mask& mask, Index T) {
    for (Index b = 0; b < mask.batch(); ++b) {
      const Index L = mask.length(b, T);
      m.middleRows(b * T + L, T - L).setZero();
      if (mask.has_holes())
        for (Index t = 0; t < L; ++t)
          if (!mask.valid(b, t, T)) m.row(b * T + t).setZero();
    }
  }
  // Step masks: the rows of sample b's kept steps of `out` set to the mean of those rows of `in` (in step order,
  // divided by their count); masked rows of `out` set to 0 (out may be in).
  template <class MI, class MO>
  void shared_mean_kept(const MI& in, MO& out, const Mask& mask, Index b, Index T) {
    const Index L = mask.length(b, T), F = in.cols(), n = mask.count(b, T);
    Matrix<S>& mean = kept_mean_;
    ensure_shape(mean, 1, F);
    for (Index f = 0; f < F; ++f) {
      S sum(0);
      for (Index t = 0; t < L; ++t)
        if (mask.valid(b, t, T)) sum += in(b * T + t, f);
      mean(0, f) = n > 0 ? sum / static_cast<S>(n) : S(0);
    }
    for (Index t = 0; t < L; ++t) {
      if (mask.valid(b, t, T))
        out.row(b * T + t) = mean.row(0);
      else
        out.row(b * T + t).setZero();
    }
  }

  FeatureAttentionOptions options_;
  Matrix<S> W_, dW_;
  Vector<S> b_, db_;
  Tensor3<S> probs_;                     // p (B, T, F): per-step softmax of the last forward
  Tensor3<S> shared_;                    // a (B, T, F) with shared=true
  Matrix<S> dz_;                         // (B*T, F) gradient of z
  Vector<S> dmean_;                      // (F) gradient of one sample's shared vector
  Matrix<S> kept_mean_;                  // (1, F) step masks: one sample's mean over its kept steps
  detail::RowStableScratch<S> scratch_;  // the rows of a sample left over from the row quantum (forward)
};

}  // namespace seqattn
