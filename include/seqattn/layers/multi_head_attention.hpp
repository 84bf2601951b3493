#pragma once
/// \file
/// MultiHeadAttention: scaled dot-product attention with H heads (Vaswani et al.; torch.nn.MultiheadAttention,
/// keras-multi-head's MultiHeadAttention).
///
/// ```unparsed
///   q = act(xq Wq + bq), k = act(xkv Wk + bk), v = act(xkv Wv + bv)     (act: `activation`, default linear)
///   per head h (column block h of width dh):  A_h = softmax(q_h k_h^T / sqrt(dh)) over the allowed keys
///   ctx = [A_1 v_1, ..., A_H v_H],  y = act_o(ctx Wo + bo)               (act_o: `output_activation`, linear)
/// ```
/// Self-attention (the Layer interface, forward(x, mask, mode)) uses xkv = xq = x. Cross-attention:
///
/// ```unparsed
///   forward(xq, mq, xkv, mkv, mode)  xq (B, Tq, in_features), xkv (B, Tk, key_features), Tq != Tk allowed
///   backward_cross(xq, mq, xkv, mkv, dy)  returns dxq (also query_input_grad()); dxkv is key_input_grad().
///   forward(xq, mq, xk, xv, mkv, mode), backward_cross(xq, mq, xk, xv, mkv, dy): separate key and value inputs
///   (torch's kdim != vdim), xk (B, Tk, key_features), xv (B, Tk, value_features) (same B and Tk: ShapeError naming
///   both), both masked by mkv; dxk is key_input_grad(), dxv value_input_grad(). The four-input forms need
///   value_features == key_features, self-attention and streams value_features == in_features (ConfigError).
/// ```
/// Allowed keys of query t of sample b: s \< len_kv(b), and s \<= t when `causal`, and s >= t - w + 1 with
/// `attention_window` w (a causal sliding window of the w keys [t - w + 1, t]; needs causal). Masked keys get
/// weight exactly 0 (no -inf / -10000 offsets). Query rows that are padding (t >= len_q(b)), or that have no
/// allowed key (a key/value sequence of length 0; with a window in cross-attention, t >= len_kv(b) + w - 1),
/// output exactly 0 and pass no gradient. NOTE: torch outputs bo at padded query rows and NaN for rows without
/// an allowed key; valid rows match torch (a window is torch's attn_mask of s > t or s \< t - w + 1).
/// Cross-attention with causal (and attention_window) aligns query step t with key step t: the same rule.
/// Step masks (core/mask.hpp: holes, left padding) on the queries and, in cross-attention, on the keys/values:
/// a masked key gets weight exactly 0 and its values are never read (the q, k, v rows of masked steps are set to 0
/// after the projections, and the softmax of a query runs over the kept keys of its range only); a masked query
/// row, or a kept one without a kept key in its range, outputs exactly 0 and passes no gradient. Windows and
/// causality count positions: with a window w, query t sees the kept keys among [t - w + 1, t]. Kept outputs
/// are bitwise independent of the values at masked steps (NaN and Inf included). Lengths masks take the path
/// above unchanged (one branch per call).
/// Explicit attention masks (torch's attn_mask): set_attention_mask (boolean, true = not allowed) or
/// set_additive_attention_mask (added to the scores, -inf = not allowed), (Tq, Tk) or (B*H, Tq, Tk), for the
/// following calls until cleared; they narrow the rules above (see set_attention_mask). Not in model files.
/// Shapes: y (B, Tq, output_features); attention() (B*H, Tq, Tk) with row b*H + h = head h of sample b,
/// per head (not averaged), before attention dropout; attention(b, h) is its (Tq, Tk) map. With
/// attention_window the layer stores only the band, attention_band() (B*H, Tq, min(w, Tk)) (column j of row t:
/// key band_key(t, j) = t - w + 1 + j, or j when w >= Tk); attention() then builds the dense map from it on
/// request (zeros outside the windows; B*H*Tq*Tk values, refused with a MemoryError above memory_limit()).
/// Options (MultiHeadAttentionOptions): head_size (default in_features / heads; without it in_features must
/// be divisible by heads), key_features (default in_features), value_features (default key_features; Wv has
/// value_features rows), output_features (default in_features),
/// use_bias (true), causal (false), attention_window (none; w >= 1, only with causal: ConfigError otherwise; any
/// w >= T is plain causal attention, bitwise), attention_dropout (0; inverted dropout on A in Mode::Train only, from
/// the layer's own seeded Rng; identity in Mode::Infer), qkv_dropout (0; see below), activation on q, k, v (elementwise
/// only), output_activation
/// on the output projection (elementwise only, default linear; dead rows still output exactly 0, not act_o(0)),
/// need_weights (true), add_bias_kv (false), add_zero_attn (false), kernel_init (glorot_uniform), bias_init (zeros),
/// seed. keras-multi-head's MultiHeadAttention(activation=a) applies a to q, k, v and the output: set
/// activation(a).output_activation(a).
/// qkv_dropout p (in [0, 1): ConfigError otherwise; model-file key "qkv_dropout"): in Mode::Train, inverted dropout
/// on the projected queries, keys and values, each value independently kept with probability 1 - p and scaled by
/// 1 / (1 - p), after the projection, its bias and `activation` (and after the zeroing of masked steps), before the
/// scores; backward multiplies by the same masks. Identity in Mode::Infer (streams run in Infer: they are unchanged).
/// The masks come from the Rng of attention_dropout (seeded by `seed`, restarted by set_dropout_seed, and at each Train
/// forward inside a RandomScope from the scope: core/random.hpp), drawn before the
/// attention's masks: the values of the valid (inside the length, kept) query rows in order, then of the key rows, then
/// of the value rows; padded and masked rows draw nothing (their dropped values are 0 and are never read), so the
/// draws depend on the masks, not on padding. The bias_k / bias_v rows of add_bias_kv and the zero row of
/// add_zero_attn are learned / constant extra keys, not projections: they are not dropped. With p = 0 (the
/// default) nothing is drawn: outputs, gradients and attention_dropout's masks are bitwise those without the option.
/// Neither torch.nn.MultiheadAttention nor Keras' MultiHeadAttention has this option (their dropout is on A).
/// need_weights=false (torch's need_weights): attention(), attention(b, h), attention_map() and attention_band()
/// throw UsageError, and the layer does not keep the B*H*Tq*Tk probabilities: each block of query rows is computed
/// in a per-thread buffer (about 128K scores), used and dropped, and backward computes it again from q, k (and,
/// with attention dropout, from a copy of the forward's random state, which redraws the same masks; backward then
/// runs on one thread). Memory is O(B T H dh) instead of O(B H Tq Tk) (one sequence of 16384 steps, 4 heads:
/// 4 GiB of float probabilities without it); the price is the score product and softmax done twice in training
/// (see docs/pages/benchmarks.md, "Memory-efficient attention", for times); inference costs nothing more. Outputs and gradients are
/// bitwise those of need_weights=true, and keep every guarantee below. It applies to the dense and causal kernels;
/// with attention_window (whose band is already O(Tq w)), an explicit attention mask, add_bias_kv or add_zero_attn
/// the probabilities are still kept (only the accessors refuse).
/// add_bias_kv / add_zero_attn (torch's): one or two key/value steps appended after the Tk keys, per head: the
/// learned bias_k, bias_v (H*dh, appended after the projections and their activation; init glorot_normal as torch's
/// xavier_normal_, drawn after the other parameters so that those keep their values for a seed), then an all-zero
/// key and value. They are allowed for EVERY valid (kept) query, whatever the lengths, step masks, causal,
/// attention_window and attention mask say (torch pads key_padding_mask and attn_mask with an allowed column), so
/// with them every valid query row has a key and is live: the rule "a row without an allowed key outputs 0" no
/// longer applies (a key/value length 0 gives attention over the extra keys only; add_zero_attn alone then gives
/// y = act_o(bo)); padded and masked query rows still output exactly 0. attention() has Tk + E columns (E = 1 or 2,
/// the extra keys last, as torch), attention_band() min(w, Tk) + E. Calls with them take the plain loops of
/// detail/multi_head_attention_masked.hpp (slower than the tiled kernels); the stream form refuses them.
/// Parameters: Wq (in, H*dh), bq (H*dh), Wk (key_features, H*dh), bk, Wv (value_features, H*dh), bv,
/// Wo (H*dh, output_features), bo (output_features); by name: query_kernel(), query_bias(), key_kernel(),
/// key_bias(), value_kernel(), value_bias(), output_kernel(), output_bias(); with add_bias_kv also bias_k, bias_v
/// (H*dh; bias_k(), bias_v()) after them. torch.nn.MultiheadAttention equivalence:
/// in_proj_weight = [Wq^T; Wk^T; Wv^T] (q/k/v_proj_weight = W^T with kdim/vdim), out_proj.weight = Wo^T.
/// Compute: projections are register-tiled products over all B*T rows with the weights read in place
/// (detail/panel_product.hpp, also the weight gradients); heads are strided column blocks (no permute copies); per
/// (b, h), register-tiled score and context products (detail/head_products.hpp) over the valid (query, key)
/// block only, in cache-sized blocks of query rows (causal: keys up to the block's last row; windowed: strips
/// of query rows times the keys of their windows, O(Tq w dh) per head instead of O(Tq Tk dh)); see
/// detail/multi_head_attention_kernels.hpp. Valid outputs are bitwise independent of padding and of padded
/// values (detail/panel_product.hpp, detail/head_products.hpp).
/// Memory: B*H*Tq*Tk probabilities are kept for backward and attention() (none with need_weights=false; twice
/// with attention dropout; qkv_dropout
/// keeps the dropped q, k, v and one keep byte per value too); with
/// attention_window w, B*H*Tq*min(w, Tk): a (1, 20000, d) batch with w = 64 and 4 heads keeps 20 MB of float
/// probabilities instead of 6.4 GB. cache_bytes() counts them for the memory limit (core/memory_limit.hpp).
/// Padded input values must be finite for finite parameter gradients (they never reach the outputs).
/// Threads: compiled with OpenMP, set_num_threads() threads share the fixed row chunks of the projections and
/// the (b, h) pairs of the attention (one thread for the pairs with attention dropout in Train, so the masks
/// are drawn in order; the qkv_dropout masks are drawn on the calling thread between the projections and the pairs);
/// every piece is computed the same way on any thread and the parameter gradients are summed per chunk, then in chunk
/// order, so every output and gradient is bitwise independent of the thread count (core/threads.hpp). A steady training
/// loop allocates nothing. A layer object is not thread-safe: use one clone() per calling thread.

#include <algorithm>
#include <cmath>
#include <cstdint>
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
#include "seqattn/detail/multi_head_attention_kernels.hpp"
#include "seqattn/detail/multi_head_attention_masked.hpp"
#include "seqattn/detail/multi_head_attention_cross_stream.hpp"
#include "seqattn/detail/multi_head_attention_stream.hpp"
#include "seqattn/detail/parallel.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn {

/// Options of MultiHeadAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct MultiHeadAttentionOptions {
  SEQATTN_ARG(std::optional<Index>, head_size, std::nullopt)  ///< default in_features / heads
  SEQATTN_ARG(std::optional<Index>, key_features, std::nullopt)  ///< default in_features
  SEQATTN_ARG(std::optional<Index>, value_features, std::nullopt)  ///< default key_features (torch's vdim)
  SEQATTN_ARG(std::optional<Index>, output_features, std::nullopt)  ///< default in_features
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Step t attends only to keys s \<= t.
  SEQATTN_ARG(bool, causal, false)
  SEQATTN_ARG(std::optional<Index>, attention_window, std::nullopt)  ///< w >= 1, with causal: keys [t - w + 1, t]
  /// Dropout on the attention weights (Train only).
  SEQATTN_ARG(double, attention_dropout, 0.0)
  /// Inverted dropout on the projected q, k, v (Train only); see the file documentation.
  SEQATTN_ARG(double, qkv_dropout, 0.0)
  SEQATTN_ARG(Activation, activation, Activation::Linear)  ///< on the q, k, v projections
  SEQATTN_ARG(Activation, output_activation, Activation::Linear)  ///< on the output projection: y = act(ctx Wo + bo)
  SEQATTN_ARG(bool, need_weights, true)  ///< false: attention() refuses (UsageError); see the file comment
  SEQATTN_ARG(bool, add_bias_kv, false)  ///< torch: learned bias_k, bias_v appended as one more key/value step
  SEQATTN_ARG(bool, add_zero_attn, false)  ///< torch: an all-zero key/value step appended (after bias_k / bias_v)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("key_dim", o.head_size_);
    v("key_features", o.key_features_);
    v("value_features", o.value_features_);
    v("output_features", o.output_features_);
    v("use_bias", o.use_bias_);
    v("causal", o.causal_);
    v("attention_window", o.attention_window_);
    v("dropout", o.attention_dropout_);
    v("qkv_dropout", o.qkv_dropout_);
    v("activation", o.activation_);
    v("output_activation", o.output_activation_);
    v("need_weights", o.need_weights_);
    v("add_bias_kv", o.add_bias_kv_);
    v("add_zero_attn", o.add_zero_attn_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// Multi-head scaled dot-product attention (Keras MultiHeadAttention, torch.nn.MultiheadAttention), self- or
/// cross-attention; see the file documentation.
template <class S>
class MultiHeadAttention final : public Layer<S>, public AttentionMap<S> {
 public:
  /// `heads` heads over queries of `in_features` features.
  MultiHeadAttention(Index in_features, Index heads, MultiHeadAttentionOptions options = MultiHeadAttentionOptions())
      : Layer<S>(in_features), heads_(heads), options_(options) {
    if (heads <= 0) detail::throw_config("MultiHeadAttention: heads must be positive but got ", heads);
    if (options.head_size()) {
      head_size_ = *options.head_size();
      if (head_size_ <= 0) detail::throw_config(describe(), ": head_size must be positive but got ", head_size_);
    } else {
      if (in_features % heads != 0)
        detail::throw_config(describe(), ": input features ", in_features, " not divisible by heads");
      head_size_ = in_features / heads;
    }
    key_features_ = options.key_features().value_or(in_features);
    out_features_ = options.output_features().value_or(in_features);
    value_features_ = options.value_features().value_or(key_features_);
    if (key_features_ <= 0) detail::throw_config(describe(), ": key_features must be positive but got ", key_features_);
    if (value_features_ <= 0)
      detail::throw_config(describe(), ": value_features must be positive but got ", value_features_);
    if (out_features_ <= 0)
      detail::throw_config(describe(), ": output_features must be positive but got ", out_features_);
    const double rate = options.attention_dropout();
    if (!(rate >= 0.0 && rate < 1.0))
      detail::throw_config(describe(), ": attention_dropout must be in [0, 1) but got ", rate);
    const double qkv_rate = options.qkv_dropout();
    if (!(qkv_rate >= 0.0 && qkv_rate < 1.0))
      detail::throw_config(describe(), ": qkv_dropout must be in [0, 1) but got ", qkv_rate);
    if (!is_elementwise(options.activation()))
      detail::throw_config(describe(), ": activation must be elementwise but got ", to_string(options.activation()));
    if (!is_elementwise(options.output_activation()))
      detail::throw_config(describe(), ": output_activation must be elementwise but got ",
                           to_string(options.output_activation()));
    if (options.attention_window()) {
      if (*options.attention_window() < 1)
        detail::throw_config(describe(), ": attention_window must be at least 1 but got ", *options.attention_window());
      if (!options.causal())
        detail::throw_config(describe(), ": attention_window needs causal (a window of past keys [t - w + 1, t]) ",
                             "but causal is false");
    }

    const Index hd = detail::checked_product(describe(), "heads x head_size", {heads_, head_size_});
    for (const Index rows : {in_features, key_features_, value_features_})
      detail::checked_parameter<S>(describe(), "an input projection", {rows, hd});
    detail::checked_parameter<S>(describe(), "the output projection Wo", {hd, out_features_});
    Rng rng(options.seed().value_or(next_seed()));
    init_projection(Wq_, bq_, dWq_, dbq_, in_features, hd, rng);
    init_projection(Wk_, bk_, dWk_, dbk_, key_features_, hd, rng);
    init_projection(Wv_, bv_, dWv_, dbv_, value_features_, hd, rng);
    init_projection(Wo_, bo_, dWo_, dbo_, hd, out_features_, rng);
    dropout_rng_.reseed(rng.next_u64());
    if (options.add_bias_kv()) {  // torch: xavier_normal_ of (1, 1, H*dh), fans H*dh and H*dh (drawn last: the
      bias_k_.resize(hd);         // other parameters and the dropout seed are those of the layer without them)
      bias_v_.resize(hd);
      Init::glorot_normal().fill(bias_k_, hd, hd, rng);
      Init::glorot_normal().fill(bias_v_, hd, hd, rng);
      dbias_k_ = Vector<S>::Zero(hd);
      dbias_v_ = Vector<S>::Zero(hd);
    }
  }

  using Layer<S>::forward;
  using Layer<S>::backward;

  /// Cross-attention. xq (B, Tq, in_features), xkv (B, Tk, key_features) -> y (B, Tq, output_features).
  const Tensor3<S>& forward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xkv, const Mask& mkv,
                            Mode mode = Mode::Infer) {
    const detail::InUseGuard in_use = this->enter("forward");  // before the key/value pointers are set
    return cross_forward_entered(xq, mq, xkv, nullptr, mkv, mode);
  }
  /// Cross-attention with separate key and value inputs (torch's kdim != vdim): xk (B, Tk, key_features), xv (B, Tk,
  /// value_features), both masked by mkv -> y (B, Tq, output_features).
  const Tensor3<S>& forward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                            const Mask& mkv, Mode mode = Mode::Infer) {
    const detail::InUseGuard in_use = this->enter("forward");
    return cross_forward_entered(xq, mq, xk, &xv, mkv, mode);
  }
  /// Follows forward(xq, mq, xk, xv, mkv) with the same inputs. Returns dxq; dxk is key_input_grad(), dxv
  /// value_input_grad().
  const Tensor3<S>& backward_cross(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                                   const Mask& mkv, const Tensor3<S>& dy) {
    const detail::InUseGuard in_use = this->enter("backward");
    return cross_backward_entered(xq, mq, xk, &xv, mkv, dy);
  }
  /// Follows the cross-attention forward with the same inputs. Returns dxq; dxkv is key_input_grad().
  const Tensor3<S>& backward_cross(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xkv, const Mask& mkv,
                                   const Tensor3<S>& dy) {
    const detail::InUseGuard in_use = this->enter("backward");
    return cross_backward_entered(xq, mq, xkv, nullptr, mkv, dy);
  }
  /// As a graph node (core/layer.hpp, "Several inputs"): inputs (query), (query, keys and values) or (query, keys,
  /// values), the calls above; input_grad(1) is key_input_grad(), input_grad(2) value_input_grad().
  Index max_inputs() const override { return 3; }
  Index input_features(Index i, Index /*count*/) const override {
    return i == 0 ? this->in_features() : i == 1 ? key_features_ : i == 2 ? value_features_ : -1;
  }

  Index out_features() const override { return out_features_; }
  /// Step masks (holes, left padding) for the queries and, in cross-attention, the keys/values.
  bool supports_step_masks() const override { return true; }
  std::string name() const override { return "multi_head_attention"; }
  std::string class_name() const override { return "MultiHeadAttention"; }
  Config config() const override {
    Config c = Config::object();
    c.set("num_heads", heads_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "MultiHeadAttention config");
    const Index heads = r.read_size("num_heads");
    const MultiHeadAttentionOptions options = read_options<MultiHeadAttentionOptions>(r);
    r.finish();
    return std::make_unique<MultiHeadAttention>(in_features, heads, options);
  }
  std::string describe() const override {
    std::string s = "MultiHeadAttention(heads=" + std::to_string(heads_);
    if (options_.head_size()) s += ", head_size=" + std::to_string(*options_.head_size());
    if (options_.key_features()) s += ", key_features=" + std::to_string(*options_.key_features());
    if (options_.value_features()) s += ", value_features=" + std::to_string(*options_.value_features());
    if (options_.output_features()) s += ", output_features=" + std::to_string(*options_.output_features());
    if (options_.causal()) s += ", causal=true";
    if (options_.attention_window()) s += ", attention_window=" + std::to_string(*options_.attention_window());
    if (!options_.use_bias()) s += ", use_bias=false";
    if (options_.attention_dropout() > 0) s += detail::cat(", attention_dropout=", options_.attention_dropout());
    if (options_.qkv_dropout() != 0) s += detail::cat(", qkv_dropout=", options_.qkv_dropout());
    if (options_.activation() != Activation::Linear) s += ", activation=" + to_string(options_.activation());
    if (options_.output_activation() != Activation::Linear)
      s += ", output_activation=" + to_string(options_.output_activation());
    if (!options_.need_weights()) s += ", need_weights=false";
    if (options_.add_bias_kv()) s += ", add_bias_kv=true";
    if (options_.add_zero_attn()) s += ", add_zero_attn=true";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<MultiHeadAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const MultiHeadAttention&>(other); }
  /// Streams with causal self-attention: a key/value cache per stream (detail/multi_head_attention_stream.hpp),
  /// a ring buffer of attention_window rows, or a cache growing up to StreamOptions::max_history without one.
  /// output_activation streams too; a layer with an explicit attention mask set refuses (ConfigError).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (!options_.causal() || key_features_ != this->in_features() || value_features_ != this->in_features() ||
        extra_keys() > 0)
      return Layer<S>::open_stream(batch, options);
    if (has_attention_mask())
      detail::throw_config(describe(), ": cannot be streamed while an attention mask is set (set_attention_mask): a ",
                           "stream takes one step at a time; call clear_attention_mask() first");
    return std::make_unique<detail::MultiHeadAttentionStream<S>>(stream_weights(), batch, options, describe());
  }
  /// Cross-attention streams (2 or 3 inputs, detail/multi_head_attention_cross_stream.hpp): the queries step; the
  /// keys and values are the stream's context (set_context: the memory [, the values]), projected once. causal and
  /// attention_window keep the layer's rule (query step t aligned with key step t); add_bias_kv, add_zero_attn and an
  /// explicit attention mask refuse (ConfigError).
  std::unique_ptr<LayerStream<S>> open_inputs_stream(Index batch, const StreamOptions& options,
                                                    Index inputs) const override {
    if (inputs == 1 || inputs < this->min_inputs() || inputs > this->max_inputs())
      return Layer<S>::open_inputs_stream(batch, options, inputs);
    if (extra_keys() > 0)
      detail::throw_config(describe(), ": cannot be streamed as cross-attention: add_bias_kv and add_zero_attn add "
                           "key/value steps the stream form does not hold");
    if (has_attention_mask())
      detail::throw_config(describe(), ": cannot be streamed while an attention mask is set (set_attention_mask): a ",
                           "stream takes one step at a time; call clear_attention_mask() first");
    if (inputs == 2 && value_features_ != key_features_)
      detail::throw_config(describe(), ": cannot be streamed with 2 inputs: value_features (", value_features_,
                           ") differs from key_features (", key_features_, "); give the values as input 2");
    return std::make_unique<detail::CrossAttentionStream<S>>(stream_weights(), batch, inputs, options_.causal(),
                                                             describe());
  }
  /// What a stream reads: the weights in place and the shape of the heads.
  detail::AttentionWeights<S> stream_weights() const {
    return {&Wq_, &bq_, &Wk_, &bk_, &Wv_, &bv_, &Wo_, &bo_, options_.use_bias(), options_.activation(), heads_,
            head_size_, options_.attention_window().value_or(0), options_.output_activation()};
  }
  std::string stream_refusal() const override {
    if (extra_keys() > 0)
      return "add_bias_kv and add_zero_attn add key/value steps that every query sees: the stream form (a key/value "
             "cache of the past steps) does not support them";
    if (key_features_ != this->in_features() || value_features_ != this->in_features())
      return "key_features or value_features differs from the input features: a cross-attention layer (its keys come "
             "from another sequence) streams with its memory as context: open it with 2 or 3 inputs "
             "(Stream(layer, B, options, 2), or as a Graph node)";
    return "without causal every step attends to the whole sequence, later steps included; set causal (and "
           "attention_window to bound the memory) to stream";
  }

  /// The attention probabilities (B*H, Tq, Tk), or their band (B*H, Tq, min(attention_window, Tk)), twice with
  /// attention dropout (none with need_weights=false on the dense kernels: then one block per thread, not counted),
  /// and the (B*T, H*dh) projections and their gradients (and, with qkv_dropout, the dropped
  /// projections and their keep flags); Tk is the key/value length inside a
  /// cross-attention call, else T. Not counted: the dense map that attention() builds on request when windowed.
  std::size_t cache_bytes(Index B, Index T) const override {
    const Index Tk = kv_ ? kv_->dimension(1) : T, hd = heads_ * head_size_;
    const Index cols = (windowed() ? std::min(*options_.attention_window(), Tk) : Tk) + extra_keys();
    const std::size_t probs = probabilities_kept() ? detail::saturating_bytes(sizeof(S), {B, heads_, T, cols}) : 0;
    std::size_t rows = detail::saturating_bytes(sizeof(S), {B, T + 2 * Tk, 2 * hd});
    if (options_.output_activation() != Activation::Linear)
      rows = detail::saturating_add(rows, detail::saturating_bytes(sizeof(S), {B, T, 2 * out_features_}));
    if (options_.qkv_dropout() > 0)  // the dropped q, k, v and their keep flags
      rows = detail::saturating_add(rows, detail::saturating_bytes(sizeof(S) + 1, {B, T + 2 * Tk, hd}));
    return detail::saturating_add(options_.attention_dropout() > 0 ? detail::saturating_add(probs, probs) : probs, rows);
  }
  std::string memory_remedy(Index, Index) const override {
    if (windowed())
      return "it keeps batch x heads x T x attention_window attention probabilities for backward: use a smaller "
             "attention_window or batch";
    if (!probabilities_kept())
      return "its projections (batch x T x 4 x heads x head_size values) do not fit: use a smaller batch or cut the "
             "sequences into shorter windows";
    return std::string("it keeps batch x heads x T x T attention probabilities for backward: construct it with "
                       "need_weights(false) to compute them again in backward instead (memory linear in T), ") +
           (options_.causal() ? "set attention_window to bound the keys each step sees (memory batch x heads x T x "
                                "window), use a smaller batch or cut the sequences into shorter windows"
                              : "use a smaller batch or cut the sequences into shorter windows (with causal, "
                                "attention_window bounds the keys each step sees: memory batch x heads x T x window)");
  }

  /// The number of heads.
  Index heads() const { return heads_; }
  /// The features of each head's queries, keys and values.
  Index head_size() const { return head_size_; }
  /// The features of the key input.
  Index key_features() const { return key_features_; }
  /// The features of the value input.
  Index value_features() const { return value_features_; }
  /// The options the layer was built with.
  const MultiHeadAttentionOptions& options() const { return options_; }

  ///@{
  /// The weights by name (the parameters Wq, bq, Wk, bk, Wv, bv, Wo, bo of params(); Keras' query/key/value/
  /// output dense kernels and biases). Shapes in the file comment; the biases are empty without use_bias.
  Matrix<S>& query_kernel() { return Wq_; }
  Matrix<S>& key_kernel() { return Wk_; }
  Matrix<S>& value_kernel() { return Wv_; }
  Matrix<S>& output_kernel() { return Wo_; }
  Vector<S>& query_bias() { return bq_; }
  Vector<S>& key_bias() { return bk_; }
  Vector<S>& value_bias() { return bv_; }
  Vector<S>& output_bias() { return bo_; }
  const Matrix<S>& query_kernel() const { return Wq_; }
  const Matrix<S>& key_kernel() const { return Wk_; }
  const Matrix<S>& value_kernel() const { return Wv_; }
  const Matrix<S>& output_kernel() const { return Wo_; }
  const Vector<S>& query_bias() const { return bq_; }
  const Vector<S>& key_bias() const { return bk_; }
  const Vector<S>& value_bias() const { return bv_; }
  const Vector<S>& output_bias() const { return bo_; }
  ///@}
  ///@{
  /// add_bias_kv: the appended key and value (H*dh; empty without add_bias_kv), torch's bias_k and bias_v.
  Vector<S>& bias_k() { return bias_k_; }
  Vector<S>& bias_v() { return bias_v_; }
  const Vector<S>& bias_k() const { return bias_k_; }
  const Vector<S>& bias_v() const { return bias_v_; }
  ///@}
  /// The key/value steps added after the Tk keys: add_bias_kv + add_zero_attn.
  Index extra_keys() const { return Index(options_.add_bias_kv()) + Index(options_.add_zero_attn()); }

  /// Attention probabilities of the last forward, (B*H, Tq, Tk): row b*H + h is head h of sample b. With
  /// attention_window the layer keeps only the band (attention_band()); this dense map, zero outside each
  /// query's window, is then built from it on the first call after a forward (B*H*Tq*Tk values: MemoryError
  /// above memory_limit()) and kept until the next forward.
  /// Deprecated (CHANGELOG): use attention_map(b, h) or attention_band(); removed in the next release.
  const Tensor3<S>& attention() const {
    check_need_weights("attention()");
    if (!windowed()) return attention_;
    if (!dense_ready_) build_dense_attention();
    return dense_;
  }
  /// Head h of sample b, (Tq, Tk) (with attention_window: of the dense map of attention()).
  Eigen::Map<const Matrix<S>> attention(Index b, Index h) const {
    check_need_weights("attention(b, h)");
    const Index B = heads_ > 0 ? attention_.dimension(0) / heads_ : 0;
    if (b < 0 || b >= B || h < 0 || h >= heads_)
      detail::throw_shape(describe(), ": attention(b, h) expected b in [0, ", B, ") and h in [0, ", heads_,
                          ") but got (", b, ", ", h, ")");
    const Tensor3<S>& a = attention();
    const Index Tq = a.dimension(1), Tk = a.dimension(2);
    return Eigen::Map<const Matrix<S>>(a.data() + (b * heads_ + h) * Tq * Tk, Tq, Tk);
  }
  /// AttentionMap (core/attention_map.hpp): a copy of attention(b, h), (Tq, Tk) (Tk + the extra keys of add_bias_kv
  /// / add_zero_attn).
  Index attention_heads() const override { return heads_; }
  Matrix<S> attention_map(Index b, Index h = 0) const override { return attention(b, h); }
  /// The probabilities as stored, (B*H, Tq, W): without attention_window the dense map (W = Tk, column j is key
  /// j); with attention_window w the band, W = min(w, Tk), column j of row t is key band_key(t, j), which is
  /// t - w + 1 + j when w \< Tk, else j (columns of keys outside [0, Tk) or outside the window hold 0). With
  /// add_bias_kv / add_zero_attn, E more columns at the end: the extra keys (key Tk + e of attention()).
  const Tensor3<S>& attention_band() const {
    check_need_weights("attention_band()");
    return attention_;
  }
  /// The key index of column j of row t of attention_band().
  Index band_key(Index t, Index j) const { return window(attention_band_keys_).start(t) + j; }
  /// An explicit attention mask (torch's attn_mask) for the following forward calls, until replaced or cleared:
  /// (Tq, Tk), the same for every sample and head, or (B*H, Tq, Tk), row b*H + h for head h of sample b.
  /// set_attention_mask (boolean): true = NOT allowed (torch's convention). set_additive_attention_mask (float):
  /// added to the scaled scores, -inf = not allowed (NaN and +inf are refused). Either replaces the other. It narrows
  /// the layer's own rules (lengths, step masks, causal, attention_window): a key is attended only when both allow it.
  /// A query row without an allowed key in a head has a zero context in that head; a row without one in every head
  /// outputs exactly 0 and passes no gradient (torch gives NaN). The shapes are checked by each forward (ShapeError naming the
  /// layer and both shapes); backward uses the mask of its forward: setting or clearing one in between is a UsageError.
  /// Not saved in model files (call data, not an option). The calls while a mask is set take plain loops
  /// (detail/multi_head_attention_masked.hpp), slower than the tiled kernels; calls without one are unchanged.
  void set_attention_mask(const Eigen::Tensor<bool, 3, Eigen::RowMajor>& blocked) {
    store_mask_shape(blocked.dimension(0), blocked.dimension(1), blocked.dimension(2), false, "boolean");
    mask_blocked_.assign(blocked.data(), blocked.data() + blocked.size());
    mask_bias_.clear();
  }
  /// A blocking mask (Tq, Tk) for every sample and head.
  void set_attention_mask(const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& blocked) {
    store_mask_shape(1, blocked.rows(), blocked.cols(), true, "boolean");
    mask_blocked_.assign(blocked.data(), blocked.data() + blocked.size());
    mask_bias_.clear();
  }
  /// An additive mask (B*H, Tq, Tk).
  void set_additive_attention_mask(const Tensor3<S>& additive) {
    check_additive(additive.data(), additive.size());
    store_mask_shape(additive.dimension(0), additive.dimension(1), additive.dimension(2), false, "additive");
    mask_bias_.assign(additive.data(), additive.data() + additive.size());
    mask_blocked_.clear();
  }
  /// An additive mask (Tq, Tk) for every sample and head.
  void set_additive_attention_mask(const Matrix<S>& additive) {
    check_additive(additive.data(), additive.size());
    store_mask_shape(1, additive.rows(), additive.cols(), true, "additive");
    mask_bias_.assign(additive.data(), additive.data() + additive.size());
    mask_blocked_.clear();
  }
  /// Removes the attention mask.
  void clear_attention_mask() {
    mask_rows_ = 0;
    mask_blocked_.clear();
    mask_bias_.clear();
    ++mask_version_;
  }
  /// Whether an attention mask is set.
  bool has_attention_mask() const { return mask_rows_ > 0; }

  /// dxq of the last backward or backward_cross, (B, Tq, in_features): input_grad() under the cross-attention name.
  const Tensor3<S>& query_input_grad() const { return this->input_grad(); }
  /// dxkv of the last backward_cross, (B, Tk, key_features).
  const Tensor3<S>& key_input_grad() const { return dkv_; }
  /// dxv of the last backward_cross(xq, mq, xk, xv, mkv, dy), (B, Tk, value_features).
  const Tensor3<S>& value_input_grad() const { return dv_in_; }
  /// Restarts the attention-dropout random sequence (the masks of the following Train forwards).
  void set_dropout_seed(std::uint64_t seed) { dropout_rng_.reseed(seed); }

 protected:
  /// x (B, Tq, in) [, xkv (B, Tk, key_features)] -> y (B, Tq, out). Shapes in the file comment.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    const bool cross = kv_ != nullptr;
    if (!cross && key_features_ != this->in_features())
      detail::throw_shape(describe(), ": self-attention needs key_features == input features (", this->in_features(),
                          ") but key_features is ", key_features_,
                          "; call forward(xq, mq, xkv, mkv, mode) for cross-attention");
    if (!cross && value_features_ != this->in_features())
      detail::throw_config(describe(), ": self-attention needs value_features == input features (", this->in_features(),
                           ") but value_features is ", value_features_,
                           "; call forward(xq, mq, xk, xv, mkv, mode) for cross-attention");
    const Tensor3<S>& xkv = cross ? *kv_ : x;
    const Mask& mkv = cross ? *kv_mask_ : mask;
    const Tensor3<S>& xv = v_in_ ? *v_in_ : xkv;  // separate value input (forward(xq, mq, xk, xv, mkv))
    last_cross_ = cross;
    last_split_ = v_in_ != nullptr;
    kv_dims_ = xkv.dimensions();
    v_dims_ = xv.dimensions();
    const Index B = x.dimension(0), Tq = x.dimension(1), Tk = xkv.dimension(1), H = heads_, dh = head_size_;
    const Index hd = H * dh;
    const bool explicit_mask = has_attention_mask();  // set_attention_mask: the plain loops, once per call
    if (explicit_mask) check_attention_mask(B, Tq, Tk);
    forward_mask_version_ = mask_version_;
    const Index E = extra_keys();
    const bool plain = explicit_mask || E > 0;  // the plain loops (detail/multi_head_attention_masked.hpp)
    // inside a RandomScope (core/random.hpp) the dropout stream restarts from the scope's seed
    if (mode == Mode::Train && (options_.attention_dropout() > 0 || options_.qkv_dropout() > 0))
      reseed_in_scope(dropout_rng_);
    if (E > 0) set_extra_rows(hd);

    // q = act(x Wq + bq) (B*Tq, hd);  k = act(xkv Wk + bk), v = act(xkv Wv + bv) (B*Tk, hd), in row chunks
    const Index N = B * Tq, M = B * Tk;
    const bool act = options_.activation() != Activation::Linear;
    for (Matrix<S>* m : {&q_, act ? &zq_ : nullptr})
      if (m) ensure_shape(*m, N, hd);
    for (Matrix<S>* m : {&k_, &v_, act ? &zk_ : nullptr, act ? &zv_ : nullptr})
      if (m) ensure_shape(*m, M, hd);
    auto X = as_matrix(x);
    auto XKV = as_matrix(xkv);
    auto XV = as_matrix(xv);
    panel_q_.set(Wq_);
    panel_k_.set(Wk_);
    panel_v_.set(Wv_);
    panel_o_.set(Wo_);
    auto project_q = [&](Index c) { project(X, panel_q_, bq_, zq_, q_, c); };
    auto project_kv = [&](Index c) {
      project(XKV, panel_k_, bk_, zk_, k_, c);
      project(XV, panel_v_, bv_, zv_, v_, c);
    };
    if (!cross) {
      const Index chunks = detail::chunk_count(N);
      detail::parallel_for(chunks, detail::parallel_threads(chunks, 6.0 * double(N) * double(Wq_.size())),
                           [&](Index c) {
                             project_q(c);
                             project_kv(c);
                           });
    } else {
      const Index cq = detail::chunk_count(N), ckv = detail::chunk_count(M);
      detail::parallel_for(cq, detail::parallel_threads(cq, 2.0 * double(N) * double(Wq_.size())), project_q);
      detail::parallel_for(ckv, detail::parallel_threads(ckv, 4.0 * double(M) * double(Wk_.size())), project_kv);
    }
    // step masks: the keep flags, and the rows of q, k, v at masked steps set to 0, so that the products over the
    // key ranges never read a value computed from a masked input (kernels: detail::mha::StepKeep)
    const bool steps = mask.has_holes() || mkv.has_holes();
    if (steps) {
      step_flags(mask, mkv, B, Tq, Tk);
      zero_masked_rows(q_, qkeep_);
      zero_masked_rows(k_, kkeep_);
      zero_masked_rows(v_, kkeep_);
    }
    // qkv_dropout (Train): qd = q * keep / (1 - rate), kd, vd likewise, on the valid rows; the attention reads them
    qkv_dropout_active_ = mode == Mode::Train && options_.qkv_dropout() > 0;
    if (qkv_dropout_active_) {
      drop_rows(q_, qd_, qdrop_, mask, B, Tq);
      drop_rows(k_, kd_, kdrop_, mkv, B, Tk);
      drop_rows(v_, vd_, vdrop_, mkv, B, Tk);
    }
    const Matrix<S>& qa = qkv_dropout_active_ ? qd_ : q_;
    const Matrix<S>& ka = qkv_dropout_active_ ? kd_ : k_;
    const Matrix<S>& va = qkv_dropout_active_ ? vd_ : v_;

    // per (b, h): A = softmax(q_h k_h^T / sqrt(dh)), [Ad = dropout(A)], ctx_h = Ad v_h; A and Ad (Tq, W): dense
    // (W = Tk) or, with attention_window, banded (W = min(window, Tk))
    const detail::mha::Window win = window(Tk);
    const Index W = win.cols() + E, wk = win.width;
    attention_band_keys_ = Tk;
    dense_ready_ = false;
    dropout_active_ = mode == Mode::Train && options_.attention_dropout() > 0;
    const bool kept = probabilities_kept();  // need_weights=false: the dense kernels keep none (see the file comment)
    if (kept) {
      ensure_shape(attention_, B * H, Tq, W);
      if (dropout_active_) ensure_shape(dropped_, B * H, Tq, W);
    } else {
      if (attention_.size() > 0) attention_ = Tensor3<S>();  // frees the probabilities of an earlier call
      if (dropped_.size() > 0) dropped_ = Tensor3<S>();
      if (dropout_active_) attention_draws_ = dropout_rng_;  // the backward draws the same masks again
    }
    ensure_shape(ctx_, B * Tq, hd);
    const S scale = S(1) / std::sqrt(S(dh));
    // (b, h) pairs are independent: OpenMP threads share them (dropout draws in order: one thread)
    const double pair_work = 4.0 * double(B * H) * double(Tq) * double(W) * double(dh);
    const int threads = dropout_active_ ? 1 : detail::mha::attention_threads(B * H, pair_work);
    detail::mha::reserve_panels(panels_, threads, mask, mkv, B, Tq, Tk, dh, options_.causal(), false, wk, kept,
                                dropout_active_);
    if (plain) head_live_.resize(static_cast<size_t>(B * H * Tq));
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
#endif
    for (Index bh = 0; bh < B * H; ++bh) {
      const detail::FlushDenormalsScope flush_denormals;  // OpenMP workers too (core/denormals.hpp)
      const Index b = bh / H, h = bh % H;
      const Index lq = mask.length(b, Tq), lk = mkv.length(b, Tk);
      S* p = kept ? attention_.data() + bh * Tq * W : nullptr;  // (Tq, W), or none kept
      HeadMap C = head(ctx_, b, h, Tq);
      detail::mha::AttentionDropout<S> dropout;
      if (dropout_active_)
        dropout = {&dropout_rng_, options_.attention_dropout(), kept ? dropped_.data() + bh * Tq * W : nullptr};
      auto& panels = panels_[static_cast<size_t>(detail::mha::thread_index())];
      detail::mha::StepKeep keep;
      if (steps) keep = {qkeep_.data() + b * Tq, kkeep_.data() + b * Tk};
      if (plain || wk > 0) {  // always kept
        HeadMap P(p, Tq, W, Eigen::OuterStride<>(W));
        if (plain)
          detail::mha::explicit_attention_forward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), P,
                                                     C, lq, lk, options_.causal(), win, scale, dropout, keep,
                                                     explicit_mask_of(bh, Tq, Tk), head_live_.data() + bh * Tq,
                                                     extra_of(h, nullptr, nullptr));
        else
          detail::mha::windowed_attention_forward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), P,
                                                     C, lq, lk, win, scale, dropout, panels, keep);
      } else {
        detail::mha::attention_forward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), p, C, lq, lk,
                                          options_.causal(), scale, dropout, panels, keep);
      }
    }

    // y = act_o(ctx Wo + bo) on live rows, 0 on dead rows (padding, or no allowed key)
    auto Y = as_matrix(y);
    const Activation oact = options_.output_activation();
    if (oact != Activation::Linear) ensure_shape(zo_, N, out_features_);
    const Index chunks = detail::chunk_count(N);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 2.0 * double(N) * double(Wo_.size())),
                         [&](Index c) {
                           const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(N, c);
                           auto Yc = Y.middleRows(r0, n);
                           detail::panel_product<S>(ctx_.data() + r0 * hd, hd, n, panel_o_, Yc.data(), out_features_,
                                                    false);
                           if (options_.use_bias()) Yc.rowwise() += bo_.transpose();
                           if (oact != Activation::Linear) {
                             auto Zc = zo_.middleRows(r0, n);
                             Zc = Yc;
                             activation_forward<S>(oact, Zc, Yc);
                           }
                         });
    if (plain) {  // a row is live when it has an allowed key in some head
      masked_live_.assign(static_cast<size_t>(N), 0);
      for (Index bh = 0; bh < B * H; ++bh)
        for (Index t = 0; t < Tq; ++t)
          masked_live_[static_cast<size_t>((bh / H) * Tq + t)] |= head_live_[static_cast<size_t>(bh * Tq + t)];
    }
    if (steps || plain) {
      const std::vector<std::uint8_t>& live = plain ? masked_live_ : live_;
      for (Index r = 0; r < N; ++r)
        if (!live[static_cast<size_t>(r)]) Y.row(r).setZero();
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index live = live_rows(mask, mkv, b, Tq, Tk);
      if (live < Tq) Y.middleRows(b * Tq + live, Tq - live).setZero();
    }
  }

  /// dy (B, Tq, out) -> dx (B, Tq, in) [and dxkv (B, Tk, key_features)]; adds into every parameter gradient.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool cross = kv_ != nullptr;
    if (cross != last_cross_ || (v_in_ != nullptr) != last_split_)
      detail::throw_shape(describe(), cross ? ": backward_cross called after a self-attention forward"
                                            : ": backward after a cross-attention forward; call backward_cross");
    const Tensor3<S>& xkv = cross ? *kv_ : x;
    const Mask& mkv = cross ? *kv_mask_ : mask;
    const Index B = x.dimension(0), Tq = x.dimension(1), Tk = xkv.dimension(1), H = heads_, dh = head_size_;
    const Index hd = H * dh, N = B * Tq, M = B * Tk;
    if (mask_version_ != forward_mask_version_)
      throw UsageError(describe() +
                       ": the attention mask was set or cleared between forward and backward (backward uses the "
                       "mask of its forward); run the forward again");
    const bool explicit_mask = has_attention_mask();
    if (explicit_mask) check_attention_mask(B, Tq, Tk);
    const Index E = extra_keys();
    const bool plain = explicit_mask || E > 0;

    // dead rows of y are constant 0: their dy is ignored
    const bool steps = mask.has_holes() || mkv.has_holes();
    bool any_dead = false;
    if (steps) step_flags(mask, mkv, B, Tq, Tk);
    if (steps || plain) {
      const std::vector<std::uint8_t>& live = plain ? masked_live_ : live_;
      any_dead = std::find(live.begin(), live.begin() + N, std::uint8_t{0}) != live.begin() + N;
    } else {
      for (Index b = 0; b < B; ++b) any_dead = any_dead || live_rows(mask, mkv, b, Tq, Tk) < Tq;
    }
    if (any_dead) {
      ensure_shape(dy_live_, N, out_features_);
      dy_live_ = as_matrix(dy);
      if (steps || plain) {
        const std::vector<std::uint8_t>& live = plain ? masked_live_ : live_;
        for (Index r = 0; r < N; ++r)
          if (!live[static_cast<size_t>(r)]) dy_live_.row(r).setZero();
      } else {
        for (Index b = 0; b < B; ++b) {
          const Index live = live_rows(mask, mkv, b, Tq, Tk);
          if (live < Tq) dy_live_.middleRows(b * Tq + live, Tq - live).setZero();
        }
      }
    }
    ConstMatrixMap<S> DY_out(any_dead ? dy_live_.data() : dy.data(), N, out_features_);
    // inverts y = act_o(z): dz = dy * act_o'(z) (dead rows: dy is 0 there)
    const Activation oact = options_.output_activation();
    if (oact != Activation::Linear) {
      ensure_shape(dzo_, N, out_features_);
      activation_backward<S>(oact, zo_, as_matrix(this->output()), DY_out, dzo_);
    }
    ConstMatrixMap<S> DY(oact != Activation::Linear ? dzo_.data() : DY_out.data(), N, out_features_);

    // inverts y = ctx Wo + bo:  dWo += ctx^T dy,  dbo += sum_rows dy,  dctx = dy Wo^T  (row chunks; parameter
    // gradients summed per chunk, then in chunk order: detail/parallel.hpp)
    ensure_shape(dctx_, N, hd);
    const bool bias = options_.use_bias();
    gWo_.begin(N, dWo_.data(), hd, out_features_);
    if (bias) gbo_.begin(N, dbo_.data(), 1, out_features_);
    const Index chunks = detail::chunk_count(N);
    transposed_o_.set_transposed(Wo_);
    detail::parallel_for(chunks, detail::parallel_threads(chunks, 4.0 * double(N) * double(Wo_.size())),
                         [&](Index c) {
                           const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(N, c);
                           const auto DYc = DY.middleRows(r0, n);
                           detail::add_weight_gradient<S>(ctx_.data() + r0 * hd, hd, n, hd, DYc.data(),
                                                          out_features_, out_features_, gWo_.target(c).data(),
                                                          out_features_);
                           if (bias) gbo_.target(c).noalias() += DYc.colwise().sum();
                           detail::panel_product<S>(DYc.data(), out_features_, n, transposed_o_,
                                                    dctx_.data() + r0 * hd, hd, false);
                         });
    gWo_.finish();
    if (bias) gbo_.finish();

    // inverts the attention of every (b, h): dq_h, dk_h, dv_h
    ensure_shape(dq_, N, hd);
    ensure_shape(dk_, M, hd);
    ensure_shape(dv_, M, hd);
    const S scale = S(1) / std::sqrt(S(dh));
    const S keep_scale = dropout_active_ ? S(1.0 / (1.0 - options_.attention_dropout())) : S(0);
    const detail::mha::Window win = window(Tk);
    const bool kept = probabilities_kept();
    const Index W = kept ? attention_.dimension(2) : Tk, wk = win.width;  // the forward's storage
    // without kept probabilities, dropout draws its masks again in the forward's order: one thread
    const int threads =
        !kept && dropout_active_
            ? 1
            : detail::mha::attention_threads(B * H, 8.0 * double(B * H) * double(Tq) * double(W) * double(dh));
    detail::mha::reserve_panels(panels_, threads, mask, mkv, B, Tq, Tk, dh, options_.causal(), true, wk, kept,
                                dropout_active_);
    Rng replay = attention_draws_;  // need_weights=false with dropout: the forward's state before its first draw
    if (plain && mask_dp_.size() < static_cast<size_t>(threads)) mask_dp_.resize(static_cast<size_t>(threads));
    if (E > 0) ensure_shape(dextra_, 2 * B * H * E, dh);  // per pair: dK, dV of the extra rows
    if (plain)
      for (std::vector<S>& d : mask_dp_) d.resize(std::max(d.size(), static_cast<size_t>(W)));
    const Matrix<S>& qa = qkv_dropout_active_ ? qd_ : q_;  // the q, k, v the forward's attention read
    const Matrix<S>& ka = qkv_dropout_active_ ? kd_ : k_;
    const Matrix<S>& va = qkv_dropout_active_ ? vd_ : v_;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
#endif
    for (Index bh = 0; bh < B * H; ++bh) {
      const detail::FlushDenormalsScope flush_denormals;  // OpenMP workers too (core/denormals.hpp)
      const Index b = bh / H, h = bh % H;
      const Index lq = mask.length(b, Tq), lk = mkv.length(b, Tk);
      const S* p = kept ? attention_.data() + bh * Tq * W : nullptr;
      const S* pd = kept && dropout_active_ ? dropped_.data() + bh * Tq * W : p;
      HeadMap dQ = head(dq_, b, h, Tq), dK = head(dk_, b, h, Tk), dV = head(dv_, b, h, Tk);
      const ConstHeadMap P(p, Tq, W, Eigen::OuterStride<>(W)), Pd(pd, Tq, W, Eigen::OuterStride<>(W));
      auto& panels = panels_[static_cast<size_t>(detail::mha::thread_index())];
      detail::mha::StepKeep keep;
      if (steps) keep = {qkeep_.data() + b * Tq, kkeep_.data() + b * Tk};
      if (plain) {
        detail::mha::explicit_attention_backward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), P,
                                                    Pd, chead(dctx_, b, h, Tq), dQ, dK, dV, lq, lk, options_.causal(),
                                                    win, scale, keep_scale, keep, explicit_mask_of(bh, Tq, Tk),
                                                    mask_dp_[static_cast<size_t>(detail::mha::thread_index())],
                                                    extra_of(h, E > 0 ? dextra_.data() + bh * E * dh : nullptr,
                                                             E > 0 ? dextra_.data() + (B * H + bh) * E * dh : nullptr));
      } else if (wk > 0)
        detail::mha::windowed_attention_backward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), P,
                                                    Pd, chead(dctx_, b, h, Tq), dQ, dK, dV, lq, lk, win, scale,
                                                    keep_scale, panels);
      else {
        detail::mha::Recompute<S> again;  // used only without kept probabilities
        again.steps = keep;
        if (dropout_active_) again.dropout = {&replay, options_.attention_dropout(), nullptr};
        detail::mha::attention_backward<S>(chead(qa, b, h, Tq), chead(ka, b, h, Tk), chead(va, b, h, Tk), p, pd,
                                           chead(dctx_, b, h, Tq), dQ, dK, dV, lq, lk, options_.causal(), scale,
                                           keep_scale, panels, again);
      }
    }

    // inverts q = act(x Wq + bq), k = act(xkv Wk + bk), v = act(xkv Wv + bv), in row chunks: the activations
    // (in place), dW += x^T dz and db += sum_rows dz (per-chunk partials), dx = dq Wq^T [+ dk Wk^T + dv Wv^T]
    const bool split = v_in_ != nullptr;
    const Tensor3<S>& xv = split ? *v_in_ : xkv;
    auto X = as_matrix(x);
    auto XKV = as_matrix(xkv);
    auto XV = as_matrix(xv);
    auto DX = as_matrix(dx);
    if (cross) ensure_shape(dkv_, B, Tk, key_features_);
    if (split) ensure_shape(dv_in_, B, Tk, value_features_);
    auto DKV = as_matrix(cross ? dkv_ : dx);
    auto DV = as_matrix(split ? dv_in_ : cross ? dkv_ : dx);
    gWq_.begin(N, dWq_.data(), Wq_.rows(), hd);
    gWk_.begin(M, dWk_.data(), Wk_.rows(), hd);
    gWv_.begin(M, dWv_.data(), Wv_.rows(), hd);
    if (bias) {
      gbq_.begin(N, dbq_.data(), 1, hd);
      gbk_.begin(M, dbk_.data(), 1, hd);
      gbv_.begin(M, dbv_.data(), 1, hd);
    }
    transposed_q_.set_transposed(Wq_);
    transposed_k_.set_transposed(Wk_);
    transposed_v_.set_transposed(Wv_);
    // step masks: the rows of q, k, v at masked steps were set to 0 (a constant): their gradient is 0
    const std::uint8_t* qkeep = steps ? qkeep_.data() : nullptr;
    const std::uint8_t* kkeep = steps ? kkeep_.data() : nullptr;
    // qkv_dropout: the keep flags of the forward's draws (null when it drew none)
    const bool qkv_drop = qkv_dropout_active_;
    const S qkv_scale = qkv_drop ? S(1.0 / (1.0 - options_.qkv_dropout())) : S(0);
    auto invert = [&](const ConstMatrixMap<S>& In, const detail::WeightPanel<S>& Wt, const Matrix<S>& z,
                      const Matrix<S>& out, Matrix<S>& dz, detail::GradSum<S>& gW, detail::GradSum<S>& gb,
                      MatrixMap<S>& dIn, bool add, const std::uint8_t* keep, const std::uint8_t* dropkeep, Index c) {
      const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(In.rows(), c);
      auto dZc = dz.middleRows(r0, n);
      if (dropkeep)  // inverts qd = q * keep / (1 - rate): dq = dqd * keep / (1 - rate)
        for (Index r = 0; r < n; ++r) {
          const std::uint8_t* kr = dropkeep + (r0 + r) * hd;
          for (Index d = 0; d < hd; ++d) dZc(r, d) = kr[d] ? dZc(r, d) * qkv_scale : S(0);
        }
      if (options_.activation() != Activation::Linear)
        activation_backward<S>(options_.activation(), z.middleRows(r0, n), out.middleRows(r0, n), dZc, dZc);
      if (keep)
        for (Index r = 0; r < n; ++r)
          if (!keep[r0 + r]) dZc.row(r).setZero();
      detail::add_weight_gradient<S>(In.data() + r0 * In.cols(), In.cols(), n, In.cols(), dZc.data(), hd, hd,
                                     gW.target(c).data(), hd);
      if (bias) gb.target(c).noalias() += dZc.colwise().sum();
      detail::panel_product<S>(dZc.data(), hd, n, Wt, dIn.data() + r0 * dIn.cols(), dIn.cols(), add);
    };
    const std::uint8_t* qdrop = qkv_drop ? qdrop_.data() : nullptr;
    const std::uint8_t* kdrop = qkv_drop ? kdrop_.data() : nullptr;
    const std::uint8_t* vdrop = qkv_drop ? vdrop_.data() : nullptr;
    auto invert_q = [&](Index c) { invert(X, transposed_q_, zq_, q_, dq_, gWq_, gbq_, DX, false, qkeep, qdrop, c); };
    auto invert_kv = [&](Index c) {
      invert(XKV, transposed_k_, zk_, k_, dk_, gWk_, gbk_, DKV, !cross, kkeep, kdrop, c);
      invert(XV, transposed_v_, zv_, v_, dv_, gWv_, gbv_, DV, !split, kkeep, vdrop, c);
    };
    if (!cross) {
      const Index cq = detail::chunk_count(N);
      detail::parallel_for(cq, detail::parallel_threads(cq, 12.0 * double(N) * double(Wq_.size())), [&](Index c) {
        invert_q(c);
        invert_kv(c);
      });
    } else {
      const Index cq = detail::chunk_count(N), ckv = detail::chunk_count(M);
      detail::parallel_for(cq, detail::parallel_threads(cq, 4.0 * double(N) * double(Wq_.size())), invert_q);
      detail::parallel_for(ckv, detail::parallel_threads(ckv, 8.0 * double(M) * double(Wk_.size())), invert_kv);
    }
    for (detail::GradSum<S>* g : {&gWq_, &gWk_, &gWv_}) g->finish();
    if (bias)
      for (detail::GradSum<S>* g : {&gbq_, &gbk_, &gbv_}) g->finish();
    if (options_.add_bias_kv())  // the gradients of the bias_k / bias_v row (extra row 0), samples in order
      for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < H; ++h) {
          const Index bh = b * H + h;
          dbias_k_.segment(h * dh, dh) += dextra_.row(bh * E).transpose();
          dbias_v_.segment(h * dh, dh) += dextra_.row((B * H + bh) * E).transpose();
        }
  }

  void collect_params(ParamList<S>& list) override {
    const bool bias = options_.use_bias();
    list.push_back(matrix_param<S>("Wq", Wq_, &dWq_, ParamRole::Kernel));
    if (bias) list.push_back(vector_param<S>("bq", bq_, &dbq_, ParamRole::Bias));
    list.push_back(matrix_param<S>("Wk", Wk_, &dWk_, ParamRole::Kernel));
    if (bias) list.push_back(vector_param<S>("bk", bk_, &dbk_, ParamRole::Bias));
    list.push_back(matrix_param<S>("Wv", Wv_, &dWv_, ParamRole::Kernel));
    if (bias) list.push_back(vector_param<S>("bv", bv_, &dbv_, ParamRole::Bias));
    list.push_back(matrix_param<S>("Wo", Wo_, &dWo_, ParamRole::Kernel));
    if (bias) list.push_back(vector_param<S>("bo", bo_, &dbo_, ParamRole::Bias));
    if (options_.add_bias_kv()) {
      list.push_back(vector_param<S>("bias_k", bias_k_, &dbias_k_, ParamRole::Bias));
      list.push_back(vector_param<S>("bias_v", bias_v_, &dbias_v_, ParamRole::Bias));
    }
  }

 private:
  using HeadMap = detail::mha::HeadMap<S>;
  using ConstHeadMap = detail::mha::ConstHeadMap<S>;

  // Points the layer at the key/value input of a cross-attention call for its duration.
  // The cross-attention calls after enter(); xv null: one key/value input.
  const Tensor3<S>& cross_forward_entered(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk,
                                          const Tensor3<S>* xv, const Mask& mkv, Mode mode) {
    this->check_input(xq, mq);
    check_key_input(xq, xk, mkv);
    if (xv) {
      check_value_input(xk, *xv);
    } else if (value_features_ != key_features_) {
      detail::throw_config(describe(), ": value_features (", value_features_, ") differs from key_features (",
                           key_features_, "): call forward(xq, mq, xk, xv, mkv, mode) with separate key and value ",
                           "inputs");
    }
    CrossScope scope(*this, xk, mkv, xv);
    return this->forward_entered(xq, mq, mode);
  }
  const Tensor3<S>& cross_backward_entered(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk,
                                           const Tensor3<S>* xv, const Mask& mkv, const Tensor3<S>& dy) {
    if (!last_cross_) detail::throw_shape(describe(), ": backward_cross called after a self-attention forward");
    if (xv) {
      if (xk.dimensions() != kv_dims_ || xv->dimensions() != v_dims_ || !last_split_)
        detail::throw_shape(describe(), ": backward key and value inputs expected ",
                            shape_string(kv_dims_[0], kv_dims_[1], kv_dims_[2]), " and ",
                            last_split_ ? shape_string(v_dims_[0], v_dims_[1], v_dims_[2]) : std::string("none"),
                            " (the inputs of the last forward) but got ", shape_string(xk), " and ",
                            shape_string(*xv));
    } else {
      if (last_split_)
        detail::throw_shape(describe(), ": backward_cross(xq, mq, xkv, mkv, dy) after a forward with separate key ",
                            "and value inputs; call backward_cross(xq, mq, xk, xv, mkv, dy)");
      if (xk.dimensions() != kv_dims_)
        detail::throw_shape(describe(), ": backward key/value input expected ",
                            shape_string(kv_dims_[0], kv_dims_[1], kv_dims_[2]),
                            " (the shape of the last forward) but got ", shape_string(xk));
    }
    mkv.check(xk.dimension(0), xk.dimension(1), describe() + " key/value");
    CrossScope scope(*this, xk, mkv, xv);
    return this->backward_entered(xq, mq, dy);
  }
  // The graph-node calls with 2 or 3 inputs (core/layer.hpp): the cross-attention above.
  const Tensor3<S>& forward_inputs_entered(const LayerInputs<S>& in, Mode mode) override {
    if (in.size() == 3 && !(*in[2].mask == *in[1].mask))
      detail::throw_shape(describe(), ": keys and values share one mask (input 1's); input 2 has another");
    return cross_forward_entered(*in[0].x, *in[0].mask, *in[1].x, in.size() == 3 ? in[2].x : nullptr, *in[1].mask,
                                 mode);
  }
  void backward_inputs_entered(const LayerInputs<S>& in, const Tensor3<S>& dy) override {
    if (in.size() == 3 && !(*in[2].mask == *in[1].mask))
      detail::throw_shape(describe(), ": keys and values share one mask (input 1's); input 2 has another");
    cross_backward_entered(*in[0].x, *in[0].mask, *in[1].x, in.size() == 3 ? in[2].x : nullptr, *in[1].mask, dy);
  }
  const Tensor3<S>& extra_input_grad(Index i) const override {
    if (i == 1 && last_cross_) return dkv_;
    if (i == 2 && last_cross_ && last_split_) return dv_in_;
    detail::throw_usage(describe(), ": input_grad(", i, ") but the last backward had no input ", i);
  }

  struct CrossScope {
    CrossScope(MultiHeadAttention& layer, const Tensor3<S>& xkv, const Mask& mkv, const Tensor3<S>* xv = nullptr)
        : layer_(layer) {
      layer_.kv_ = &xkv;
      layer_.kv_mask_ = &mkv;
      layer_.v_in_ = xv;
    }
    ~CrossScope() {
      layer_.kv_ = nullptr;
      layer_.kv_mask_ = nullptr;
      layer_.v_in_ = nullptr;
    }
    CrossScope(const CrossScope&) = delete;
    CrossScope& operator=(const CrossScope&) = delete;
    MultiHeadAttention& layer_;
  };

  void check_key_input(const Tensor3<S>& xq, const Tensor3<S>& xkv, const Mask& mkv) const {
    if (xkv.dimension(0) != xq.dimension(0))
      detail::throw_shape(describe(), ": key/value batch expected ", xq.dimension(0), " (the query batch) but got ",
                          xkv.dimension(0), " (key/value shape ", shape_string(xkv), ")");
    if (xkv.dimension(1) <= 0)
      detail::throw_shape(describe(), ": key/value input expected at least one step but got ", shape_string(xkv));
    if (xkv.dimension(2) != key_features_)
      detail::throw_shape(describe(), ": key/value features expected ", key_features_, " but got ", xkv.dimension(2),
                          " (key/value shape ", shape_string(xkv), ")");
    mkv.check(xkv.dimension(0), xkv.dimension(1), describe() + " key/value");
  }

  // The value input of forward(xq, mq, xk, xv, mkv): the batch and steps of xk, value_features features.
  void check_value_input(const Tensor3<S>& xk, const Tensor3<S>& xv) const {
    if (xv.dimension(0) != xk.dimension(0) || xv.dimension(1) != xk.dimension(1))
      detail::throw_shape(describe(), ": value input expected the batch and steps of the key input ", shape_string(xk),
                          " but got ", shape_string(xv));
    if (xv.dimension(2) != value_features_)
      detail::throw_shape(describe(), ": value features expected ", value_features_, " but got ", xv.dimension(2),
                          " (value shape ", shape_string(xv), ")");
  }

  void init_projection(Matrix<S>& W, Vector<S>& b, Matrix<S>& dW, Vector<S>& db, Index rows, Index cols, Rng& rng) {
    W.resize(rows, cols);
    options_.kernel_init().fill(W, rows, cols, rng);
    dW = Matrix<S>::Zero(rows, cols);
    if (options_.use_bias()) {
      b.resize(cols);
      options_.bias_init().fill(b, rows, cols, rng);
      db = Vector<S>::Zero(cols);
    }
  }

  // Query rows of sample b that produce an output: the valid ones, none when there is no valid key; with
  // attention_window, those whose window holds a valid key (cross-attention: t < len_kv + window - 1).
  Index live_rows(const Mask& mq, const Mask& mkv, Index b, Index Tq, Index Tk) const {
    const Index lq = mq.length(b, Tq), lk = mkv.length(b, Tk);
    if (windowed())
      return detail::mha::window_live_rows(lq, lk, std::min(*options_.attention_window(), std::max<Index>(lq, 1)));
    return lk > 0 ? lq : 0;
  }

  // Step masks: qkeep_ (B*Tq) and kkeep_ (B*Tk), the keep flags of the queries and the keys, and live_ (B*Tq), the
  // query rows that produce an output: kept, with at least one kept key in their range ([0, len_kv), causal: up to
  // t, windowed: from t - w + 1).
  void step_flags(const Mask& mq, const Mask& mkv, Index B, Index Tq, Index Tk) {
    qkeep_.resize(static_cast<size_t>(B * Tq));
    kkeep_.resize(static_cast<size_t>(B * Tk));
    live_.resize(static_cast<size_t>(B * Tq));
    kept_before_.resize(static_cast<size_t>(Tk + 1));
    const Index w = options_.attention_window().value_or(0);
    for (Index b = 0; b < B; ++b) {
      kept_before_[0] = 0;
      for (Index s = 0; s < Tk; ++s) {
        const bool kept = mkv.valid(b, s, Tk);
        kkeep_[static_cast<size_t>(b * Tk + s)] = kept;
        kept_before_[static_cast<size_t>(s + 1)] = kept_before_[static_cast<size_t>(s)] + kept;
      }
      const Index lk = mkv.length(b, Tk);
      for (Index t = 0; t < Tq; ++t) {
        const bool kept = mq.valid(b, t, Tq);
        const Index hi = options_.causal() ? std::min(t + 1, lk) : lk, lo = w > 0 ? std::max<Index>(0, t - w + 1) : 0;
        qkeep_[static_cast<size_t>(b * Tq + t)] = kept;
        live_[static_cast<size_t>(b * Tq + t)] =
            kept && hi > lo && kept_before_[static_cast<size_t>(hi)] > kept_before_[static_cast<size_t>(lo)];
      }
    }
  }
  // qkv_dropout: out = in * keep / (1 - rate) on the valid rows of in (B*T, hd) (mask.valid: inside the length and
  // kept), keep drawn per value from dropout_rng_ (uniform() >= rate), rows and their values in order; the other
  // rows of out and of keep 0 (never read: padded and masked steps reach no output). keep (B*T*hd) is kept for
  // backward.
  void drop_rows(const Matrix<S>& in, Matrix<S>& out, std::vector<std::uint8_t>& keep, const Mask& mask, Index B,
                 Index T) {
    const Index hd = in.cols();
    const double rate = options_.qkv_dropout();
    const S scale = S(1.0 / (1.0 - rate));
    ensure_shape(out, in.rows(), hd);
    keep.resize(static_cast<size_t>(in.rows() * hd));
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        const Index r = b * T + t;
        std::uint8_t* k = keep.data() + r * hd;
        if (!mask.valid(b, t, T)) {
          out.row(r).setZero();
          std::fill(k, k + hd, std::uint8_t{0});
          continue;
        }
        for (Index d = 0; d < hd; ++d) {
          k[d] = dropout_rng_.uniform() >= rate;
          out(r, d) = k[d] ? in(r, d) * scale : S(0);
        }
      }
  }
  // Rows r of m (B*T, hd) with keep[r] == 0 set to 0.
  static void zero_masked_rows(Matrix<S>& m, const std::vector<std::uint8_t>& keep) {
    for (Index r = 0; r < m.rows(); ++r)
      if (!keep[static_cast<size_t>(r)]) m.row(r).setZero();
  }

  bool windowed() const { return options_.attention_window().has_value(); }

  // set_attention_mask: records the shape (rows 1 for a (Tq, Tk) mask) and starts a new mask version.
  void store_mask_shape(Index rows, Index tq, Index tk, bool two_d, const char* kind) {
    if (rows <= 0 || tq <= 0 || tk <= 0)
      detail::throw_shape(describe(), ": ", kind,
                          " attention mask expected a non-empty (Tq, Tk) or (B*H, Tq, Tk) but got ",
                          two_d ? detail::cat("(", tq, ", ", tk, ")") : shape_string(rows, tq, tk));
    mask_rows_ = rows;
    mask_tq_ = tq;
    mask_tk_ = tk;
    mask_2d_ = two_d;
    ++mask_version_;
  }
  void check_additive(const S* v, Index n) const {
    for (Index i = 0; i < n; ++i)
      if (std::isnan(v[i]) || v[i] == std::numeric_limits<S>::infinity())
        detail::throw_shape(describe(), ": additive attention mask expected finite values or -inf but got ", v[i],
                            " at index ", i);
  }
  // The explicit mask fits the call: (Tq, Tk), or (B*H, Tq, Tk).
  void check_attention_mask(Index B, Index Tq, Index Tk) const {
    const bool rows_ok = mask_2d_ ? true : (mask_rows_ == 1 || mask_rows_ == B * heads_);
    if (rows_ok && mask_tq_ == Tq && mask_tk_ == Tk) return;
    detail::throw_shape(
        describe(), ": attention mask expected (Tq, Tk) = (", Tq, ", ", Tk,
        ") or (B*H, Tq, Tk) = ", shape_string(B * heads_, Tq, Tk), " but got ",
        mask_2d_ ? detail::cat("(", mask_tq_, ", ", mask_tk_, ")") : shape_string(mask_rows_, mask_tq_, mask_tk_));
  }
  // The explicit mask of the pair bh (sample bh / H, head bh % H), (Tq, Tk).
  detail::mha::ExplicitMask<S> explicit_mask_of(Index bh, Index Tq, Index Tk) const {
    const Index offset = mask_rows_ == 1 ? 0 : bh * Tq * Tk;
    detail::mha::ExplicitMask<S> m;
    m.keys = Tk;
    if (!has_attention_mask()) return m;  // the layer's rules only (add_bias_kv / add_zero_attn)
    if (!mask_blocked_.empty())
      m.blocked = mask_blocked_.data() + offset;
    else
      m.bias = mask_bias_.data() + offset;
    return m;
  }
  // extra_rows_ (E, hd): row 0 bias_k with add_bias_kv, then a zero row with add_zero_attn (keys and values).
  void set_extra_rows(Index hd) {
    const Index E = extra_keys();
    ensure_shape(extra_k_, E, hd);
    ensure_shape(extra_v_, E, hd);
    extra_k_.setZero();
    extra_v_.setZero();
    if (options_.add_bias_kv()) {
      extra_k_.row(0) = bias_k_.transpose();
      extra_v_.row(0) = bias_v_.transpose();
    }
  }
  // The extra keys of head h (none without add_bias_kv / add_zero_attn); dk, dv receive their gradients.
  detail::mha::ExtraKeys<S> extra_of(Index h, S* dk, S* dv) const {
    detail::mha::ExtraKeys<S> e;
    e.count = extra_keys();
    if (e.count == 0) return e;
    e.k = extra_k_.data() + h * head_size_;
    e.v = extra_v_.data() + h * head_size_;
    e.stride = extra_k_.cols();
    e.dk = dk;
    e.dv = dv;
    return e;
  }
  // The probabilities are stored for backward and attention(): always but with need_weights=false on the dense and
  // causal kernels (not windowed, no explicit attention mask, no extra keys), which compute them again in backward.
  bool probabilities_kept() const {
    return options_.need_weights() || windowed() || extra_keys() > 0 || has_attention_mask();
  }
  void check_need_weights(const char* call) const {
    if (!options_.need_weights())
      throw UsageError(describe() + ": " + call +
                       " is not available with need_weights=false (the layer does not keep the probabilities); "
                       "construct it with need_weights=true to read them");
  }
  // The band of attention_window over Tk keys (width 0 without a window).
  detail::mha::Window window(Index Tk) const {
    return detail::mha::Window{options_.attention_window().value_or(0), Tk};
  }

  // dense_ (B*H, Tq, Tk) from the band of the last forward (attention()).
  void build_dense_attention() const {
    const Index BH = attention_.dimension(0), Tq = attention_.dimension(1), E = extra_keys();
    const Index W = attention_.dimension(2) - E, Tk = attention_band_keys_;  // band columns, then the E extra keys
    const std::size_t bytes = detail::saturating_bytes(sizeof(S), {BH, Tq, Tk + E});
    if (bytes > memory_limit())
      throw MemoryError(
          detail::cat(describe(), ": attention() builds the dense (B*H, Tq, Tk) = ", shape_string(BH, Tq, Tk),
                      " map of ", format_bytes(bytes), ", above the memory limit of ", format_bytes(memory_limit()),
                      " (seqattn::set_memory_limit); read the band with attention_band() instead"));
    const detail::mha::Window win = window(Tk);
    ensure_shape(dense_, BH, Tq, Tk + E);
    dense_.setZero();
    for (Index bh = 0; bh < BH; ++bh)
      for (Index t = 0; t < Tq; ++t) {
        for (Index j = 0; j < W; ++j) {
          const Index s = win.start(t) + j;
          if (s >= 0 && s < Tk) dense_(bh, t, s) = attention_(bh, t, j);
        }
        for (Index e = 0; e < E; ++e) dense_(bh, t, Tk + e) = attention_(bh, t, W + e);
      }
    dense_ready_ = true;
  }

  // Column block h of sample b of a (B*T, hd) matrix: (T, dh) with row stride hd.
  HeadMap head(Matrix<S>& m, Index b, Index h, Index T) const {
    return HeadMap(m.data() + b * T * m.cols() + h * head_size_, T, head_size_, Eigen::OuterStride<>(m.cols()));
  }
  ConstHeadMap chead(const Matrix<S>& m, Index b, Index h, Index T) const {
    return ConstHeadMap(m.data() + b * T * m.cols() + h * head_size_, T, head_size_, Eigen::OuterStride<>(m.cols()));
  }

  // Rows of chunk c of out = act(z), z = X W + b (out and z already sized).
  void project(const ConstMatrixMap<S>& X, const detail::WeightPanel<S>& W, const Vector<S>& b, Matrix<S>& z,
               Matrix<S>& out, Index c) {
    const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(X.rows(), c);
    detail::mha::projection_forward_rows<S>(X.data(), X.cols(), W, b, options_.use_bias(), options_.activation(), z,
                                            out, r0, n);
  }

  Index heads_, head_size_ = 0, key_features_ = 0, value_features_ = 0, out_features_ = 0;
  MultiHeadAttentionOptions options_;
  Matrix<S> Wq_, Wk_, Wv_, Wo_, dWq_, dWk_, dWv_, dWo_;
  Vector<S> bq_, bk_, bv_, bo_, dbq_, dbk_, dbv_, dbo_;
  Vector<S> bias_k_, bias_v_, dbias_k_, dbias_v_;  // add_bias_kv (H*dh)
  Matrix<S> extra_k_, extra_v_, dextra_;           // (E, hd) extra key/value rows; (2*B*H*E, dh) their gradients
  Rng dropout_rng_;
  // forward caches
  Matrix<S> zq_, zk_, zv_;          // pre-activations (only with an activation)
  Matrix<S> zo_;                    // (B*Tq, out) pre-activation of the output (only with output_activation)
  Matrix<S> q_, k_, v_, ctx_;       // (B*Tq, hd), (B*Tk, hd), (B*Tk, hd), (B*Tq, hd)
  Tensor3<S> attention_, dropped_;  // (B*H, Tq, W) probabilities; after dropout (Train with dropout only)
  bool dropout_active_ = false;
  Rng attention_draws_;  // need_weights=false with attention dropout: the random state before the forward's draws
  Matrix<S> qd_, kd_, vd_;                           // q, k, v after qkv_dropout (Train with qkv_dropout only)
  std::vector<std::uint8_t> qdrop_, kdrop_, vdrop_;  // their keep flags (B*T*hd)
  bool qkv_dropout_active_ = false;
  Index attention_band_keys_ = 0;     // Tk of the last forward
  mutable Tensor3<S> dense_;          // attention() with attention_window: built on request
  mutable bool dense_ready_ = false;  // dense_ holds the last forward's map
  // backward buffers
  Matrix<S> dy_live_, dzo_, dctx_, dq_, dk_, dv_;
  std::vector<detail::head::HeadPanels<S>> panels_;  // per thread: layouts of one head (detail/head_products.hpp)
  Tensor3<S> dkv_;
  // step masks (step_flags)
  std::vector<std::uint8_t> qkeep_, kkeep_, live_;
  std::vector<Index> kept_before_;
  // Wq, Wk, Wv, Wo as panels of the projection products, and their transposes for the input gradients
  // (detail/panel_product.hpp; set by each forward and backward)
  detail::WeightPanel<S> panel_q_, panel_k_, panel_v_, panel_o_;
  detail::WeightPanel<S> transposed_q_, transposed_k_, transposed_v_, transposed_o_;
  detail::GradSum<S> gWq_, gWk_, gWv_, gWo_, gbq_, gbk_, gbv_, gbo_;  // per-chunk partials of the gradients
  // explicit attention mask (set_attention_mask): flags (1 = not allowed) or additive values, (rows, Tq, Tk)
  std::vector<std::uint8_t> mask_blocked_;
  std::vector<S> mask_bias_;
  Index mask_rows_ = 0, mask_tq_ = 0, mask_tk_ = 0;  // rows 0: no mask
  bool mask_2d_ = false;
  std::uint64_t mask_version_ = 0, forward_mask_version_ = 0;  // backward needs the forward's mask
  std::vector<std::uint8_t> head_live_, masked_live_;          // (B*H*Tq) per head, (B*Tq) any head
  std::vector<std::vector<S>> mask_dp_;                        // per thread: dP of one row
  // cross-attention state
  const Tensor3<S>* kv_ = nullptr;
  const Mask* kv_mask_ = nullptr;
  const Tensor3<S>* v_in_ = nullptr;  // the value input of forward(xq, mq, xk, xv, mkv), else the key input
  bool last_cross_ = false, last_split_ = false;
  Eigen::DSizes<Index, 3> kv_dims_{0, 0, 0}, v_dims_{0, 0, 0};
  Tensor3<S> dv_in_;  // value_input_grad()
};

}  // namespace seqattn
