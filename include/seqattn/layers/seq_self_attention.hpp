#pragma once
/// \file
/// SeqSelfAttention: keras-self-attention's SeqSelfAttention, with exact masking.
///
/// ```unparsed
///   x (B, T, F) -> y (B, T, F); attention weights A (B, T, T) of the last forward: attention().
///
///   additive:        e[t, s] = Wa . tanh(x_t Wt + x_s Wx + bh) + ba    Wt, Wx (F, U); bh (U); Wa (U, 1); ba (1)
///   multiplicative:  e[t, s] = x_t Wa x_s^T + ba                        Wa (F, F); ba (1); no 1/sqrt(F) scaling
///   A[t, :] = softmax over the allowed keys s of attention_activation(e[t, s]); other keys get exactly 0
///   y_t = sum_s A[t, s] x_s
///
/// ```
/// Allowed keys of query t in a sequence of len_b valid steps (mask), intersected with [0, len_b):
///
/// ```unparsed
///   attention_width w, history_only: [t - w + 1, t];  attention_width w: [t - w/2, t - w/2 + w - 1]
///   (integer division: an even w sees one more step in the past); history_only alone: [0, t]; else all.
/// ```
/// A padded query (t >= len_b) outputs 0 and passes no gradient; a row without allowed keys outputs 0.
/// NOTE: this deliberately differs from keras-self-attention 0.46-0.51, whose padding mask only excluded
/// pairs where BOTH steps are padding (its issue \#41), so valid steps there attended to padded ones. Here a
/// valid output never depends on padded steps, on T or on the other sequences of the batch, bitwise: each
/// sequence is computed alone over its valid steps, in scratch buffers whose addresses do not depend on T.
/// Step masks (core/mask.hpp: holes, left padding): a query attends to the kept steps among its allowed keys
/// (attention_width and history_only count positions, not kept steps: with width w and history_only, query t
/// sees the kept steps of [t - w + 1, t]); masked keys get weight exactly 0, a masked query row outputs 0, passes
/// no gradient and has weights 0 in attention(); a kept query always keeps itself as a key. The rows of x at
/// masked steps are set to 0 in a copy before any product, so their values (NaN, Inf included) never reach a
/// kept output or a gradient. The attention regularizer sums over kept rows and columns only. Lengths masks
/// take the unchanged lengths path (one has_holes() test per call); the step path costs one (T, F) copy of x
/// per sample (and of dy in backward) and computes the scores of masked keys, then drops them.
///
/// Cost: with attention_width w, time O(B T min(w, T) U) and memory O(B T min(w, T)) (scores and weights are
/// stored banded, (B, T, min(w, T)): a width above T costs no more than T, whatever its value); without a width
/// memory O(B T^2). Widths that reach every key are the same band: w >= T with history_only is w = T (keys
/// [0, t]), w >= 2T without it gives every query all the steps (as no width, to rounding: the no-width path
/// uses dense products). The (B, T, T, U) additive tensor is never materialized: Q = x Wt + bh and
/// K = x Wx are register-tiled products over each sample's rows (detail/panel_product.hpp, also their gradients),
/// the tanh is streamed per query over its keys and recomputed in backward.
///
/// attention_regularizer_weight r > 0 adds r * sum_b ||A_b A_b^T - I||_F^2 / B to regularization_loss(),
/// over the valid rows and columns of each sequence. kernel_regularizer (Wt, Wx, Wa) and bias_regularizer
/// (bh, ba) add l1 * sum|w| + l2 * sum w^2 (Keras L1L2): they set the layer's weight rules (core/layer.hpp,
/// set_regularizer of the kernel and bias roles). Backward adds the gradients of all of them.
///
/// Options (keras-self-attention names, defaults): units 32, attention_type Additive, attention_width none,
/// history_only false, attention_activation linear (any elementwise Activation), use_additive_bias true (bh),
/// use_attention_bias true (ba), attention_regularizer_weight 0, kernel_init glorot_normal, bias_init zeros,
/// kernel_regularizer / bias_regularizer {l1 0, l2 0}, seed.
/// Parameters: "Wt", "Wx", "bh", "Wa", "ba" (additive), "Wa", "ba" (multiplicative); disabled biases are absent.
/// Mode is ignored (Train and Infer compute the same). Inference from several threads needs one clone() per
/// thread (forward writes caches), or one stream each.
///
/// Stream form (core/stream.hpp, detail/seq_self_attention_stream.hpp) when the keys end at the query:
/// history_only, or attention_width 1 or 2. State per stream: the past steps' keys x_s Wx (additive) and values
/// x_s (B, C, U) and (B, C, F), a ring of C = attention_width rows, or without a width a cache that grows by
/// doubling up to StreamOptions::max_history steps. Every activation, bias and regularizer streams (the
/// regularizers change training only); the stream keeps no attention weights (attention() is the forward's).

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/panel_product.hpp"
#include "seqattn/detail/seq_self_attention_band.hpp"
#include "seqattn/detail/seq_self_attention_kernels.hpp"
#include "seqattn/detail/seq_self_attention_stream.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn {

/// The score function of SeqSelfAttention.
enum class AttentionType { Additive, Multiplicative };

/// The model-file name of a type ("additive").
inline std::string to_string(AttentionType type) {
  return type == AttentionType::Additive ? "additive" : "multiplicative";
}

/// Options of SeqSelfAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct SeqSelfAttentionOptions {
  using L1L2 = seqattn::L1L2;  ///< core/weight_rules.hpp
  /// Hidden features of the additive score.
  SEQATTN_ARG(Index, units, 32)
  /// Additive or multiplicative score.
  SEQATTN_ARG(AttentionType, attention_type, AttentionType::Additive)
  SEQATTN_ARG(std::optional<Index>, attention_width, std::nullopt)  ///< none: global (or [0, t] with history_only)
  /// Step t attends only to steps up to t.
  SEQATTN_ARG(bool, history_only, false)
  /// Applied to the scores before the softmax (elementwise).
  SEQATTN_ARG(Activation, attention_activation, Activation::Linear)
  /// Adds the bias bh of the additive score.
  SEQATTN_ARG(bool, use_additive_bias, true)
  /// Adds the bias ba of the scores.
  SEQATTN_ARG(bool, use_attention_bias, true)
  /// Weight r of the attention regularizer r * sum_b ||A_b A_b^T - I||_F^2 / B (0: off).
  SEQATTN_ARG(double, attention_regularizer_weight, 0.0)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_normal())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// L1/L2 penalty of the kernels Wt, Wx, Wa.
  SEQATTN_ARG(L1L2, kernel_regularizer, L1L2{})
  /// L1/L2 penalty of the biases bh, ba.
  SEQATTN_ARG(L1L2, bias_regularizer, L1L2{})
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("units", o.units_);
    v("attention_type", o.attention_type_);
    v("attention_width", o.attention_width_);
    v("history_only", o.history_only_);
    v("attention_activation", o.attention_activation_);
    v("use_additive_bias", o.use_additive_bias_);
    v("use_attention_bias", o.use_attention_bias_);
    v("attention_regularizer_weight", o.attention_regularizer_weight_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("kernel_regularizer", o.kernel_regularizer_);
    v("bias_regularizer", o.bias_regularizer_);
    v("seed", o.seed_);
  }
};

/// Model-file names (core/layer_config.hpp): keras-self-attention's attention types.
inline const std::vector<std::pair<AttentionType, const char*>>& config_names(AttentionType) {
  static const std::vector<std::pair<AttentionType, const char*>> names = {
      {AttentionType::Additive, "additive"}, {AttentionType::Multiplicative, "multiplicative"}};
  return names;
}
/// Self-attention over the steps (keras-self-attention SeqSelfAttention), additive or multiplicative, global or
/// within a window; see the file documentation.
template <class S>
class SeqSelfAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// The options type.
  using Options = SeqSelfAttentionOptions;

  /// Self-attention over inputs of `in_features` features.
  explicit SeqSelfAttention(Index in_features, Options options = Options()) : Layer<S>(in_features), options_(options) {
    validate();
    const Index F = in_features, U = options_.units();
    if (additive())
      detail::checked_parameter<S>(describe(), "kernel Wt", {F, U});
    else
      detail::checked_parameter<S>(describe(), "kernel Wa", {F, F});
    Rng rng(options_.seed().value_or(next_seed()));
    if (additive()) {
      init_matrix(Wt_, dWt_, F, U, options_.kernel_init(), rng);
      init_matrix(Wx_, dWx_, F, U, options_.kernel_init(), rng);
      if (options_.use_additive_bias()) init_vector(bh_, dbh_, U, F, options_.bias_init(), rng);
      init_matrix(Wa_, dWa_, U, 1, options_.kernel_init(), rng);
    } else {
      init_matrix(Wa_, dWa_, F, F, options_.kernel_init(), rng);
    }
    if (options_.use_attention_bias()) init_vector(ba_, dba_, 1, additive() ? U : F, options_.bias_init(), rng);
    this->set_regularizer(ParamRole::Kernel, options_.kernel_regularizer());
    if (bh_.size() || ba_.size()) this->set_regularizer(ParamRole::Bias, options_.bias_regularizer());
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "seq_self_attention"; }
  std::string class_name() const override { return "SeqSelfAttention"; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "SeqSelfAttention config");
    const Options options = read_options<Options>(r);
    r.finish();
    return std::make_unique<SeqSelfAttention>(in_features, options);
  }
  std::string describe() const override {
    std::string s = "SeqSelfAttention(" + to_string(options_.attention_type());
    if (additive()) s += ", units=" + std::to_string(options_.units());
    if (options_.attention_width()) s += ", width=" + std::to_string(*options_.attention_width());
    if (options_.history_only()) s += ", history_only";
    if (options_.attention_activation() != Activation::Linear)
      s += ", activation=" + to_string(options_.attention_activation());
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<SeqSelfAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const SeqSelfAttention&>(other); }

  /// The stream form (see the header comment); other configurations read later steps (stream_refusal()).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (!causal()) return Layer<S>::open_stream(batch, options);
    detail::SeqSelfAttentionStreamSpec<S> spec;
    spec.layer = describe();
    spec.additive = additive();
    spec.features = this->in_features();
    spec.units = options_.units();
    spec.width = options_.attention_width().value_or(0);
    spec.activation = options_.attention_activation();
    spec.Wt = &Wt_;
    spec.Wx = &Wx_;
    spec.bh = &bh_;
    spec.Wa = &Wa_;
    spec.ba = &ba_;
    return std::make_unique<detail::SeqSelfAttentionStream<S>>(spec, batch, options);
  }
  std::string stream_refusal() const override {
    if (!options_.attention_width())
      return "history_only=false: every step attends to the whole sequence, later steps included; set "
             "history_only (keys [0, t]) to stream";
    const Index w = *options_.attention_width();
    return "attention_width=" + std::to_string(w) + " without history_only: step t attends to the steps up to t + " +
           std::to_string(w - 1 - w / 2) + "; set history_only (keys [t - " + std::to_string(w - 1) + ", t]) to stream";
  }

  /// Step masks (holes, left padding): see the header comment.
  bool supports_step_masks() const override { return true; }

  /// The options the layer was built with.
  const Options& options() const { return options_; }
  /// True for the additive score.
  bool additive() const { return options_.attention_type() == AttentionType::Additive; }
  /// The hidden features of the additive score.
  Index units() const { return options_.units(); }
  ///@{
  /// Weights (Keras names); bh and ba are empty when their bias is disabled; Wt, Wx empty when multiplicative.
  Matrix<S>& wt() { return Wt_; }
  Matrix<S>& wx() { return Wx_; }
  Vector<S>& bh() { return bh_; }
  Matrix<S>& wa() { return Wa_; }
  Vector<S>& ba() { return ba_; }
  const Matrix<S>& wt() const { return Wt_; }
  const Matrix<S>& wx() const { return Wx_; }
  const Vector<S>& bh() const { return bh_; }
  const Matrix<S>& wa() const { return Wa_; }
  const Vector<S>& ba() const { return ba_; }
  ///@}

  /// Banded weights of the last forward: (B, T, W), column j of row t is key band().start(t) + j; W \<= T.
  /// band().width is the attention_width clamped where larger widths change nothing (detail/..._band.hpp).
  const Tensor3<S>& attention_band() const { return A_; }
  /// The band of keys each query attends to.
  const detail::AttentionBand& band() const { return band_; }
  /// Dense weights of the last forward (B, T, T), for plots (built on request from the banded storage).
  /// Deprecated (CHANGELOG): use attention_map(b, h); removed in the next release.
  Tensor3<S> attention() const {
    const Index B = A_.dimension(0), T = A_.dimension(1), W = A_.dimension(2);
    Tensor3<S> dense(B, T, T);
    dense.setZero();
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t)
        for (Index j = 0; j < W; ++j) {
          const Index s = band_.start(t) + j;
          if (s >= 0 && s < T) dense(b, t, s) = A_(b, t, j);
        }
    return dense;
  }
  /// AttentionMap (core/attention_map.hpp): sequence b's (T, T) weights, query step x key step.
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    if (A_.size() == 0) detail::throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, A_.dimension(0));
    const Index T = A_.dimension(1), W = A_.dimension(2);
    Matrix<S> map = Matrix<S>::Zero(T, T);
    for (Index t = 0; t < T; ++t)
      for (Index j = 0; j < W; ++j) {
        const Index s = band_.start(t) + j;
        if (s >= 0 && s < T) map(t, s) = A_(b, t, j);
      }
    return map;
  }

  /// Scores and probabilities (B, T, W) with W the band's columns for T steps (T without a width), the dense
  /// (T, T) scratch of global attention (twice with the attention regularizer) and the projections.
  std::size_t cache_bytes(Index B, Index T) const override {
    const Index W = detail::AttentionBand::make(options_.attention_width().value_or(0), options_.history_only(), T).cols();
    const Index U = additive() ? options_.units() : this->in_features();
    std::size_t bytes = detail::saturating_bytes(sizeof(S), {2, B, T, W});
    if (!options_.attention_width()) bytes = detail::saturating_add(bytes, detail::saturating_bytes(sizeof(S), {regularized() ? 2 : 1, T, T}));
    return detail::saturating_add(bytes, detail::saturating_bytes(sizeof(S), {2, B, T, U}));
  }
  std::string memory_remedy(Index, Index) const override {
    if (options_.attention_width())
      return "it keeps batch x T x attention_width scores and probabilities: use a smaller attention_width or batch";
    return "global attention keeps batch x T x T scores and probabilities: set attention_width to bound the keys "
           "each step sees (memory batch x T x width), or use a smaller batch or shorter sequences";
  }

  /// The attention regularizer of the last forward (the weight penalties are the base's weight_penalty()).
  S extra_regularization_loss() const override { return attention_penalty_; }

 protected:
  /// x (B, T, F) -> per sample b with L valid steps: [Q = x Wt + bh, K = x Wx  |  P = x Wa] (L rows),
  /// E (T, W) banded scores, A (T, W) = masked softmax(act(E)), y = A x; rows t >= L of y are 0.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), U = options_.units();
    band_ = detail::AttentionBand::make(options_.attention_width().value_or(0), options_.history_only(), T);
    const Index W = band_.cols();
    ensure_shape(E_, B, T, W);
    ensure_shape(A_, B, T, W);
    ensure_shape(proj_a_, B * T, additive() ? U : F);
    if (additive()) ensure_shape(proj_b_, B * T, U);
    if (additive()) ensure_shape(H_, W, U);
    ensure_scratch(T, F);
    if (additive()) {  // the projection weights as panels of detail/panel_product.hpp
      panel_a_.set(Wt_);
      panel_b_.set(Wx_);
    } else {
      panel_a_.set(Wa_);
    }
    const S ba = ba_.size() ? ba_(0) : S(0);
    const Eigen::Map<const Vector<S>> wa(Wa_.data(), Wa_.size());
    attention_penalty_ = S(0);
    const bool holes = mask.has_holes();  // step masks: the kept-step path (once per call)
    if (holes) ensure_shape(x_kept_, T, F);
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);  // step masks: the extent (1 + last kept step)
      const std::uint8_t* keep = holes ? mask.keep_row(b) : nullptr;
      S* E = E_.data() + b * T * W;
      S* A = A_.data() + b * T * W;
      Eigen::Map<Matrix<S>>(E, T, W).setZero();
      Eigen::Map<Matrix<S>>(A, T, W).setZero();
      sample_matrix(y, b).bottomRows(T - L).setZero();
      if (L == 0) continue;
      // The projections write in place: panel_product's rows do not depend on their address. The other
      // products are computed in fixed scratch and copied (see detail/seq_self_attention_kernels.hpp).
      const ConstMatrixMap<S> X(keep ? kept_rows(x, b, L, keep) : x.data() + b * T * F, L, F);
      if (additive()) {
        MatrixMap<S> Q(proj_a_.data() + b * T * U, L, U), K(proj_b_.data() + b * T * U, L, U);
        detail::panel_product<S>(X.data(), F, L, panel_a_, Q.data(), U, false);
        if (bh_.size()) Q.rowwise() += bh_.transpose();  // an addition: exact on any path
        detail::panel_product<S>(X.data(), F, L, panel_b_, K.data(), U, false);
        detail::additive_scores_forward<S>(const_map(Q), const_map(K), wa, ba, L, band_, E, H_, keep);
      } else {
        MatrixMap<S> P(proj_a_.data() + b * T * F, L, F);
        detail::panel_product<S>(X.data(), F, L, panel_a_, P.data(), F, false);
        detail::multiplicative_scores_forward<S>(const_map(P), X, ba, L, band_, E, square_.data());
      }
      detail::attention_rows_forward<S>(options_.attention_activation(), E, A, L, band_, rows_, keep);
      MatrixMap<S> Y(x_scratch_.data(), L, F);
      detail::attention_output_forward<S>(A, X, L, band_, Y);
      sample_matrix(y, b).topRows(L) = Y;
      if (keep) zero_masked_rows(y, b, L, keep);
      if (regularized()) attention_penalty_ += detail::attention_regularizer_forward<S>(A, band_, L, G_.data(), keep);
    }
    attention_penalty_ *= static_cast<S>(options_.attention_regularizer_weight()) / static_cast<S>(B);
  }

  /// dy (B, T, F) -> per sample: dA = dy x^T (+ regularizer), dE = softmax/activation backward,
  /// [dQ, dK -> dWt, dWx, dbh, dx  |  dP -> dWa, dx], dx += A^T dy. Rows t >= L of dx are 0.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), U = options_.units();
    const Index W = band_.cols();
    ensure_shape(dA_, T, W);
    ensure_shape(dproj_a_, T, additive() ? U : F);
    if (additive()) ensure_shape(dproj_b_, T, U);
    ensure_scratch(T, F);
    if (additive()) {  // the transposed projection weights, for the input gradients
      panel_a_.set_transposed(Wt_);
      panel_b_.set_transposed(Wx_);
    } else {
      panel_a_.set_transposed(Wa_);
    }
    Eigen::Map<Vector<S>> dwa(dWa_.data(), dWa_.size());
    const Eigen::Map<const Vector<S>> wa(Wa_.data(), Wa_.size());
    S* dba = dba_.size() ? dba_.data() : nullptr;
    const S reg_scale = static_cast<S>(options_.attention_regularizer_weight()) / static_cast<S>(B);
    const bool holes = mask.has_holes();  // step masks: the kept-step path (once per call)
    if (holes) {
      ensure_shape(x_kept_, T, F);
      ensure_shape(dy_kept_, T, F);
    }
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      const std::uint8_t* keep = holes ? mask.keep_row(b) : nullptr;
      sample_matrix(dx, b).bottomRows(T - L).setZero();
      if (L == 0) continue;
      const S* E = E_.data() + b * T * W;
      const S* A = A_.data() + b * T * W;
      const ConstMatrixMap<S> X(keep ? kept_rows(x, b, L, keep) : x.data() + b * T * F, L, F);
      const ConstMatrixMap<S> dY(keep ? kept_rows(dy, b, L, keep, &dy_kept_) : dy.data() + b * T * F, L, F);
      MatrixMap<S> dX(x_scratch_.data(), L, F);  // accumulated at a fixed address, copied to dx at the end
      dX.setZero();
      detail::attention_output_backward<S>(A, X, dY, L, band_, dA_.data(), dX, square_.data());  // y = A x
      if (regularized())
        detail::attention_regularizer_backward<S>(A, band_, L, reg_scale, G_.data(), square_.data(), dA_.data(), keep);
      detail::attention_rows_backward<S>(options_.attention_activation(), E, A, L, band_, dA_.data(), rows_, keep);
      if (additive()) {
        const ConstMatrixMap<S> Q(proj_a_.data() + b * T * U, L, U), K(proj_b_.data() + b * T * U, L, U);
        MatrixMap<S> dQ(dproj_a_.data(), L, U), dK(dproj_b_.data(), L, U);
        dK.setZero();
        detail::additive_scores_backward<S>(Q, K, wa, dA_.data(), L, band_, H_, dQ, dK, dwa, dba, keep);
        detail::panel_product<S>(dQ.data(), U, L, panel_a_, dX.data(), F, true);  // inverts Q = x Wt + bh
        detail::panel_product<S>(dK.data(), U, L, panel_b_, dX.data(), F, true);  // inverts K = x Wx
        detail::add_weight_gradient<S>(X.data(), F, L, F, dQ.data(), U, U, dWt_.data(), U);
        detail::add_weight_gradient<S>(X.data(), F, L, F, dK.data(), U, U, dWx_.data(), U);
        if (bh_.size()) dbh_.noalias() += dQ.colwise().sum().transpose();
      } else {
        const ConstMatrixMap<S> P(proj_a_.data() + b * T * F, L, F);
        MatrixMap<S> dP(dproj_a_.data(), L, F);
        detail::multiplicative_scores_backward<S>(P, X, dA_.data(), L, band_, dP, dX, dba);
        detail::add_weight_gradient<S>(X.data(), F, L, F, dP.data(), F, F, dWa_.data(), F);  // inverts P = x Wa
        detail::panel_product<S>(dP.data(), F, L, panel_a_, dX.data(), F, true);
      }
      sample_matrix(dx, b).topRows(L) = dX;
      if (keep) zero_masked_rows(dx, b, L, keep);
    }
  }

  void collect_params(ParamList<S>& list) override {
    if (additive()) {
      list.push_back(matrix_param<S>("Wt", Wt_, &dWt_, ParamRole::Kernel));
      list.push_back(matrix_param<S>("Wx", Wx_, &dWx_, ParamRole::Kernel));
      if (bh_.size()) list.push_back(vector_param<S>("bh", bh_, &dbh_, ParamRole::Bias));
    }
    list.push_back(matrix_param<S>("Wa", Wa_, &dWa_, ParamRole::Kernel));
    if (ba_.size()) list.push_back(vector_param<S>("ba", ba_, &dba_, ParamRole::Bias));
  }

 private:
  void validate() const {
    const auto fail = [this](auto&&... parts) { detail::throw_config(describe(), ": ", parts...); };
    if (additive() && options_.units() <= 0) fail("units must be positive but got ", options_.units());
    if (options_.attention_width() && *options_.attention_width() < 1)
      fail("attention_width must be >= 1 (or unset for global attention) but got ", *options_.attention_width());
    if (!is_elementwise(options_.attention_activation()))
      fail("attention_activation must be elementwise but got ", to_string(options_.attention_activation()));
    const double r = options_.attention_regularizer_weight();
    if (!(r >= 0.0) || !std::isfinite(r)) fail("attention_regularizer_weight must be finite and >= 0 but got ", r);
    for (const auto& reg : {options_.kernel_regularizer(), options_.bias_regularizer()})
      if (!(reg.l1 >= 0.0) || !(reg.l2 >= 0.0) || !std::isfinite(reg.l1) || !std::isfinite(reg.l2))
        fail("regularizer l1 and l2 must be finite and >= 0 but got l1=", reg.l1, " l2=", reg.l2);
  }
  bool regularized() const { return options_.attention_regularizer_weight() > 0.0; }
  // Step masks: the first L rows of sample b of t (B, T, F) copied to `out` (x_kept_ by default) with the rows of
  // masked steps set to 0 (assigned: a NaN or Inf there is never read into a product); returns its data.
  const S* kept_rows(const Tensor3<S>& t, Index b, Index L, const std::uint8_t* keep, Matrix<S>* out = nullptr) {
    Matrix<S>& m = out ? *out : x_kept_;
    const Index F = t.dimension(2), T = t.dimension(1);
    const ConstMatrixMap<S> src(t.data() + b * T * F, L, F);
    for (Index s = 0; s < L; ++s) {
      if (keep[s])
        m.row(s) = src.row(s);
      else
        m.row(s).setZero();
    }
    return m.data();
  }
  // Rows of masked steps among the first L of sample b of t set to 0.
  static void zero_masked_rows(Tensor3<S>& t, Index b, Index L, const std::uint8_t* keep) {
    auto m = sample_matrix(t, b);
    for (Index s = 0; s < L; ++s)
      if (!keep[s]) m.row(s).setZero();
  }
  // The keys of step t end at t: history_only, or a width of 1 or 2 ([t - w/2, t - w/2 + w - 1] = [t - w + 1, t]).
  bool causal() const {
    return options_.history_only() || (options_.attention_width() && *options_.attention_width() <= 2);
  }
  void ensure_scratch(Index T, Index F) {
    ensure_shape(x_scratch_, T, F);
    ensure_shape(square_, band_.dense() ? T * T : 0);
    ensure_shape(G_, band_.dense() && regularized() ? T * T : 0);
    rows_.ensure(band_.cols());
  }

  static void init_matrix(Matrix<S>& w, Matrix<S>& g, Index rows, Index cols, const Init& init, Rng& rng) {
    w.resize(rows, cols);
    init.fill(w, rows, cols, rng);
    g = Matrix<S>::Zero(rows, cols);
  }
  static void init_vector(Vector<S>& w, Vector<S>& g, Index n, Index fan_in, const Init& init, Rng& rng) {
    w.resize(n);
    init.fill(w, fan_in, n, rng);
    g = Vector<S>::Zero(n);
  }
  static ConstMatrixMap<S> const_map(const MatrixMap<S>& m) { return ConstMatrixMap<S>(m.data(), m.rows(), m.cols()); }

  Options options_;
  Matrix<S> Wt_, dWt_, Wx_, dWx_, Wa_, dWa_;
  // Wt (Wa when multiplicative) and Wx as product panels; set by each forward, transposed by each backward
  detail::WeightPanel<S> panel_a_, panel_b_;
  Vector<S> bh_, dbh_, ba_, dba_;
  detail::AttentionBand band_;
  // Caches of the last forward: projections (B*T rows: Q or P, and K), banded scores and weights (B, T, W).
  Matrix<S> proj_a_, proj_b_;
  Tensor3<S> E_, A_;
  S attention_penalty_ = S(0);
  // Scratch at addresses independent of T and b: tanh block (W, U), per-sample gradients (T, W) and
  // (T, U or F), projection (T, U or F), y or dx rows (T, F), dense (L, L) products and Gram matrix, rows.
  Matrix<S> H_, dA_, dproj_a_, dproj_b_, x_scratch_;
  // Step masks only: x and dy of one sample with the rows of masked steps set to 0 (T, F), row-major.
  Matrix<S> x_kept_, dy_kept_;
  Vector<S> square_, G_;
  detail::RowScratch<S> rows_;
};

}  // namespace seqattn
