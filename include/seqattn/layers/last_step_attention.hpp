#pragma once
/// \file
/// LastStepAttention: many-to-one attention whose query is the last step (keras-attention's
/// `Attention(units=128, score='luong'|'bahdanau')`, philipperemy/keras-attention).
///
/// ```unparsed
///   q[b]    = x[b, t_last]           the hidden state of the last kept step of sequence b (Keras: x[:, -1, :])
///   luong:    z[b, s] = x[b, s] . (W q[b])                    W (F, F) ("luong_w": Keras' Dense applied to h_s,
///                                                               dotted with h_t)
///   bahdanau: z[b, s] = tanh(q[b] W1 + x[b, s] W2) . v        W1, W2 (F, F), v (F, 1) ("bahdanau_w1" on h_t,
///                                                               "bahdanau_w2" on h_s, "bahdanau_v")
///   a[b, :] = softmax(z[b, :]) over the kept steps s (masked and padded steps get weight exactly 0)
///   c[b]    = sum_s a[b, s] x[b, s]                          the context vector (F)
///   y[b, 0] = tanh([c[b]; q[b]] Wc)                          Wc (2F, units) ("attention_vector")
/// ```
/// Every product is without bias, as in keras-attention. Shapes: x (B, T, F) -> y (B, 1, units); out_mask() is all
/// valid (empty Mask). keras-attention's intermediate tensors (its KERAS_ATTENTION_DEBUG outputs) of the last forward:
/// attention_map(b) the weights a (1, T), scores() z (B, T) before the softmax, context() c (B, F).
/// Masks (lengths and step masks, supports_step_masks()): the query is the LAST KEPT step (Keras takes x[:, -1, :]
/// whatever the mask: with padding that is a padded step, so the results differ; Keras' layer ignores masks); the
/// softmax runs over the kept steps only; masked steps are never read (outputs are bitwise independent of their
/// values, NaN and Inf included) and get dx = 0. A sequence with no kept step outputs zeros (the tanh of a zero
/// vector) and passes no gradient.
/// Options: units (128), score (luong), kernel_init (glorot_uniform, for every kernel), seed (default next_seed()).
/// Differences from Keras: Keras outputs (B, units); here (B, 1, units) (Flatten it).
/// Streams: refused (the query changes at every step, so each step would rescore the whole prefix).

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/masked_softmax.hpp"

namespace seqattn {

/// The score function of LastStepAttention.
enum class AttentionScore { Luong, Bahdanau };

/// The model-file name of a score ("luong").
inline std::string to_string(AttentionScore score) { return score == AttentionScore::Luong ? "luong" : "bahdanau"; }

/// Model-file names (core/layer_config.hpp): keras-attention's score names.
inline const std::vector<std::pair<AttentionScore, const char*>>& config_names(AttentionScore) {
  static const std::vector<std::pair<AttentionScore, const char*>> names = {{AttentionScore::Luong, "luong"},
                                                                            {AttentionScore::Bahdanau, "bahdanau"}};
  return names;
}

/// Options of LastStepAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct LastStepAttentionOptions {
  /// Output features (the size of the attention vector).
  SEQATTN_ARG(Index, units, 128)
  /// Luong (multiplicative) or Bahdanau (additive) score.
  SEQATTN_ARG(AttentionScore, score, AttentionScore::Luong)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("units", o.units_);
    v("score", o.score_);
    v("kernel_initializer", o.kernel_init_);
    v("seed", o.seed_);
  }
};

/// Attention with the last step as the query (keras-attention's Attention): (B, T, F) -> (B, 1, units); see
/// the file documentation.
template <class S>
class LastStepAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// Last-step attention over inputs of `in_features` features.
  explicit LastStepAttention(Index in_features, LastStepAttentionOptions options = LastStepAttentionOptions())
      : Layer<S>(in_features), options_(options) {
    const Index F = in_features, U = options.units();
    if (U <= 0) detail::throw_config("LastStepAttention: units expected a positive integer but got ", U);
    detail::checked_parameter<S>(describe(), "kernel attention_vector", {2 * F, U});
    Rng rng(options.seed().value_or(next_seed()));
    if (luong()) {
      detail::checked_parameter<S>(describe(), "kernel luong_w", {F, F});
      init(W_, dW_, F, F, rng);
    } else {
      detail::checked_parameter<S>(describe(), "kernel bahdanau_w1", {F, F});
      init(W_, dW_, F, F, rng);    // W1, on the query
      init(W2_, dW2_, F, F, rng);  // W2, on every step
      init(v_, dv_, F, 1, rng);
    }
    init(Wc_, dWc_, 2 * F, U, rng);
  }

  Index out_features() const override { return options_.units(); }
  Index out_time(Index /*T*/) const override { return 1; }
  Mask out_mask(const Mask& /*mask*/, Index /*T*/) const override { return Mask(); }
  std::string name() const override { return "last_step_attention"; }
  std::string class_name() const override { return "LastStepAttention"; }
  bool supports_step_masks() const override { return true; }
  std::string stream_refusal() const override {
    return "its query is the last step, so every new step would rescore the whole prefix";
  }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "LastStepAttention config");
    const LastStepAttentionOptions options = read_options<LastStepAttentionOptions>(r);
    r.finish();
    return std::make_unique<LastStepAttention>(in_features, options);
  }
  std::string describe() const override {
    return "LastStepAttention(" + to_string(options_.score()) + ", units=" + std::to_string(options_.units()) + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<LastStepAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const LastStepAttention&>(other); }

  /// The options the layer was built with.
  const LastStepAttentionOptions& options() const { return options_; }
  /// luong: W (F, F); bahdanau: W1 (F, F) (on the query).
  Matrix<S>& kernel() { return W_; }
  Matrix<S>& kernel_w2() { return W2_; }  ///< bahdanau only: W2 (F, F), on every step
  Matrix<S>& kernel_v() { return v_; }  ///< bahdanau only: v (F, 1)
  Matrix<S>& output_kernel() { return Wc_; }  ///< Wc (2F, units)
  /// Weights of the last forward, (B, T); 0 at masked and padded steps and for sequences with no kept step.
  /// Deprecated (CHANGELOG): use attention_map(b, h); removed in the next release.
  const Matrix<S>& attention() const { return a_; }
  /// Scores z of the last forward before the softmax, (B, T); 0 at masked and padded steps (which get weight 0).
  const Matrix<S>& scores() const { return z_; }
  /// Context vectors c = sum_s a_s x_s of the last forward, (B, F) (keras-attention's "context_vector"); zeros for
  /// sequences with no kept step.
  auto context() const { return pre_.leftCols(pre_.cols() / 2); }
  /// AttentionMap (core/attention_map.hpp): sequence b's (1, T) weights, the pool x step.
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    if (a_.size() == 0) detail::throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, a_.rows());
    return a_.row(b);
  }
  AttentionAxes attention_axes() const override { return {"pool", "step"}; }

 protected:
  /// x (B, T, F) -> z, a (B, T) -> c (B, F) -> y (B, 1, units)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(a_, B, T);
    ensure_shape(z_, B, T);
    ensure_shape(pre_, B, 2 * F);
    ensure_shape(u_, B, F);
    ensure_shape(yc_, B, options_.units());
    ensure_shape(ak_, T);
    if (!luong()) ensure_shape(E_, B * T, F);
    MatrixMap<S> Y = as_matrix(y);  // (B, units)
    a_.setZero();
    z_.setZero();
    for (Index b = 0; b < B; ++b) {
      const Index K = gather_kept(mask, b, T);
      auto X = sample_matrix(x, b);  // (T, F)
      if (K == 0) {                  // nothing to attend to: zeros (tanh(0))
        pre_.row(b).setZero();
        Y.row(b).setZero();
        yc_.row(b).setZero();
        continue;
      }
      const Index last = kept_[static_cast<size_t>(K - 1)];
      // q = x_last
      pre_.row(b).tail(F) = X.row(last);
      if (luong()) {
        // u = W q;  z_s = x_s . u
        u_.row(b).noalias() = X.row(last) * W_.transpose();
        for (Index k = 0; k < K; ++k) ak_(k) = dot(X.row(kept(k)), u_.row(b), F);
      } else {
        // p = q W1;  e_s = tanh(x_s W2 + p);  z_s = e_s . v
        u_.row(b).noalias() = X.row(last) * W_;
        for (Index k = 0; k < K; ++k) {
          auto e = E_.row(b * T + kept(k));
          e.noalias() = X.row(kept(k)) * W2_;
          e = (e + u_.row(b)).array().tanh().matrix();
          ak_(k) = dot(e, v_.col(0).transpose(), F);
        }
      }
      for (Index k = 0; k < K; ++k) z_(b, kept(k)) = ak_(k);
      // a = softmax(z) over the kept steps
      detail::masked_softmax_row(ak_.data(), K, K);
      for (Index k = 0; k < K; ++k) a_(b, kept(k)) = ak_(k);
      // c = sum_s a_s x_s
      auto c = pre_.row(b).head(F);
      c.setZero();
      for (Index k = 0; k < K; ++k) c.noalias() += ak_(k) * X.row(kept(k));
      // y = tanh([c; q] Wc)
      Y.row(b).noalias() = pre_.row(b) * Wc_;
      Y.row(b) = Y.row(b).array().tanh().matrix();
      yc_.row(b) = Y.row(b);
    }
  }

  /// dy (B, 1, units) -> dx (B, T, F); every kernel gradient added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), U = options_.units();
    ensure_shape(dh_, 1, U);
    ensure_shape(dpre_, 1, 2 * F);
    ensure_shape(du_, 1, F);
    ensure_shape(de_, 1, F);
    ensure_shape(ak_, T);
    ensure_shape(dz_, T);
    ConstMatrixMap<S> DY = as_matrix(dy);  // (B, units)
    for (Index b = 0; b < B; ++b) {
      const Index K = gather_kept(mask, b, T);
      auto X = sample_matrix(x, b);    // (T, F)
      auto DX = sample_matrix(dx, b);  // (T, F)
      DX.setZero();
      if (K == 0) continue;
      const Index last = kept_[static_cast<size_t>(K - 1)];
      // inverts y = tanh(pre Wc):  dh = dy (1 - y^2),  dWc += pre^T dh,  dpre = dh Wc^T
      dh_ = (DY.row(b).array() * (S(1) - yc_.row(b).array().square())).matrix();
      dWc_.noalias() += pre_.row(b).transpose() * dh_;
      dpre_.noalias() = dh_ * Wc_.transpose();
      // inverts c = sum_s a_s x_s:  da_s = dc . x_s,  dx_s = a_s dc
      for (Index k = 0; k < K; ++k) {
        ak_(k) = a_(b, kept(k));
        dz_(k) = dot(X.row(kept(k)), dpre_.row(0).head(F), F);
        DX.row(kept(k)).noalias() = ak_(k) * dpre_.row(0).head(F);
      }
      // inverts a = softmax(z): dz = a * (da - a . da)
      detail::masked_softmax_row_backward(ak_.data(), dz_.data(), K, K, S(1));
      // the query's own gradient (from [c; q])
      DX.row(last) += dpre_.row(0).tail(F);
      if (luong()) {
        // inverts z_s = x_s . u:  dx_s += dz_s u,  du = sum_s dz_s x_s
        du_.setZero();
        for (Index k = 0; k < K; ++k) {
          DX.row(kept(k)).noalias() += dz_(k) * u_.row(b);
          du_.noalias() += dz_(k) * X.row(kept(k));
        }
        // inverts u = W q:  dW += du^T q,  dq += du W
        dW_.noalias() += du_.transpose() * X.row(last);
        DX.row(last).noalias() += du_ * W_;
      } else {
        // inverts z_s = e_s . v and e_s = tanh(x_s W2 + p):  dv += dz_s e_s,  dg = dz_s v (1 - e_s^2),
        // dW2 += x_s^T dg,  dx_s += dg W2^T,  dp = sum_s dg
        du_.setZero();
        for (Index k = 0; k < K; ++k) {
          const auto e = E_.row(b * T + kept(k));
          dv_.col(0).transpose() += dz_(k) * e;
          de_ = (dz_(k) * v_.col(0).transpose().array() * (S(1) - e.array().square())).matrix();
          dW2_.noalias() += X.row(kept(k)).transpose() * de_;
          DX.row(kept(k)).noalias() += de_ * W2_.transpose();
          du_ += de_;
        }
        // inverts p = q W1:  dW1 += q^T dp,  dq += dp W1^T
        dW_.noalias() += X.row(last).transpose() * du_;
        DX.row(last).noalias() += du_ * W_.transpose();
      }
    }
  }

  void collect_params(ParamList<S>& list) override {
    if (luong()) {
      list.push_back(matrix_param<S>("luong_w", W_, &dW_, ParamRole::Kernel));
    } else {
      list.push_back(matrix_param<S>("bahdanau_w1", W_, &dW_, ParamRole::Kernel));
      list.push_back(matrix_param<S>("bahdanau_w2", W2_, &dW2_, ParamRole::Kernel));
      list.push_back(matrix_param<S>("bahdanau_v", v_, &dv_, ParamRole::Kernel));
    }
    list.push_back(matrix_param<S>("attention_vector", Wc_, &dWc_, ParamRole::Kernel));
  }

 private:
  bool luong() const { return options_.score() == AttentionScore::Luong; }
  void init(Matrix<S>& w, Matrix<S>& dw, Index rows, Index cols, Rng& rng) {
    w.resize(rows, cols);
    options_.kernel_init().fill(w, rows, cols, rng);
    dw = Matrix<S>::Zero(rows, cols);
  }
  Index kept(Index k) const { return kept_[static_cast<size_t>(k)]; }
  // The kept steps of sample b in order (kept_); returns their count.
  Index gather_kept(const Mask& mask, Index b, Index T) {
    kept_.clear();
    if (!mask.has_holes()) {
      for (Index t = 0; t < mask.length(b, T); ++t) kept_.push_back(t);
    } else {
      for (Index t = 0; t < T; ++t)
        if (mask.valid(b, t, T)) kept_.push_back(t);
    }
    return static_cast<Index>(kept_.size());
  }
  // a . b over F entries, in feature order (the same bits whatever the other steps hold).
  template <class A, class Bv>
  static S dot(const A& a, const Bv& b, Index F) {
    S s(0);
    for (Index f = 0; f < F; ++f) s += a(f) * b(f);
    return s;
  }

  LastStepAttentionOptions options_;
  Matrix<S> W_, dW_;               // luong: W (F, F); bahdanau: W1 (F, F)
  Matrix<S> W2_, dW2_;             // bahdanau: W2 (F, F)
  Matrix<S> v_, dv_;               // bahdanau: v (F, 1)
  Matrix<S> Wc_, dWc_;             // (2F, units)
  Matrix<S> a_;                    // (B, T) attention weights of the last forward
  Matrix<S> z_;                    // (B, T) their scores before the softmax (0 at masked steps)
  Matrix<S> pre_;                  // (B, 2F) [c; q] of the last forward
  Matrix<S> u_;                    // (B, F) luong: W q; bahdanau: q W1
  Matrix<S> E_;                    // (B*T, F) bahdanau: tanh(x_s W2 + q W1) at kept steps
  Matrix<S> yc_;                   // (B, units) the output of the last forward
  Matrix<S> dh_, dpre_, du_, de_;  // backward scratch rows
  Vector<S> ak_, dz_;              // (T) the kept steps' weights and their gradients
  std::vector<Index> kept_;        // the kept steps of one sample
};

}  // namespace seqattn
