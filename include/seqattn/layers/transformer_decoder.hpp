#pragma once
/// \file
/// TransformerDecoderBlock: masked (causal) multi-head self-attention over the targets, multi-head cross-attention
/// from the targets to a memory (the encoder's output), and a feed-forward network, each with dropout and a residual
/// connection, with post-norm (Vaswani et al., torch's default) or pre-norm (norm_first):
///
/// ```unparsed
///   post-norm:  h1 = LN1(x + Drop(SelfMHA(x)))
///               h2 = LN2(h1 + Drop(CrossMHA(h1, memory)))
///               y  = LN3(h2 + Drop(FFN(h2)))
///   pre-norm:   h1 = x + Drop(SelfMHA(LN1(x)))
///               h2 = h1 + Drop(CrossMHA(LN2(h1), memory))
///               y  = h2 + Drop(FFN(LN3(h2)))
///   FFN(z) = Dense2(Drop(act(Dense1(z))))          Dense1: (d, ff_dim), act GELU (exact), GELUTanh or ReLU;
///                                                  Dense2: (ff_dim, d)
/// ```
/// Equals torch.nn.TransformerDecoderLayer(d, heads, ff_dim, dropout, activation, layer_norm_eps, batch_first=True,
/// norm_first, bias) with self_attn / multihead_attn in_proj_weight = [Wq^T; Wk^T; Wv^T], linear1.weight = ffn1.W^T,
/// linear2.weight = ffn2.W^T, norm1/2/3 = ln1/2/3, called with tgt_mask = the causal mask (tgt_is_causal) when
/// `causal`, tgt_key_padding_mask and memory_key_padding_mask from the masks
/// (tests/reference/gen_transformer_decoder.py checks it).
/// Calls (the cross-attention API of MultiHeadAttention; the single-input forward(x, mask) and backward(x, mask, dy)
/// of Layer throw ConfigError: the block needs its memory). As a Graph node (model/graph.hpp) it takes the inputs
/// (targets, memory): forward(LayerInputs) and backward(LayerInputs, dy) are the calls below, input_grad(1) is
/// memory_grad():
///
/// ```unparsed
///   forward(x, mx, memory, mm, mode)   x (B, T, d) targets masked by mx, memory (B, Tm, memory_features) masked by mm
///                                      -> y (B, T, d)
///   backward(x, mx, memory, mm, dy)    follows that forward with the same inputs; returns dx (B, T, d), OVERWRITES
///                                      memory_grad() (B, Tm, memory_features), ADDS INTO the parameter gradients
/// ```
/// Masks: the self-attention gives padded / masked target steps weight 0 (and, with `causal`, later steps); the
/// cross-attention gives padded / masked memory steps weight exactly 0 (their values are never read: memory_grad()
/// is 0 there). Padded target steps never change valid outputs. Step masks (holes, left padding) on the targets and
/// on the memory are honored (supports_step_masks()) once every sub-layer honors them. A memory sequence with no
/// kept step gives a cross-attention output of 0 at its targets (torch: NaN).
/// Options (TransformerDecoderOptions): dropout (on the three sub-block outputs and the FFN hidden layer),
/// attention_dropout (on the attention weights of both attentions; torch's `dropout` also drops them: set both to
/// torch's value to train as torch does), qkv_dropout (MultiHeadAttention's, both
/// attentions; not in torch), activation, norm_first, causal (default TRUE: the self-attention of step t sees the
/// targets s \<= t, torch's tgt_is_causal), attention_window (with causal: the self-attention sees [t - w + 1, t]),
/// layer_norm_eps, use_bias (false: torch's bias=False; no attention, FFN biases nor LayerNorm beta), memory_features
/// (default d: the features of the memory, the key/value input width of the cross-attention; torch's decoder layer
/// has d only), need_weights (MultiHeadAttention's, both attentions: false keeps no attention probabilities, backward
/// computes them again, bitwise the same results; memory linear in T; the attention maps refuse), seed.
/// Parameters: self_mha.{Wq,bq,Wk,bk,Wv,bv,Wo,bo}, ln1.{gamma,beta}, cross_mha.{Wq,bq,Wk,bk,Wv,bv,Wo,bo},
/// ln2.{gamma,beta}, ffn1.{W,b}, ffn2.{W,b}, ln3.{gamma,beta} (cross_mha.Wk, Wv: (memory_features, d)).
/// Attention maps: attention_map(b, h) (AttentionMap) is the self-attention's (T, T) head h of sequence b;
/// cross_attention_map(b, h) the cross-attention's (T, Tm).
/// Streams (with causal): Stream\<S>(block, B), set_context(memory, mask), then step(targets): decoding step by step
/// with the self-attention's key/value cache and the memory projected once (core/stream.hpp, "Several inputs").

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"

namespace seqattn {

/// Options of TransformerDecoderBlock (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct TransformerDecoderOptions {
  SEQATTN_ARG(double, dropout, 0.0)  ///< on the attention outputs, the FFN hidden and output
  SEQATTN_ARG(double, attention_dropout, 0.0)  ///< on the attention weights (both attentions)
  SEQATTN_ARG(double, qkv_dropout, 0.0)  ///< on the projected q, k, v (MultiHeadAttention's)
  SEQATTN_ARG(Activation, activation, Activation::GELU)  ///< of the FFN hidden layer: GELU, GELUTanh or ReLU
  SEQATTN_ARG(bool, norm_first, false)  ///< pre-norm when true
  SEQATTN_ARG(bool, causal, true)  ///< the self-attention: step t sees targets s \<= t
  SEQATTN_ARG(std::optional<Index>, attention_window, std::nullopt)  ///< w >= 1, with causal: targets [t - w + 1, t]
  /// Epsilon of the layer norms.
  SEQATTN_ARG(double, layer_norm_eps, 1e-5)
  SEQATTN_ARG(bool, use_bias, true)  ///< false: no bias in the attentions, the FFN linears, nor beta in the norms
  SEQATTN_ARG(std::optional<Index>, memory_features, std::nullopt)  ///< default d_model
  SEQATTN_ARG(bool, need_weights, true)  ///< false: both attentions keep no probabilities (memory linear in T)
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("dropout", o.dropout_);
    v("attention_dropout", o.attention_dropout_);
    v("qkv_dropout", o.qkv_dropout_);
    v("activation", o.activation_);
    v("norm_first", o.norm_first_);
    v("causal", o.causal_);
    v("attention_window", o.attention_window_);
    v("layer_norm_epsilon", o.layer_norm_eps_);
    v("use_bias", o.use_bias_);
    v("memory_features", o.memory_features_);
    v("need_weights", o.need_weights_);
    v("seed", o.seed_);
  }
};

/// A transformer decoder block: causal self-attention, cross-attention to a memory, feed-forward network, each
/// with a residual and a layer norm; see the file documentation.
template <class S>
class TransformerDecoderBlock final : public Layer<S>, public AttentionMap<S> {
 public:
  /// A block of width d_model with `heads` heads and a feed-forward hidden width ff_dim.
  TransformerDecoderBlock(Index d_model, Index heads, Index ff_dim,
                          TransformerDecoderOptions options = TransformerDecoderOptions())
      : TransformerDecoderBlock(d_model, heads, ff_dim, options, options.seed().value_or(next_seed())) {}

  using Layer<S>::forward;
  using Layer<S>::backward;

  /// x (B, T, d) masked by mx, memory (B, Tm, memory_features) masked by mm -> y (B, T, d).
  const Tensor3<S>& forward(const Tensor3<S>& x, const Mask& mx, const Tensor3<S>& memory, const Mask& mm,
                            Mode mode = Mode::Infer) {
    const detail::InUseGuard in_use = this->enter("forward");  // before the memory pointers are set
    return memory_forward_entered(x, mx, memory, mm, mode);
  }
  /// Follows forward(x, mx, memory, mm, mode) with the same inputs; dy (B, T, d) -> dx (B, T, d); memory_grad() is
  /// dmemory (B, Tm, memory_features).
  const Tensor3<S>& backward(const Tensor3<S>& x, const Mask& mx, const Tensor3<S>& memory, const Mask& mm,
                             const Tensor3<S>& dy) {
    const detail::InUseGuard in_use = this->enter("backward");
    return memory_backward_entered(x, mx, memory, mm, dy);
  }
  /// As a graph node (core/layer.hpp, "Several inputs"): inputs (targets, memory), the calls above; input_grad(1) is
  /// memory_grad(). forward(x, mask) refuses (ConfigError: it takes 2 inputs).
  Index min_inputs() const override { return 2; }
  Index max_inputs() const override { return 2; }
  Index input_features(Index i, Index) const override {
    return i == 0 ? this->in_features() : i == 1 ? memory_features() : -1;
  }

 private:
  const Tensor3<S>& memory_forward_entered(const Tensor3<S>& x, const Mask& mx, const Tensor3<S>& memory,
                                           const Mask& mm, Mode mode) {
    this->check_input(x, mx);
    check_memory_input(x, memory, mm);
    MemoryScope scope(*this, memory, mm);
    has_memory_forward_ = false;
    const Tensor3<S>& y = this->forward_entered(x, mx, mode);
    memory_dims_ = memory.dimensions();
    has_memory_forward_ = true;
    return y;
  }
  const Tensor3<S>& memory_backward_entered(const Tensor3<S>& x, const Mask& mx, const Tensor3<S>& memory,
                                            const Mask& mm, const Tensor3<S>& dy) {
    if (!has_memory_forward_) detail::throw_shape(describe(), ": backward called before forward");
    if (memory.dimensions() != memory_dims_)
      detail::throw_shape(describe(), ": backward memory expected ",
                          shape_string(memory_dims_[0], memory_dims_[1], memory_dims_[2]),
                          " (the shape of the last forward) but got ", shape_string(memory));
    mm.check(memory.dimension(0), memory.dimension(1), describe() + " memory");
    MemoryScope scope(*this, memory, mm);
    return this->backward_entered(x, mx, dy);
  }
  const Tensor3<S>& forward_inputs_entered(const LayerInputs<S>& in, Mode mode) override {
    return memory_forward_entered(*in[0].x, *in[0].mask, *in[1].x, *in[1].mask, mode);
  }
  void backward_inputs_entered(const LayerInputs<S>& in, const Tensor3<S>& dy) override {
    memory_backward_entered(*in[0].x, *in[0].mask, *in[1].x, *in[1].mask, dy);
  }
  const Tensor3<S>& extra_input_grad(Index i) const override {
    if (i == 1) return memory_grad();
    detail::throw_usage(describe(), ": input_grad(", i, ") but the block has 2 inputs");
  }

 public:
  /// dmemory of the last backward, (B, Tm, memory_features): 0 at padded and masked memory steps.
  const Tensor3<S>& memory_grad() const { return cross_mha_.key_input_grad(); }

  Index out_features() const override { return this->in_features(); }
  /// The features of the memory (the cross-attention's keys and values).
  Index memory_features() const { return cross_mha_.key_features(); }
  std::string name() const override { return "transformer_decoder"; }
  std::string class_name() const override { return "TransformerDecoderBlock"; }
  Config config() const override {
    Config c = Config::object();
    c.set("num_heads", self_mha_.heads());
    c.set("ff_dim", ff_dim_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "TransformerDecoderBlock config");
    const Index heads = r.read_size("num_heads"), ff_dim = r.read_size("ff_dim");
    const TransformerDecoderOptions options = read_options<TransformerDecoderOptions>(r);
    r.finish();
    return std::make_unique<TransformerDecoderBlock>(in_features, heads, ff_dim, options);
  }
  std::string describe() const override {
    return detail::cat(
        "TransformerDecoderBlock(d_model=", this->in_features(), ", heads=", self_mha_.heads(), ", ff_dim=", ff_dim_,
        ", ", options_.norm_first() ? "pre-norm" : "post-norm", options_.causal() ? ", causal" : ", not causal",
        options_.attention_window() ? ", attention_window=" + std::to_string(*options_.attention_window())
                                    : std::string(),
        options_.memory_features() ? ", memory_features=" + std::to_string(*options_.memory_features()) : std::string(),
        options_.use_bias() ? "" : ", use_bias=false", options_.need_weights() ? "" : ", need_weights=false", ")");
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<TransformerDecoderBlock>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const TransformerDecoderBlock&>(other); }
  /// Step masks (holes, left padding) on the targets and the memory when every sub-layer honors them: the
  /// attentions (MultiHeadAttention) and the position-wise norms, feed-forward and dropouts.
  bool supports_step_masks() const override {
    for (const Layer<S>* layer : children())
      if (!layer->supports_step_masks()) return false;
    return true;
  }
  std::string step_mask_refusal() const override {
    for (const Layer<S>* layer : children())
      if (!layer->supports_step_masks())
        return detail::cat("its sub-layer ", layer->describe(), " refuses it: ", layer->step_mask_refusal());
    return "";
  }
  /// Both attentions' probabilities (B*H*T*T and B*H*T*Tm, Tm the memory steps of the current call, else T; none
  /// with need_weights=false) and projections, and the memory and its gradient.
  std::size_t cache_bytes(Index B, Index T) const override {
    const Index Tm = memory_ ? memory_->dimension(1) : T, hd = cross_mha_.heads() * cross_mha_.head_size();
    const std::size_t probs =
        options_.need_weights() ? detail::saturating_bytes(sizeof(S), {B, cross_mha_.heads(), T, Tm}) : 0;
    std::size_t cross = detail::saturating_add(probs, detail::saturating_bytes(sizeof(S), {B, T + 2 * Tm, 2 * hd}));
    if (options_.attention_dropout() > 0) cross = detail::saturating_add(cross, probs);
    if (options_.qkv_dropout() > 0)
      cross = detail::saturating_add(cross, detail::saturating_bytes(sizeof(S) + 1, {B, T + 2 * Tm, hd}));
    const std::size_t memory_io = detail::saturating_bytes(sizeof(S), {B, Tm, 2 * memory_features()});
    return detail::saturating_add(detail::saturating_add(self_mha_.cache_bytes(B, T), cross), memory_io);
  }
  std::string memory_remedy(Index, Index) const override {
    if (!options_.need_weights()) return "use a smaller batch or shorter sequences";
    return "it keeps batch x heads x T x T (self-attention) and batch x heads x T x memory steps (cross-attention) "
           "attention probabilities for backward: construct it with need_weights(false) to compute them again in "
           "backward instead (memory linear in T), or use a smaller batch or shorter sequences";
  }
  /// Streams with causal (core/stream.hpp, "Several inputs"): the targets step, the memory is the stream's context
  /// (set_context, projected once by the cross-attention's stream); the self-attention keeps its key/value cache, the
  /// other sub-layers run per step, dropout is the identity. A decode step over t past targets and Tm memory steps
  /// costs O(t + Tm) per head, not a rerun of the whole prefix.
  std::unique_ptr<LayerStream<S>> open_inputs_stream(Index batch, const StreamOptions& options,
                                                     Index inputs) const override {
    if (inputs != 2 || !options_.causal()) return Layer<S>::open_inputs_stream(batch, options, inputs);
    auto stream = std::make_unique<BlockStream>(options_.norm_first(), ff_dim_);
    stream->self = self_mha_.open_stream(batch, options);
    stream->cross = cross_mha_.open_inputs_stream(batch, options, 2);
    stream->ln1 = ln1_.open_stream(batch, options);
    stream->ln2 = ln2_.open_stream(batch, options);
    stream->ln3 = ln3_.open_stream(batch, options);
    stream->ffn1 = ffn1_.open_stream(batch, options);
    stream->ffn2 = ffn2_.open_stream(batch, options);
    return stream;
  }
  std::string stream_refusal() const override {
    if (!options_.causal())
      return "without causal its self-attention reads later targets; set causal (the default) to stream";
    return "it takes 2 inputs (targets, memory): stream it with its memory as context (Stream(block, B) and "
           "set_context(memory), or as a Graph node)";
  }

  /// The self-attention.
  MultiHeadAttention<S>& self_attention_layer() { return self_mha_; }
  /// The self-attention.
  const MultiHeadAttention<S>& self_attention_layer() const { return self_mha_; }
  /// The cross-attention.
  MultiHeadAttention<S>& cross_attention_layer() { return cross_mha_; }
  /// The cross-attention.
  const MultiHeadAttention<S>& cross_attention_layer() const { return cross_mha_; }
  /// AttentionMap (core/attention_map.hpp): the self-attention's (T, T) weights of head h of sequence b.
  Index attention_heads() const override { return self_mha_.heads(); }
  Matrix<S> attention_map(Index b, Index h = 0) const override { return self_mha_.attention(b, h); }
  /// The cross-attention's (T, Tm) weights of head h of sequence b (0 at padded / masked memory steps).
  Matrix<S> cross_attention_map(Index b, Index h = 0) const { return cross_mha_.attention(b, h); }
  /// The layer norm of the self-attention sub-block.
  LayerNorm<S>& norm1() { return ln1_; }
  /// The layer norm of the cross-attention sub-block.
  LayerNorm<S>& norm2() { return ln2_; }
  /// The layer norm of the feed-forward sub-block.
  LayerNorm<S>& norm3() { return ln3_; }
  /// The first feed-forward layer (d_model -> ff_dim, activation).
  Dense<S>& ffn1() { return ffn1_; }
  /// The second feed-forward layer (ff_dim -> d_model).
  Dense<S>& ffn2() { return ffn2_; }
  /// The options the layer was built with.
  const TransformerDecoderOptions& options() const { return options_; }

 protected:
  /// x (B, T, d) [, memory (B, Tm, memory_features) of the call] -> y (B, T, d); every intermediate is kept.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    if (!memory_) throw_needs_memory("forward(x, mask)");
    const Tensor3<S>& memory = *memory_;
    const Mask& mm = *memory_mask_;
    const bool pre = options_.norm_first();
    const Index B = x.dimension(0), T = x.dimension(1), d = x.dimension(2);
    // self-attention sub-block: a1 = Drop(SelfMHA(pre ? LN1(x) : x));  h1 = x + a1  (post-norm: h1 = LN1(x + a1))
    const Tensor3<S>& self_in = pre ? ln1_.forward(x, mask, mode) : x;
    const Tensor3<S>& a1 = drop_self_.forward(self_mha_.forward(self_in, mask, mode), mask, mode);
    ensure_shape(sum1_, B, T, d);
    as_matrix(sum1_).noalias() = as_matrix(x) + as_matrix(a1);
    const Tensor3<S>& h1 = pre ? sum1_ : ln1_.forward(sum1_, mask, mode);
    // cross-attention sub-block: a2 = Drop(CrossMHA(pre ? LN2(h1) : h1, memory));  h2 = h1 + a2 (post: LN2(h1 + a2))
    const Tensor3<S>& cross_in = pre ? ln2_.forward(h1, mask, mode) : h1;
    const Tensor3<S>& a2 = drop_cross_.forward(cross_mha_.forward(cross_in, mask, memory, mm, mode), mask, mode);
    ensure_shape(sum2_, B, T, d);
    as_matrix(sum2_).noalias() = as_matrix(h1) + as_matrix(a2);
    const Tensor3<S>& h2 = pre ? sum2_ : ln2_.forward(sum2_, mask, mode);
    // feed-forward sub-block: f = Drop(Dense2(Drop(act(Dense1(pre ? LN3(h2) : h2)))));  y = h2 + f (post: LN3(h2 + f))
    const Tensor3<S>& ffn_in = pre ? ln3_.forward(h2, mask, mode) : h2;
    const Tensor3<S>& hidden = drop_hidden_.forward(ffn1_.forward(ffn_in, mask, mode), mask, mode);
    const Tensor3<S>& f = drop_ffn_.forward(ffn2_.forward(hidden, mask, mode), mask, mode);
    if (pre) {
      as_matrix(y).noalias() = as_matrix(h2) + as_matrix(f);
    } else {
      ensure_shape(sum3_, B, T, d);
      as_matrix(sum3_).noalias() = as_matrix(h2) + as_matrix(f);
      const Tensor3<S>& out = ln3_.forward(sum3_, mask, mode);
      as_matrix(y) = as_matrix(out);
    }
  }

  /// dy (B, T, d) -> dx (B, T, d) (and the cross-attention's key_input_grad(), memory_grad()): the forward steps
  /// inverted from last to first.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    if (!memory_) throw_needs_memory("backward(x, mask, dy)");
    const Tensor3<S>& memory = *memory_;
    const Mask& mm = *memory_mask_;
    const bool pre = options_.norm_first();
    const Index B = x.dimension(0), T = x.dimension(1), d = x.dimension(2);
    const Tensor3<S>& h1 = pre ? sum1_ : ln1_.output();
    const Tensor3<S>& h2 = pre ? sum2_ : ln2_.output();
    // y = h2 + f (pre) or y = LN3(h2 + f) (post): d(sum3) = dy or LN3'(dy); dh2 and df both receive it
    const Tensor3<S>& dsum3 = pre ? dy : ln3_.backward(sum3_, mask, dy);
    // f = Drop(Dense2(hidden)), hidden = Drop(act(Dense1(ffn_in)))
    const Tensor3<S>& dffn2 = drop_ffn_.backward(ffn2_.output(), mask, dsum3);
    const Tensor3<S>& dhidden = ffn2_.backward(drop_hidden_.output(), mask, dffn2);
    const Tensor3<S>& dffn1 = drop_hidden_.backward(ffn1_.output(), mask, dhidden);
    const Tensor3<S>& ffn_in = pre ? ln3_.output() : h2;
    const Tensor3<S>& dffn_in = ffn1_.backward(ffn_in, mask, dffn1);
    // ffn_in = LN3(h2) (pre) or h2 (post)
    const Tensor3<S>& dh2_ffn = pre ? ln3_.backward(h2, mask, dffn_in) : dffn_in;
    ensure_shape(dh2_, B, T, d);
    as_matrix(dh2_).noalias() = as_matrix(dsum3) + as_matrix(dh2_ffn);
    // h2 = sum2 (pre) or LN2(sum2) (post), sum2 = h1 + a2
    const Tensor3<S>& dsum2 = pre ? dh2_ : ln2_.backward(sum2_, mask, dh2_);
    // a2 = Drop(CrossMHA(cross_in, memory)), cross_in = LN2(h1) (pre) or h1 (post); dmemory: key_input_grad()
    const Tensor3<S>& dcross = drop_cross_.backward(cross_mha_.output(), mask, dsum2);
    const Tensor3<S>& cross_in = pre ? ln2_.output() : h1;
    const Tensor3<S>& dcross_in = cross_mha_.backward_cross(cross_in, mask, memory, mm, dcross);
    const Tensor3<S>& dh1_cross = pre ? ln2_.backward(h1, mask, dcross_in) : dcross_in;
    ensure_shape(dh1_, B, T, d);
    as_matrix(dh1_).noalias() = as_matrix(dsum2) + as_matrix(dh1_cross);
    // h1 = sum1 (pre) or LN1(sum1) (post), sum1 = x + a1
    const Tensor3<S>& dsum1 = pre ? dh1_ : ln1_.backward(sum1_, mask, dh1_);
    // a1 = Drop(SelfMHA(self_in)), self_in = LN1(x) (pre) or x (post)
    const Tensor3<S>& dself = drop_self_.backward(self_mha_.output(), mask, dsum1);
    const Tensor3<S>& self_in = pre ? ln1_.output() : x;
    const Tensor3<S>& dself_in = self_mha_.backward(self_in, mask, dself);
    const Tensor3<S>& dx_self = pre ? ln1_.backward(x, mask, dself_in) : dself_in;
    as_matrix(dx).noalias() = as_matrix(dsum1) + as_matrix(dx_self);
  }

  /// The sub-layers' regularization losses (their weight rules: self_attention_layer(), ffn1(), ...).
  S extra_regularization_loss() const override {
    return self_mha_.regularization_loss() + ln1_.regularization_loss() + cross_mha_.regularization_loss() +
           ln2_.regularization_loss() + ffn1_.regularization_loss() + ffn2_.regularization_loss() +
           ln3_.regularization_loss();
  }

  void collect_params(ParamList<S>& list) override {
    append(list, "self_mha.", self_mha_);
    append(list, "ln1.", ln1_);
    append(list, "cross_mha.", cross_mha_);
    append(list, "ln2.", ln2_);
    append(list, "ffn1.", ffn1_);
    append(list, "ffn2.", ffn2_);
    append(list, "ln3.", ln3_);
  }

 private:
  // The block's forward over the new rows of each stream (dropout is the identity in a stream); the memory is the
  // cross-attention stream's context.
  struct BlockStream final : LayerStream<S> {
    BlockStream(bool pre_norm, Index ff_dim) : pre(pre_norm), hidden_features(ff_dim) {}
    bool pre;
    Index hidden_features;
    std::unique_ptr<LayerStream<S>> self, cross, ln1, ln2, ln3, ffn1, ffn2;
    Tensor3<S> normed, attended, h1, h2, hidden, f, sum;

    Index context_inputs() const override { return 1; }
    void set_context(const LayerInputs<S>& context) override { cross->set_context(context); }
    void set_stream_context(Index b, const LayerInputs<S>& context) override { cross->set_stream_context(b, context); }
    // x (B, n, d) -> y (B, n, d)
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), d = x.dimension(2);
      for (Tensor3<S>* t : {&normed, &attended, &h1, &h2, &f, &sum}) ensure_shape(*t, B, n, d);
      ensure_shape(hidden, B, n, hidden_features);
      if (pre) {  // h1 = x + Self(LN1(x));  h2 = h1 + Cross(LN2(h1));  y = h2 + FFN(LN3(h2))
        ln1->step(x, start, normed);
        self->step(normed, start, attended);
        as_matrix(h1).noalias() = as_matrix(x) + as_matrix(attended);
        ln2->step(h1, start, normed);
        cross->step(normed, start, attended);
        as_matrix(h2).noalias() = as_matrix(h1) + as_matrix(attended);
        ln3->step(h2, start, normed);
        ffn(normed, start);
        as_matrix(y).noalias() = as_matrix(h2) + as_matrix(f);
      } else {  // h1 = LN1(x + Self(x));  h2 = LN2(h1 + Cross(h1));  y = LN3(h2 + FFN(h2))
        self->step(x, start, attended);
        as_matrix(sum).noalias() = as_matrix(x) + as_matrix(attended);
        ln1->step(sum, start, h1);
        cross->step(h1, start, attended);
        as_matrix(sum).noalias() = as_matrix(h1) + as_matrix(attended);
        ln2->step(sum, start, h2);
        ffn(h2, start);
        as_matrix(sum).noalias() = as_matrix(h2) + as_matrix(f);
        ln3->step(sum, start, y);
      }
    }
    void reset(Index b) override { self->reset(b); }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      self->state(list, prefix + "self_mha.");
    }
    Index max_steps() const override { return self->max_steps(); }

   private:
    // f = Dense2(act(Dense1(z)))
    void ffn(const Tensor3<S>& z, const std::vector<Index>& start) {
      ffn1->step(z, start, hidden);
      ffn2->step(hidden, start, f);
    }
  };

  // Points the block at the memory of a forward(x, mx, memory, mm) or backward call for its duration.
  struct MemoryScope {
    MemoryScope(TransformerDecoderBlock& layer, const Tensor3<S>& memory, const Mask& mm) : layer_(layer) {
      layer_.memory_ = &memory;
      layer_.memory_mask_ = &mm;
    }
    ~MemoryScope() {
      layer_.memory_ = nullptr;
      layer_.memory_mask_ = nullptr;
    }
    MemoryScope(const MemoryScope&) = delete;
    MemoryScope& operator=(const MemoryScope&) = delete;
    TransformerDecoderBlock& layer_;
  };

  TransformerDecoderBlock(Index d, Index heads, Index ff_dim, const TransformerDecoderOptions& o, std::uint64_t seed)
      : Layer<S>(d),
        ff_dim_(check_ff_dim(ff_dim)),
        options_(check_options(o)),
        self_mha_(d, heads,
                  MultiHeadAttentionOptions()
                      .causal(o.causal())
                      .attention_window(o.attention_window())
                      .attention_dropout(o.attention_dropout())
                      .qkv_dropout(o.qkv_dropout())
                      .use_bias(o.use_bias())
                      .need_weights(o.need_weights())
                      .seed(seed)),
        cross_mha_(d, heads,
                   MultiHeadAttentionOptions()
                       .key_features(o.memory_features().value_or(d))
                       .attention_dropout(o.attention_dropout())
                       .qkv_dropout(o.qkv_dropout())
                       .use_bias(o.use_bias())
                       .need_weights(o.need_weights())
                       .seed(seed + 6)),
        ln1_(d, LayerNormOptions().eps(o.layer_norm_eps()).center(o.use_bias())),
        ln2_(d, LayerNormOptions().eps(o.layer_norm_eps()).center(o.use_bias())),
        ln3_(d, LayerNormOptions().eps(o.layer_norm_eps()).center(o.use_bias())),
        ffn1_(d, ff_dim, DenseOptions().activation(o.activation()).use_bias(o.use_bias()).seed(seed + 1)),
        ffn2_(ff_dim, d, DenseOptions().use_bias(o.use_bias()).seed(seed + 2)),
        drop_self_(d, o.dropout(), DropoutOptions().seed(seed + 3)),
        drop_cross_(d, o.dropout(), DropoutOptions().seed(seed + 7)),
        drop_hidden_(ff_dim, o.dropout(), DropoutOptions().seed(seed + 4)),
        drop_ffn_(d, o.dropout(), DropoutOptions().seed(seed + 5)) {}

  static Index check_ff_dim(Index ff_dim) {
    if (ff_dim <= 0) detail::throw_config("TransformerDecoderBlock: ff_dim must be positive but got ", ff_dim);
    return ff_dim;
  }
  static const TransformerDecoderOptions& check_options(const TransformerDecoderOptions& o) {
    if (o.activation() != Activation::GELU && o.activation() != Activation::GELUTanh &&
        o.activation() != Activation::ReLU)
      detail::throw_config("TransformerDecoderBlock: activation must be gelu, gelu_tanh or relu but got ",
                           to_string(o.activation()));
    if (!(o.dropout() >= 0.0 && o.dropout() < 1.0))
      detail::throw_config("TransformerDecoderBlock: dropout must be in [0, 1) but got ", o.dropout());
    if (!(o.attention_dropout() >= 0.0 && o.attention_dropout() < 1.0))
      detail::throw_config("TransformerDecoderBlock: attention_dropout must be in [0, 1) but got ",
                           o.attention_dropout());
    if (!(o.qkv_dropout() >= 0.0 && o.qkv_dropout() < 1.0))
      detail::throw_config("TransformerDecoderBlock: qkv_dropout must be in [0, 1) but got ", o.qkv_dropout());
    if (o.memory_features() && *o.memory_features() <= 0)
      detail::throw_config("TransformerDecoderBlock: memory_features must be positive but got ", *o.memory_features());
    if (o.attention_window()) {
      if (*o.attention_window() < 1)
        detail::throw_config("TransformerDecoderBlock: attention_window must be at least 1 but got ",
                             *o.attention_window());
      if (!o.causal())
        detail::throw_config("TransformerDecoderBlock: attention_window needs causal (a window of past steps ",
                             "[t - w + 1, t]) but causal is false");
    }
    return o;
  }

  // The memory of forward(x, mx, memory, mm): the batch of x, at least one step, memory_features features, a mask
  // that fits (ShapeError naming the block).
  void check_memory_input(const Tensor3<S>& x, const Tensor3<S>& memory, const Mask& mm) const {
    if (memory.dimension(0) != x.dimension(0))
      detail::throw_shape(describe(), ": memory batch expected ", x.dimension(0), " (the batch of the targets ",
                          shape_string(x), ") but got ", memory.dimension(0), " (memory shape ", shape_string(memory),
                          ")");
    if (memory.dimension(1) <= 0)
      detail::throw_shape(describe(), ": memory expected at least one step but got ", shape_string(memory));
    if (memory.dimension(2) != memory_features())
      detail::throw_shape(describe(), ": memory features expected ", memory_features(), " but got ",
                          memory.dimension(2), " (memory shape ", shape_string(memory), ")");
    mm.check(memory.dimension(0), memory.dimension(1), describe() + " memory");
    if (mm.has_holes() && !supports_step_masks())
      detail::throw_config(describe(), ": got a step mask (holes or left padding) on the memory but ",
                           step_mask_refusal());
  }
  [[noreturn]] void throw_needs_memory(const char* call) const {
    detail::throw_config(describe(), ": ", call,
                         " has no memory input: a decoder block needs a memory input (the encoder's output); call "
                         "forward(x, mx, memory, mm, mode) and backward(x, mx, memory, mm, dy)");
  }

  std::vector<const Layer<S>*> children() const {
    return {&self_mha_, &cross_mha_, &ln1_,        &ln2_,         &ln3_,     &ffn1_,
            &ffn2_,     &drop_self_, &drop_cross_, &drop_hidden_, &drop_ffn_};
  }
  static void append(ParamList<S>& list, const std::string& prefix, Layer<S>& layer) {
    for (auto& p : layer.params()) {
      p.name = prefix + p.name;
      list.push_back(std::move(p));
    }
  }

  Index ff_dim_;
  TransformerDecoderOptions options_;
  MultiHeadAttention<S> self_mha_, cross_mha_;
  LayerNorm<S> ln1_, ln2_, ln3_;
  Dense<S> ffn1_, ffn2_;
  Dropout<S> drop_self_, drop_cross_, drop_hidden_, drop_ffn_;
  Tensor3<S> sum1_, sum2_, sum3_, dh1_, dh2_;  // x + a1; h1 + a2; h2 + f (post-norm); gradients of h1, h2
  // the memory of the running forward / backward call (MemoryScope), null outside one
  const Tensor3<S>* memory_ = nullptr;
  const Mask* memory_mask_ = nullptr;
  Eigen::DSizes<Index, 3> memory_dims_{0, 0, 0};  // the memory shape of the last forward
  bool has_memory_forward_ = false;
};

}  // namespace seqattn
