#pragma once
/// \file
/// SeqWeightedAttention: attention pooling over time (keras-self-attention's SeqWeightedAttention).
///
/// ```unparsed
///   z[b, t] = x[b, t] W + b          one score per step
///   a[b, :] = softmax(z[b, :]) over the valid steps t < len_b (padded steps get weight exactly 0)
///   y[b, 0] = sum_t a[b, t] x[b, t]
/// ```
/// Shapes: x (B, T, F) -> y (B, 1, F); out_mask() is all valid (empty Mask). A sequence of length 0 outputs
/// zeros (no NaN) and passes no gradient. attention() (B, T) holds the weights of the last forward.
/// Parameters: W (F, 1), b (1,) (Keras names). b shifts every score of a sequence equally, so it never
/// changes the output (softmax is shift invariant) and its gradient is 0 up to rounding; it is kept for
/// Keras weight compatibility (use_bias(false) drops it).
/// Differences from Keras: Keras subtracts 10000 from masked scores and adds K.epsilon() to the softmax
/// denominator; here masked steps are excluded exactly. Keras outputs (B, F); here (B, 1, F) (Flatten it).
/// Keras' return_attention=True output is attention() here.
/// Options: use_bias (true), kernel_init (glorot_uniform), bias_init (zeros), seed (default next_seed()).
/// Valid outputs are bitwise independent of padding (fixed-order loops, detail/masked_softmax.hpp).
/// Step masks (holes, left padding; supports_step_masks()): the softmax runs over the kept steps only; masked steps
/// get weight exactly 0, are never read and get dx = 0. A sequence with no kept step outputs zeros.
/// Stream (core/stream.hpp; pools_time()): each step outputs the pooling of the prefix that ends there, from a
/// running softmax: the largest score m so far, l = sum_t exp(z_t - m) and v = sum_t exp(z_t - m) x_t (both
/// rescaled by exp(m_old - m) when a step raises m), y = v / l. State "max_score" (B, 1, 1), "exp_sum"
/// (B, 1, 1), "weighted_sum" (B, 1, F). Equal to the forward up to rounding (the forward normalizes by the
/// maximum of the whole prefix): |stream - predict| / (1 + |predict|) below 1e-15 in double and 3e-7 in float
/// over 200 steps of random models. A NaN score (or +Inf, whose weight exp(inf - inf) is NaN in the forward)
/// makes the outputs NaN from that step on, as in the forward.

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/masked_softmax.hpp"

namespace seqattn {

/// Options of SeqWeightedAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct SeqWeightedAttentionOptions {
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

/// Attention pooling over time with a learned score per step (keras-self-attention SeqWeightedAttention):
/// (B, T, F) -> (B, 1, F); see the file documentation.
template <class S>
class SeqWeightedAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// Weighted attention over inputs of `in_features` features.
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
  std::string class_name() const override { return "SeqWeightedAttention"; }
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "SeqWeightedAttention config");
    const SeqWeightedAttentionOptions options = read_options<SeqWeightedAttentionOptions>(r);
    r.finish();
    return std::make_unique<SeqWeightedAttention>(in_features, options);
  }
  std::string describe() const override {
    return options_.use_bias() ? "SeqWeightedAttention()" : "SeqWeightedAttention(use_bias=false)";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<SeqWeightedAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const SeqWeightedAttention&>(other); }
  /// The running softmax over the prefix (see the header comment).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<WeightedStream>(*this, batch);
  }

  /// The options the layer was built with.
  const SeqWeightedAttentionOptions& options() const { return options_; }
  /// The kernel W (in place).
  Matrix<S>& kernel() { return W_; }
  /// The bias b (in place; empty without use_bias).
  Vector<S>& bias() { return b_; }
  /// Weights of the last forward, (B, T); 0 at padded steps and for sequences of length 0.
  /// Deprecated (CHANGELOG): use attention_map(b, h); removed in the next release.
  const Matrix<S>& attention() const { return a_; }
  /// AttentionMap (core/attention_map.hpp): sequence b's (1, T) weights, the pool x step.
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    if (a_.size() == 0) detail::throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, a_.rows());
    return a_.row(b);
  }
  AttentionAxes attention_axes() const override { return {"pool", "step"}; }

 protected:
  /// x (B, T, F) -> z (B, T) -> a (B, T) -> y (B, 1, F)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(a_, B, T);
    const S bias = options_.use_bias() ? b_(0) : S(0);
    if (mask.has_holes()) return forward_steps(x, mask, bias, y);
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      auto X = sample_matrix(x, b);  // (T, F)
      // z_t = x_t W + b, in a fixed order (the same bits whatever the padding)
      for (Index t = 0; t < L; ++t) a_(b, t) = score(X.row(t), F, bias);
      detail::masked_softmax_row(&a_(b, 0), L, T);  // a = softmax over t < L, 0 elsewhere
      auto yb = sample_matrix(y, b);                // (1, F)
      yb.setZero();
      for (Index t = 0; t < L; ++t) yb.noalias() += a_(b, t) * X.row(t);  // y = sum_t a_t x_t
    }
  }

  /// dy (B, 1, F) -> dx (B, T, F); dW, db added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    ensure_shape(dz_, T);
    if (mask.has_holes()) return backward_steps(x, mask, dy, dx);
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
    list.push_back(matrix_param<S>("W", W_, &dW_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_, ParamRole::Bias));
  }

 private:
  // Step masks: the kept steps of sample b gathered in order (kept_, K of them) run through the lengths code's
  // softmax as a sequence of K steps; a_ is 0 at the masked steps.
  Index gather_kept(const Mask& mask, Index b, Index T) {
    kept_.clear();
    for (Index t = 0; t < T; ++t)
      if (mask.valid(b, t, T)) kept_.push_back(t);
    return static_cast<Index>(kept_.size());
  }
  void forward_steps(const Tensor3<S>& x, const Mask& mask, S bias, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(ak_, T);
    for (Index b = 0; b < B; ++b) {
      const Index K = gather_kept(mask, b, T);
      auto X = sample_matrix(x, b);  // (T, F)
      for (Index k = 0; k < K; ++k) ak_(k) = score(X.row(kept_[k]), F, bias);
      detail::masked_softmax_row(ak_.data(), K, K);
      a_.row(b).setZero();
      for (Index k = 0; k < K; ++k) a_(b, kept_[k]) = ak_(k);
      auto yb = sample_matrix(y, b);  // (1, F)
      yb.setZero();
      for (Index k = 0; k < K; ++k) yb.noalias() += ak_(k) * X.row(kept_[k]);  // y = sum_t a_t x_t
    }
  }
  void backward_steps(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) {
    const Index B = x.dimension(0), T = x.dimension(1);
    ensure_shape(ak_, T);
    for (Index b = 0; b < B; ++b) {
      const Index K = gather_kept(mask, b, T);
      auto X = sample_matrix(x, b);    // (T, F)
      auto DX = sample_matrix(dx, b);  // (T, F)
      auto DY = sample_matrix(dy, b);  // (1, F)
      DX.setZero();
      if (K == 0) continue;
      for (Index k = 0; k < K; ++k) {  // da_k = dy . x_k,  dx_k = a_k dy
        ak_(k) = a_(b, kept_[k]);
        dz_(k) = (X.row(kept_[k]) * DY.transpose())(0, 0);
        DX.row(kept_[k]) = ak_(k) * DY;
      }
      detail::masked_softmax_row_backward(ak_.data(), dz_.data(), K, K, S(1));
      for (Index k = 0; k < K; ++k) {  // dx_k += dz_k W^T,  dW += x_k^T dz_k,  db += dz_k
        DX.row(kept_[k]).noalias() += dz_(k) * W_.transpose();
        dW_.noalias() += X.row(kept_[k]).transpose() * dz_(k);
      }
      if (options_.use_bias()) db_(0) += dz_.head(K).sum();
    }
  }

  // z = x W + bias for one step x (F), in feature order (forward and stream).
  template <class XR>
  S score(const XR& x, Index F, S bias) const {
    S z(0);
    for (Index f = 0; f < F; ++f) z += x(f) * W_(f, 0);
    return z + bias;
  }

  // The running softmax of the header comment over the B*n new rows, one step after the other per stream.
  struct WeightedStream final : LayerStream<S> {
    const SeqWeightedAttention& layer;
    Tensor3<S> max_score, exp_sum, weighted_sum;  // (B, 1, 1), (B, 1, 1), (B, 1, F)
    WeightedStream(const SeqWeightedAttention& l, Index batch) : layer(l) {
      detail::zero_state(max_score, batch, 1, 1);
      detail::zero_state(exp_sum, batch, 1, 1);
      detail::zero_state(weighted_sum, batch, 1, l.in_features());
    }
    // x (B, n, F) -> y (B, n, F): step i of stream b outputs the pooling of its prefix up to start[b] + i
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), F = x.dimension(2);
      const S bias = layer.options_.use_bias() ? layer.b_(0) : S(0);
      ConstMatrixMap<S> X = as_matrix(x);
      MatrixMap<S> Y = as_matrix(y);
      MatrixMap<S> V = as_matrix(weighted_sum);  // (B, F)
      for (Index b = 0; b < B; ++b) {
        S& m = max_score(b, 0, 0);
        S& l = exp_sum(b, 0, 0);
        for (Index i = 0; i < n; ++i) {
          const Index r = b * n + i;
          const S z = layer.score(X.row(r), F, bias);
          // the step's weight relative to itself: 1, NaN for a NaN or infinite score (forward: exp(inf - inf))
          const S self = std::isfinite(z) ? S(1) : std::numeric_limits<S>::quiet_NaN();
          if (start[static_cast<size_t>(b)] + i == 0) {
            m = z;
            l = self;
            V.row(b) = self * X.row(r);
          } else if (z > m) {  // a new maximum: rescale the sums to it
            const S rescale = std::exp(m - z);
            m = z;
            l = l * rescale + self;
            V.row(b) = V.row(b) * rescale + self * X.row(r);
          } else {
            const S e = std::exp(z - m);
            l += e;
            V.row(b) += e * X.row(r);
          }
          Y.row(r) = V.row(b) / l;
        }
      }
    }
    void reset(Index b) override {
      detail::zero_stream(max_score, b);
      detail::zero_stream(exp_sum, b);
      detail::zero_stream(weighted_sum, b);
    }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      list.push_back(StreamStateTensor<S>{prefix + "max_score", &max_score, false, 0});
      list.push_back(StreamStateTensor<S>{prefix + "exp_sum", &exp_sum, false, 0});
      list.push_back(StreamStateTensor<S>{prefix + "weighted_sum", &weighted_sum, false, 0});
    }
    bool pools_time() const override { return true; }
  };

  SeqWeightedAttentionOptions options_;
  Matrix<S> W_, dW_;  // (F, 1)
  Vector<S> b_, db_;  // (1)
  Matrix<S> a_;       // (B, T) attention weights of the last forward
  Vector<S> dz_;      // (T) backward scratch
  Vector<S> ak_;      // (T) step masks: scores, then weights, of the kept steps
  std::vector<Index> kept_;  // step masks: the kept steps of one sample
};

}  // namespace seqattn
