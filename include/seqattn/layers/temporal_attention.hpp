#pragma once
/// \file
/// TemporalAttention: keras-attention-mechanism's attention_3d_block (Permute, Dense(time_steps, softmax),
/// optional mean over features, Permute back, Multiply) for a fixed number of steps T0 = time_steps:
///
/// ```unparsed
///   x (B, T0, F):  z[b, f, :] = x[b, :, f]^T W + b      (W (T0, T0), b (T0): a Dense over the time axis)
///                  p[b, f, :] = softmax over t of z[b, f, :]
///                  a[b, t, f] = p[b, f, t], or with shared=true (SINGLE_ATTENTION_VECTOR)
///                  a[b, t, f] = mean_f' p[b, f', t] (one vector over time shared by every feature)
///                  y[b, t, f] = x[b, t, f] * a[b, t, f]
/// ```
/// Parameters "W" (T0, T0) and "b" (T0) (use_bias=false drops b). Options (TemporalAttentionOptions): shared
/// (false), use_bias (true), kernel_init (glorot_uniform), bias_init (zeros), seed. attention() returns a
/// (B, T0, F) of the last forward (keras-attention-mechanism's 'attention_vec'). The input must have exactly
/// time_steps steps (ShapeError otherwise).
/// Masks: a sample of len_b valid steps uses only its valid steps: z[b, f, t] = sum_{i \< len_b} x[b, i, f] W[i, t]
/// + b[t] for t \< len_b, the softmax runs over those len_b steps, and padded steps have attention 0 and output
/// 0 (so padded values never matter; this equals the unmasked block on the sequence with its padded x set to 0
/// and its padded scores to -inf). A sample of length 0 outputs zeros.
/// Step masks (core/mask.hpp: holes, left padding) follow the same rule with K_b, the kept steps of sample b:
/// z[b, f, t] = sum_{i in K_b} x[b, i, f] W[i, t] + b[t] for t in K_b, the softmax runs over K_b, masked steps
/// have attention 0, output 0 and no gradient (the unmasked block on x with its masked steps set to 0 and their
/// scores to -inf). W and b stay indexed by position (step t uses row and column t of W, not its rank among the
/// kept steps): a kept step means the same at any position whatever is masked around it. Only kept rows of x are
/// read (gathered with W[K_b, K_b] into scratch), so masked values (NaN, Inf too) never matter. Lengths masks take
/// the unchanged lengths path.
/// Compute: per sample, one (F, L) = (L, F)^T (L, L) GEMM forward and two GEMMs backward.
/// Streams: none (every output step reads every step of the window, later ones too): ConfigError.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"

namespace seqattn {

/// Options of TemporalAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct TemporalAttentionOptions {
  SEQATTN_ARG(bool, shared, false)  ///< one attention vector over time shared by all features
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

/// Attention over a fixed number of steps with learned weights per step; see the file documentation.
template <class S>
class TemporalAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// Temporal attention over `time_steps` steps of `in_features` features.
  TemporalAttention(Index in_features, Index time_steps, TemporalAttentionOptions options = TemporalAttentionOptions())
      : Layer<S>(in_features), steps_(time_steps), options_(options) {
    if (time_steps <= 0) detail::throw_config(describe(), ": time_steps must be positive but got ", time_steps);
    detail::checked_parameter<S>(describe(), "kernel W", {time_steps, time_steps});
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(time_steps, time_steps);
    options.kernel_init().fill(W_, time_steps, time_steps, rng);
    dW_ = Matrix<S>::Zero(time_steps, time_steps);
    if (options.use_bias()) {
      b_.resize(time_steps);
      options.bias_init().fill(b_, time_steps, time_steps, rng);
      db_ = Vector<S>::Zero(time_steps);
    }
  }

  Index out_features() const override { return this->in_features(); }
  Index out_time(Index T) const override {
    if (T >= 0 && T != steps_) detail::throw_shape(describe(), ": input steps expected ", steps_, " but got ", T);
    return steps_;
  }
  std::string name() const override { return "temporal_attention"; }
  std::string class_name() const override { return "TemporalAttention"; }
  Config config() const override {
    Config c = Config::object();
    c.set("time_steps", steps_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "TemporalAttention config");
    const Index time_steps = r.read_size("time_steps");
    const TemporalAttentionOptions options = read_options<TemporalAttentionOptions>(r);
    r.finish();
    return std::make_unique<TemporalAttention>(in_features, time_steps, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("TemporalAttention(time_steps=", steps_);
    if (options_.shared()) s += ", shared=true";
    if (!options_.use_bias()) s += ", use_bias=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<TemporalAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const TemporalAttention&>(other); }
  /// Cannot stream: ConfigError from Layer::open_stream with this reason.
  std::string stream_refusal() const override {
    return detail::cat("it works on windows of exactly time_steps=", steps_,
                       " steps as a whole: every step's weights are a softmax over a Dense of all the window's steps, "
                       "later steps included");
  }

  /// The fixed number of steps.
  Index time_steps() const { return steps_; }
  /// The options the layer was built with.
  const TemporalAttentionOptions& options() const { return options_; }
  /// The kernel W (in place).
  Matrix<S>& kernel() { return W_; }
  /// The bias b (in place; empty without use_bias).
  Vector<S>& bias() { return b_; }
  /// a (B, T0, F) of the last forward: the weights multiplied into x (0 at padded steps).
  /// Deprecated (CHANGELOG): use attention_map(b, h); removed in the next release.
  const Tensor3<S>& attention() const { return att_; }
  /// AttentionMap (core/attention_map.hpp): sequence b's (F, T0) weights, feature x step (each feature's softmax over
  /// the steps): attention() of sequence b transposed.
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    if (att_.size() == 0) detail::throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, att_.dimension(0));
    return sample_matrix(att_, b).transpose();
  }
  AttentionAxes attention_axes() const override { return {"feature", "step"}; }
  /// Step masks (holes, left padding): see the header comment.
  bool supports_step_masks() const override { return true; }

 protected:
  /// per sample, L = len_b, X = x[b, :L] (L, F):
  ///
  /// ```unparsed
  ///   z = X^T W[:L, :L] + b[:L] (F, L) -> p = softmax rows of z (F, L)
  ///   -> a^T = p, or shared: every row of a^T = mean over rows of p  -> y[:L] = X * a (L, F); y[L:] = 0
  /// ```
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(probs_, B * F, T);
    ensure_shape(att_, B, T, F);
    probs_.setZero();
    att_.setZero();
    y.setZero();
    if (mask.has_holes()) {
      forward_kept(x, mask, y);
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      if (L == 0) continue;
      auto X = sample_matrix(x, b).topRows(L);
      auto P = probs_.block(b * F, 0, F, L);
      P.noalias() = X.transpose() * W_.topLeftCorner(L, L);
      if (options_.use_bias()) P.rowwise() += b_.head(L).transpose();
      for (Index f = 0; f < F; ++f) {
        auto row = P.row(f);
        row.array() = (row.array() - row.maxCoeff()).exp();
        row /= row.sum();
      }
      auto A = sample_matrix(att_, b).topRows(L);
      if (options_.shared()) {
        A.col(0) = P.colwise().mean().transpose();
        for (Index f = 1; f < F; ++f) A.col(f) = A.col(0);
      } else {
        A = P.transpose();
      }
      sample_matrix(y, b).topRows(L).array() = X.array() * A.array();
    }
  }

  /// per sample: dX = dY * a + W[:L, :L] dz^T                    (y = X * a, product rule; z = X^T W)
  ///
  /// ```unparsed
  ///   da = dY * X (L, F); p-gradient dp = da^T, or shared: dp[f, t] = sum_f' da[t, f'] / F  (inverts the mean)
  ///   dz = p * (dp - sum_t(p * dp)) (F, L)                        (inverts the softmax)
  ///   dW[:L, :L] += X dz;  db[:L] += sum_rows dz                  (inverts z = X^T W + b)
  /// ```
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(dz_, F, T);
    dx.setZero();
    if (mask.has_holes()) {
      backward_kept(x, mask, dy, dx);
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      if (L == 0) continue;
      auto X = sample_matrix(x, b).topRows(L);
      auto DY = sample_matrix(dy, b).topRows(L);
      auto DX = sample_matrix(dx, b).topRows(L);
      auto A = sample_matrix(att_, b).topRows(L);
      auto P = probs_.block(b * F, 0, F, L);
      auto DZ = dz_.leftCols(L);
      if (options_.shared()) {
        DZ.row(0) = (DY.array() * X.array()).rowwise().sum().transpose() / static_cast<S>(F);
        for (Index f = 1; f < F; ++f) DZ.row(f) = DZ.row(0);
      } else {
        DZ = (DY.array() * X.array()).matrix().transpose();
      }
      for (Index f = 0; f < F; ++f) {
        const S dot = P.row(f).dot(DZ.row(f));
        DZ.row(f).array() = P.row(f).array() * (DZ.row(f).array() - dot);
      }
      dW_.topLeftCorner(L, L).noalias() += X * DZ;
      if (options_.use_bias()) db_.head(L).noalias() += DZ.colwise().sum().transpose();
      DX.array() = DY.array() * A.array();
      DX.noalias() += W_.topLeftCorner(L, L) * DZ.transpose();
    }
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_, ParamRole::Bias));
  }

 private:
  // Step masks: sample b's n kept steps, their rows of x (n, F) and W[K, K] (n, n) gathered into scratch.
  Index gather_kept(const Tensor3<S>& t, const Mask& mask, Index b, Matrix<S>& rows) {
    const Index T = t.dimension(1), F = t.dimension(2);
    Index n = 0;
    for (Index s = 0; s < T; ++s)
      if (mask.valid(b, s, T)) kept_[static_cast<size_t>(n++)] = s;
    ensure_shape(rows, n, F);
    for (Index k = 0; k < n; ++k) rows.row(k) = sample_matrix(t, b).row(kept_[static_cast<size_t>(k)]);
    return n;
  }
  void gather_weights(Index n) {
    ensure_shape(w_kept_, n, n);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) w_kept_(i, j) = W_(kept_[static_cast<size_t>(i)], kept_[static_cast<size_t>(j)]);
  }

  // The lengths forward on the kept steps of each sample (probs_ holds p[b, f, :n] compacted, as for lengths).
  void forward_kept(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), F = x.dimension(2);
    kept_.resize(static_cast<size_t>(steps_));
    for (Index b = 0; b < B; ++b) {
      const Index n = gather_kept(x, mask, b, x_kept_);
      if (n == 0) continue;
      gather_weights(n);
      auto P = probs_.block(b * F, 0, F, n);
      P.noalias() = x_kept_.transpose() * w_kept_;
      if (options_.use_bias())
        for (Index k = 0; k < n; ++k) P.col(k).array() += b_(kept_[static_cast<size_t>(k)]);
      for (Index f = 0; f < F; ++f) {
        auto row = P.row(f);
        row.array() = (row.array() - row.maxCoeff()).exp();
        row /= row.sum();
      }
      ensure_shape(a_kept_, n, F);
      if (options_.shared()) {
        a_kept_.col(0) = P.colwise().mean().transpose();
        for (Index f = 1; f < F; ++f) a_kept_.col(f) = a_kept_.col(0);
      } else {
        a_kept_ = P.transpose();
      }
      for (Index k = 0; k < n; ++k) {
        const Index t = kept_[static_cast<size_t>(k)];
        sample_matrix(att_, b).row(t) = a_kept_.row(k);
        sample_matrix(y, b).row(t).array() = x_kept_.row(k).array() * a_kept_.row(k).array();
      }
    }
  }

  // Inverts forward_kept: the lengths backward on the gathered kept steps, scattered back to their positions.
  void backward_kept(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) {
    const Index B = x.dimension(0), F = x.dimension(2);
    kept_.resize(static_cast<size_t>(steps_));
    for (Index b = 0; b < B; ++b) {
      const Index n = gather_kept(x, mask, b, x_kept_);
      if (n == 0) continue;
      gather_kept(dy, mask, b, dy_kept_);
      gather_weights(n);
      const auto P = probs_.block(b * F, 0, F, n);
      auto DZ = dz_.leftCols(n);
      if (options_.shared()) {
        DZ.row(0) = (dy_kept_.array() * x_kept_.array()).rowwise().sum().transpose() / static_cast<S>(F);
        for (Index f = 1; f < F; ++f) DZ.row(f) = DZ.row(0);
      } else {
        DZ = (dy_kept_.array() * x_kept_.array()).matrix().transpose();
      }
      for (Index f = 0; f < F; ++f) {
        const S dot = P.row(f).dot(DZ.row(f));
        DZ.row(f).array() = P.row(f).array() * (DZ.row(f).array() - dot);
      }
      ensure_shape(dw_kept_, n, n);
      dw_kept_.noalias() = x_kept_ * DZ;
      ensure_shape(a_kept_, n, F);
      a_kept_.noalias() = w_kept_ * DZ.transpose();  // (n, F)
      for (Index k = 0; k < n; ++k) {
        const Index t = kept_[static_cast<size_t>(k)];
        for (Index j = 0; j < n; ++j) dW_(t, kept_[static_cast<size_t>(j)]) += dw_kept_(k, j);
        if (options_.use_bias()) db_(t) += DZ.col(k).sum();
        sample_matrix(dx, b).row(t).array() =
            dy_kept_.row(k).array() * sample_matrix(att_, b).row(t).array() + a_kept_.row(k).array();
      }
    }
  }

  Index steps_;
  TemporalAttentionOptions options_;
  Matrix<S> W_, dW_;
  Vector<S> b_, db_;
  Matrix<S> probs_;  // (B*F, T0): rows b*F + f hold p[b, f, :len_b] (0 beyond)
  Tensor3<S> att_;   // a (B, T0, F)
  Matrix<S> dz_;     // (F, T0) scratch: gradient of one sample's z
  // Step masks only: one sample's kept steps, its kept rows of x and dy (n, F), W[K, K] and its gradient (n, n),
  // and its kept weights (forward) or W[K, K] dz^T (backward) (n, F).
  std::vector<Index> kept_;
  Matrix<S> x_kept_, dy_kept_, w_kept_, dw_kept_, a_kept_;
};

}  // namespace seqattn
