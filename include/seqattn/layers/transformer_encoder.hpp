#pragma once
/// \file
/// TransformerEncoderBlock: multi-head self-attention and a feed-forward network, each with dropout and a
/// residual connection, with post-norm (Vaswani et al., torch's default) or pre-norm (norm_first):
///
/// ```unparsed
///   post-norm:  h = LN1(x + Drop(MHA(x)))          y = LN2(h + Drop(FFN(h)))
///   pre-norm:   h = x + Drop(MHA(LN1(x)))          y = h + Drop(FFN(LN2(h)))
///   FFN(z) = Dense2(Drop(act(Dense1(z))))          Dense1: (d, ff_dim), act GELU (exact), GELUTanh or ReLU;
///                                                  Dense2: (ff_dim, d)
/// ```
/// Equals torch.nn.TransformerEncoderLayer(d, heads, ff_dim, dropout, activation, batch_first=True,
/// norm_first) with MHA in_proj_weight = [Wq^T; Wk^T; Wv^T], linear1.weight = ffn1.W^T, linear2.weight = ffn2.W^T
/// (tests/reference/gen_transformer_encoder.py checks it). Masks: padding masks the attention keys and the
/// statistics of nothing (LayerNorm is per step); `causal` lets step t attend to steps s \<= t only;
/// `attention_window` w (with causal only, w >= 1: ConfigError otherwise) to the w steps [t - w + 1, t] only
/// (torch: a src_mask of -inf where s > t or s \< t - w + 1), in O(T w) time and memory: the attention keeps
/// B*heads*T*min(w, T) probabilities instead of B*heads*T*T (MultiHeadAttention's attention_window).
/// Options: dropout, attention_dropout (on the attention weights), qkv_dropout (MultiHeadAttention's: on the projected
/// q, k, v; 0 by default, not in torch), activation, norm_first, causal, attention_window, layer_norm_eps,
/// need_weights (MultiHeadAttention's: false keeps no attention probabilities, backward computes them again, bitwise
/// the same results; memory linear in T; attention_map() refuses), seed.
/// Padded steps never change valid outputs. Step masks (holes, left padding): honored (supports_step_masks()) once
/// every sub-layer honors them; the attention then gives masked keys weight 0 and masked steps an attention output
/// of 0 (the residual, norms and feed-forward still compute those steps, as padded steps). x (B, T, d) -> y (B, T, d).
/// Parameters: mha.{Wq,bq,Wk,bk,Wv,bv,Wo,bo}, ln1.{gamma,beta}, ffn1.{W,b}, ffn2.{W,b}, ln2.{gamma,beta}.
/// use_bias (default true) false: torch's bias=False (torch >= 2.1): no bq, bk, bv, bo, ffn1.b, ffn2.b, and the
/// norms learn no beta (gamma only); params() lists none of them, the torch import (io/torch_names.hpp) expects
/// a state_dict without in_proj_bias, out_proj.bias, linear1/2.bias, norm1/2.bias. Model-file key "use_bias".

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

/// Options of TransformerEncoderBlock (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct TransformerEncoderOptions {
  SEQATTN_ARG(double, dropout, 0.0)  ///< on the attention output, the FFN hidden and output
  SEQATTN_ARG(double, attention_dropout, 0.0)  ///< on the attention weights
  SEQATTN_ARG(double, qkv_dropout, 0.0)  ///< on the projected q, k, v (MultiHeadAttention's)
  SEQATTN_ARG(Activation, activation, Activation::GELU)  ///< of the FFN hidden layer: GELU, GELUTanh or ReLU
  SEQATTN_ARG(bool, norm_first, false)  ///< pre-norm when true
  /// Step t attends only to steps s \<= t.
  SEQATTN_ARG(bool, causal, false)
  SEQATTN_ARG(std::optional<Index>, attention_window, std::nullopt)  ///< w >= 1, with causal: keys [t - w + 1, t]
  /// Epsilon of the layer norms.
  SEQATTN_ARG(double, layer_norm_eps, 1e-5)
  SEQATTN_ARG(bool, use_bias, true)  ///< false: no bias in the attention, the FFN linears, nor beta in the norms
  SEQATTN_ARG(bool, need_weights, true)  ///< false: the attention keeps no probabilities (memory linear in T)
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
    v("need_weights", o.need_weights_);
    v("seed", o.seed_);
  }
};

/// A transformer encoder block: self-attention and a feed-forward network, each with a residual and a layer
/// norm (post-norm, or pre-norm with norm_first); see the file documentation.
template <class S>
class TransformerEncoderBlock final : public Layer<S>, public AttentionMap<S> {
 public:
  /// A block of width d_model with `heads` heads and a feed-forward hidden width ff_dim.
  TransformerEncoderBlock(Index d_model, Index heads, Index ff_dim,
                          TransformerEncoderOptions options = TransformerEncoderOptions())
      : TransformerEncoderBlock(d_model, heads, ff_dim, options, options.seed().value_or(next_seed())) {}

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "transformer_encoder"; }
  std::string class_name() const override { return "TransformerEncoderBlock"; }
  Config config() const override {
    Config c = Config::object();
    c.set("num_heads", mha_.heads());
    c.set("ff_dim", ff_dim_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "TransformerEncoderBlock config");
    const Index heads = r.read_size("num_heads"), ff_dim = r.read_size("ff_dim");
    const TransformerEncoderOptions options = read_options<TransformerEncoderOptions>(r);
    r.finish();
    return std::make_unique<TransformerEncoderBlock>(in_features, heads, ff_dim, options);
  }
  std::string describe() const override {
    return detail::cat(
        "TransformerEncoderBlock(d_model=", this->in_features(), ", heads=", mha_.heads(), ", ff_dim=", ff_dim_, ", ",
        options_.norm_first() ? "pre-norm" : "post-norm", options_.causal() ? ", causal" : "",
        options_.attention_window() ? ", attention_window=" + std::to_string(*options_.attention_window())
                                    : std::string(),
        options_.use_bias() ? "" : ", use_bias=false", options_.need_weights() ? "" : ", need_weights=false", ")");
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<TransformerEncoderBlock>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const TransformerEncoderBlock&>(other); }
  /// Step masks (holes, left padding) when every sub-layer honors them: the attention (MultiHeadAttention) and the
  /// position-wise norms, feed-forward and dropouts.
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
  std::size_t cache_bytes(Index B, Index T) const override { return mha_.cache_bytes(B, T); }
  std::string memory_remedy(Index B, Index T) const override { return mha_.memory_remedy(B, T); }

  /// Streams with causal: its attention's key/value cache, the other sub-layers per step, dropout the identity.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (!options_.causal()) return Layer<S>::open_stream(batch, options);
    auto stream = std::make_unique<BlockStream>(options_.norm_first());
    stream->hidden_features = ff_dim_;
    stream->mha = mha_.open_stream(batch, options);
    stream->ln1 = ln1_.open_stream(batch, options);
    stream->ln2 = ln2_.open_stream(batch, options);
    stream->ffn1 = ffn1_.open_stream(batch, options);
    stream->ffn2 = ffn2_.open_stream(batch, options);
    return stream;
  }
  std::string stream_refusal() const override {
    return "without causal every step attends to the whole sequence, later steps included; set causal (and "
           "attention_window to bound the memory) to stream";
  }

  /// The self-attention.
  MultiHeadAttention<S>& attention_layer() { return mha_; }
  /// The self-attention.
  const MultiHeadAttention<S>& attention_layer() const { return mha_; }
  /// AttentionMap (core/attention_map.hpp): its attention's (Tq, Tk) weights of head h of sequence b.
  Index attention_heads() const override { return mha_.heads(); }
  Matrix<S> attention_map(Index b, Index h = 0) const override { return mha_.attention(b, h); }
  /// The layer norm of the attention sub-block.
  LayerNorm<S>& norm1() { return ln1_; }
  /// The layer norm of the feed-forward sub-block.
  LayerNorm<S>& norm2() { return ln2_; }
  /// The first feed-forward layer (d_model -> ff_dim, activation).
  Dense<S>& ffn1() { return ffn1_; }
  /// The second feed-forward layer (ff_dim -> d_model).
  Dense<S>& ffn2() { return ffn2_; }
  /// The options the layer was built with.
  const TransformerEncoderOptions& options() const { return options_; }

 protected:
  /// x (B, T, d) -> y (B, T, d); every intermediate is a member kept for backward.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    const bool pre = options_.norm_first();
    // attention sub-block: a = Drop(MHA(pre ? LN1(x) : x));  h = x + a  (post-norm: h = LN1(x + a))
    const Tensor3<S>& attn_in = pre ? ln1_.forward(x, mask, mode) : x;
    const Tensor3<S>& a = drop_attn_.forward(mha_.forward(attn_in, mask, mode), mask, mode);
    ensure_shape(sum1_, x.dimension(0), x.dimension(1), x.dimension(2));
    as_matrix(sum1_).noalias() = as_matrix(x) + as_matrix(a);
    const Tensor3<S>& h = pre ? sum1_ : ln1_.forward(sum1_, mask, mode);
    // feed-forward sub-block: f = Drop(Dense2(Drop(act(Dense1(pre ? LN2(h) : h)))));  y = h + f (post: LN2(h + f))
    const Tensor3<S>& ffn_in = pre ? ln2_.forward(h, mask, mode) : h;
    const Tensor3<S>& hidden = drop_hidden_.forward(ffn1_.forward(ffn_in, mask, mode), mask, mode);
    const Tensor3<S>& f = drop_ffn_.forward(ffn2_.forward(hidden, mask, mode), mask, mode);
    if (pre) {
      as_matrix(y).noalias() = as_matrix(h) + as_matrix(f);
    } else {
      ensure_shape(sum2_, x.dimension(0), x.dimension(1), x.dimension(2));
      as_matrix(sum2_).noalias() = as_matrix(h) + as_matrix(f);
      const Tensor3<S>& out = ln2_.forward(sum2_, mask, mode);
      as_matrix(y) = as_matrix(out);
    }
  }

  /// dy (B, T, d) -> dx (B, T, d): the forward steps inverted from last to first.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool pre = options_.norm_first();
    const Tensor3<S>& h = pre ? sum1_ : ln1_.output();
    ensure_shape(dh_, x.dimension(0), x.dimension(1), x.dimension(2));
    // y = h + f (pre) or y = LN2(h + f) (post): d(sum2) = dy or LN2'(dy); dh and df both receive it
    const Tensor3<S>& dsum2 = pre ? dy : ln2_.backward(sum2_, mask, dy);
    // f = Drop(Dense2(hidden)), hidden = Drop(act(Dense1(ffn_in)))
    const Tensor3<S>& dffn2 = drop_ffn_.backward(ffn2_.output(), mask, dsum2);
    const Tensor3<S>& dhidden = ffn2_.backward(drop_hidden_.output(), mask, dffn2);
    const Tensor3<S>& dffn1 = drop_hidden_.backward(ffn1_.output(), mask, dhidden);
    const Tensor3<S>& ffn_in = pre ? ln2_.output() : h;
    const Tensor3<S>& dffn_in = ffn1_.backward(ffn_in, mask, dffn1);
    // ffn_in = LN2(h) (pre) or h (post)
    const Tensor3<S>& dh_ffn = pre ? ln2_.backward(h, mask, dffn_in) : dffn_in;
    as_matrix(dh_).noalias() = as_matrix(dsum2) + as_matrix(dh_ffn);
    // h = sum1 (pre) or LN1(sum1) (post), sum1 = x + a
    const Tensor3<S>& dsum1 = pre ? dh_ : ln1_.backward(sum1_, mask, dh_);
    // a = Drop(MHA(attn_in)), attn_in = LN1(x) (pre) or x (post)
    const Tensor3<S>& dmha = drop_attn_.backward(mha_.output(), mask, dsum1);
    const Tensor3<S>& attn_in = pre ? ln1_.output() : x;
    const Tensor3<S>& dattn_in = mha_.backward(attn_in, mask, dmha);
    const Tensor3<S>& dx_attn = pre ? ln1_.backward(x, mask, dattn_in) : dattn_in;
    as_matrix(dx).noalias() = as_matrix(dsum1) + as_matrix(dx_attn);
  }

  /// The sub-layers' regularization losses (their weight rules: mha(), ffn1(), ...).
  S extra_regularization_loss() const override {
    return mha_.regularization_loss() + ln1_.regularization_loss() + ffn1_.regularization_loss() +
           ffn2_.regularization_loss() + ln2_.regularization_loss();
  }

  void collect_params(ParamList<S>& list) override {
    append(list, "mha.", mha_);
    append(list, "ln1.", ln1_);
    append(list, "ffn1.", ffn1_);
    append(list, "ffn2.", ffn2_);
    append(list, "ln2.", ln2_);
  }

 private:
  // The block's forward over the new rows of each stream (dropout is the identity in a stream).
  struct BlockStream final : LayerStream<S> {
    explicit BlockStream(bool pre_norm) : pre(pre_norm) {}
    bool pre;
    Index hidden_features = 0;  // ff_dim
    std::unique_ptr<LayerStream<S>> mha, ln1, ln2, ffn1, ffn2;
    Tensor3<S> normed, attended, h, hidden, f, sum;
    // x (B, n, d) -> y (B, n, d)
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), d = x.dimension(2);
      for (Tensor3<S>* t : {&normed, &attended, &h, &f, &sum}) ensure_shape(*t, B, n, d);
      if (pre) {  // h = x + MHA(LN1(x));  y = h + FFN(LN2(h))
        ln1->step(x, start, normed);
        mha->step(normed, start, attended);
        as_matrix(h).noalias() = as_matrix(x) + as_matrix(attended);
        ln2->step(h, start, normed);
        ffn(normed, start);
        as_matrix(y).noalias() = as_matrix(h) + as_matrix(f);
      } else {  // h = LN1(x + MHA(x));  y = LN2(h + FFN(h))
        mha->step(x, start, attended);
        as_matrix(sum).noalias() = as_matrix(x) + as_matrix(attended);
        ln1->step(sum, start, h);
        ffn(h, start);
        as_matrix(sum).noalias() = as_matrix(h) + as_matrix(f);
        ln2->step(sum, start, y);
      }
    }
    void reset(Index b) override { mha->reset(b); }
    void state(StreamStateList<S>& list, const std::string& prefix) override { mha->state(list, prefix + "mha."); }
    Index max_steps() const override { return mha->max_steps(); }

   private:
    // f = Dense2(act(Dense1(z)))
    void ffn(const Tensor3<S>& z, const std::vector<Index>& start) {
      ensure_shape(hidden, z.dimension(0), z.dimension(1), hidden_features);
      ffn1->step(z, start, hidden);
      ffn2->step(hidden, start, f);
    }
  };

  TransformerEncoderBlock(Index d, Index heads, Index ff_dim, const TransformerEncoderOptions& o, std::uint64_t seed)
      : Layer<S>(d),
        ff_dim_(check_ff_dim(ff_dim)),
        options_(check_options(o)),
        mha_(d, heads,
             MultiHeadAttentionOptions()
                 .causal(o.causal())
                 .attention_window(o.attention_window())
                 .attention_dropout(o.attention_dropout())
                 .qkv_dropout(o.qkv_dropout())
                 .use_bias(o.use_bias())
                 .need_weights(o.need_weights())
                 .seed(seed)),
        ln1_(d, LayerNormOptions().eps(o.layer_norm_eps()).center(o.use_bias())),
        ln2_(d, LayerNormOptions().eps(o.layer_norm_eps()).center(o.use_bias())),
        ffn1_(d, ff_dim, DenseOptions().activation(o.activation()).use_bias(o.use_bias()).seed(seed + 1)),
        ffn2_(ff_dim, d, DenseOptions().use_bias(o.use_bias()).seed(seed + 2)),
        drop_attn_(d, o.dropout(), DropoutOptions().seed(seed + 3)),
        drop_hidden_(ff_dim, o.dropout(), DropoutOptions().seed(seed + 4)),
        drop_ffn_(d, o.dropout(), DropoutOptions().seed(seed + 5)) {}

  static Index check_ff_dim(Index ff_dim) {
    if (ff_dim <= 0) detail::throw_config("TransformerEncoderBlock: ff_dim must be positive but got ", ff_dim);
    return ff_dim;
  }
  static const TransformerEncoderOptions& check_options(const TransformerEncoderOptions& o) {
    if (o.activation() != Activation::GELU && o.activation() != Activation::GELUTanh &&
        o.activation() != Activation::ReLU)
      detail::throw_config("TransformerEncoderBlock: activation must be gelu, gelu_tanh or relu but got ",
                           to_string(o.activation()));
    if (!(o.qkv_dropout() >= 0.0 && o.qkv_dropout() < 1.0))
      detail::throw_config("TransformerEncoderBlock: qkv_dropout must be in [0, 1) but got ", o.qkv_dropout());
    if (o.attention_window()) {
      if (*o.attention_window() < 1)
        detail::throw_config("TransformerEncoderBlock: attention_window must be at least 1 but got ",
                             *o.attention_window());
      if (!o.causal())
        detail::throw_config("TransformerEncoderBlock: attention_window needs causal (a window of past steps ",
                             "[t - w + 1, t]) but causal is false");
    }
    return o;
  }
  std::vector<const Layer<S>*> children() const {
    return {&mha_, &ln1_, &ln2_, &ffn1_, &ffn2_, &drop_attn_, &drop_hidden_, &drop_ffn_};
  }
  static void append(ParamList<S>& list, const std::string& prefix, Layer<S>& layer) {
    for (auto& p : layer.params()) {
      p.name = prefix + p.name;
      list.push_back(std::move(p));
    }
  }

  Index ff_dim_;
  TransformerEncoderOptions options_;
  MultiHeadAttention<S> mha_;
  LayerNorm<S> ln1_, ln2_;
  Dense<S> ffn1_, ffn2_;
  Dropout<S> drop_attn_, drop_hidden_, drop_ffn_;
  Tensor3<S> sum1_, sum2_, dh_;  // x + a; h + f (post-norm); gradient of h
};

}  // namespace seqattn
