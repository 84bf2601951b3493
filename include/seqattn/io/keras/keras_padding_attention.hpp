#pragma once
/// \file
/// KerasPaddingAttention: keras-self-attention's SeqSelfAttention on a padded batch, as Keras computes it (its
/// issue \#41). Keras masks a (query t, key s) pair only when BOTH steps are padding, so a valid step attends to
/// every step of the padded batch, padded ones included. This wrapper runs the wrapped SeqSelfAttention without
/// a mask over all T steps (so valid outputs read the padded steps, exactly as in Keras, and depend on T and on
/// the padded values), then writes 0 at the padded steps and passes the input mask on. The importer uses it
/// only where the values at padded steps are 0 in Keras as in seqattn (the output of Masking or of a
/// Bidirectional recurrent layer), so the valid outputs match Keras'.
///
/// ```unparsed
///   x (B, T, F) -> y (B, T, F);  out_mask = the input mask.
/// ```
/// Backward: dy at padded steps is ignored (they output 0), then the wrapped layer's backward over all steps.
/// Model files: class_name "KerasPaddingAttention", config = the wrapped SeqSelfAttention's config, registered in
/// model/layer_registry.hpp (so a converted Keras model loads with load_model, without the importer's libraries).

#include <memory>
#include <string>

#include "seqattn/core/layer.hpp"
#include "seqattn/layers/seq_self_attention.hpp"

namespace seqattn {

/// SeqSelfAttention computed over the padded batch as Keras does, with zeros at the padded steps (Keras import);
/// see the file documentation.
template <class S>
class KerasPaddingAttention final : public Layer<S> {
 public:
  /// Wraps SeqSelfAttention(in_features, options).
  KerasPaddingAttention(Index in_features, SeqSelfAttentionOptions options)
      : Layer<S>(in_features), inner_(in_features, options) {}
  /// A copy of the wrapper and its attention layer.
  KerasPaddingAttention(const KerasPaddingAttention& o) : Layer<S>(o), inner_(o.inner_) {}
  /// Assigns the wrapped layer in place (Layer::assign).
  KerasPaddingAttention& operator=(const KerasPaddingAttention& o) {
    Layer<S>::operator=(o);
    inner_.assign(o.inner_);
    return *this;
  }

  /// The wrapped attention layer.
  SeqSelfAttention<S>& inner() { return inner_; }
  std::string class_name() const override { return "KerasPaddingAttention"; }
  Config config() const override { return inner_.config(); }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "KerasPaddingAttention config");
    const SeqSelfAttentionOptions options = read_options<SeqSelfAttentionOptions>(r);
    r.finish();
    return std::make_unique<KerasPaddingAttention>(in_features, options);
  }
  Index out_features() const override { return inner_.out_features(); }
  std::string name() const override { return inner_.name(); }
  std::string describe() const override {
    return "KerasPaddingAttention(" + inner_.describe() + ", attends to padded steps as keras-self-attention)";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<KerasPaddingAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const KerasPaddingAttention&>(other); }
  S extra_regularization_loss() const override { return inner_.regularization_loss(); }
  std::size_t cache_bytes(Index B, Index T) const override { return inner_.cache_bytes(B, T); }

 protected:
  /// x (B, T, F) -> inner(x, no mask) (B, T, F) -> y: 0 at padded steps
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    y = inner_.forward(x, Mask(), mode);
    zero_padded(y, mask);
  }
  /// dy (B, T, F) -> dy with 0 at padded steps -> inner backward (all steps) -> dx (B, T, F)
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    dy_ = dy;
    zero_padded(dy_, mask);
    dx = inner_.backward(x, Mask(), dy_);
  }
  void collect_params(ParamList<S>& list) override {
    for (auto& p : inner_.params()) list.push_back(p);
  }

 private:
  static void zero_padded(Tensor3<S>& t, const Mask& mask) {
    const Index B = t.dimension(0), T = t.dimension(1), F = t.dimension(2);
    for (Index b = 0; b < B; ++b)
      for (Index s = mask.length(b, T); s < T; ++s)
        for (Index f = 0; f < F; ++f) t(b, s, f) = S(0);
  }

  SeqSelfAttention<S> inner_;
  Tensor3<S> dy_;
};

}  // namespace seqattn
