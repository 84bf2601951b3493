#pragma once
/// \file
/// The layer registry: class name -> factory, for float and double. A model file (io/model_file.hpp) stores each
/// layer as an entry {"class_name": "Dense", "config": {...}, "in_features": 8} (layer_entry, core/layer.hpp);
/// build_layer\<S>(entry, in_features) rebuilds it with the registered factory. Every built-in layer is registered
/// under its class_name(): Dense, Activation, Dropout, LayerNorm, RMSNorm, BatchNorm, Embedding,
/// SinusoidalPositionalEncoding, PositionEmbedding, Conv1D, MaxPool1D, AvgPool1D, GlobalMaxPool, GlobalAvgPool,
/// LastStep, GatedMeanPool, BertPool, LSTM, GRU, Bidirectional, SeqSelfAttention, SeqWeightedAttention,
/// LastStepAttention, MultiHeadAttention, ScaledDotProductAttention, ResidualScaledDotProductAttention,
/// FeatureAttention, TemporalAttention, TransformerEncoderBlock, TransformerDecoderBlock, Residual,
/// MultiHead, Sequential, and the layers of imported Keras models (io/keras_import.hpp): Masking,
/// KerasPaddingAttention.
///
/// Your own layers: MyLayer\<S> overrides class_name() (returning the name it is registered under) and config(),
/// and has either a static from_config(Index in_features, const Config&) returning std::unique_ptr\<Layer\<S>>
/// (read its options with ConfigReader, core/layer_config.hpp) or a constructor MyLayer(Index, const Config&);
/// then, once, before saving or loading:
///
/// ```unparsed
///   register_layer<MyLayer>("MyLayer");   // both MyLayer<float> and MyLayer<double>
/// ```
/// Registering a name again replaces its factory. Thread-safe (a mutex around the table).
/// An entry may also hold "weight_rules" (core/weight_rules.hpp), set on the built layer (Layer::set_weight_rules).
/// Errors (ConfigError): an entry that is not {class_name, config, in_features}, an in_features other than the
/// features the previous layer outputs, an unknown class name (the message lists the registered ones), nesting
/// deeper than kMaxLayerDepth; a factory's own errors name the layer and the option.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/io/keras/keras_padding_attention.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/gated_pooling.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/last_step_attention.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/masking.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/layers/multi_head.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/rms_norm.hpp"
#include "seqattn/layers/scaled_dot_product_attention.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// Containers nest (Sequential in Residual in Sequential ...): deeper entries are refused.
inline constexpr int kMaxLayerDepth = 32;

/// The factories of the registered layer types for scalar S (one instance per S); see the file documentation.
template <class S>
class LayerRegistry {
 public:
  /// Builds the layer of `config` for `in_features` inputs; containers build their children with `build`.
  using Factory =
      std::function<std::unique_ptr<Layer<S>>(Index in_features, const Config& config, const LayerBuilder<S>& build)>;

  /// The registry of scalar type S.
  static LayerRegistry& instance() {
    static LayerRegistry registry;
    return registry;
  }

  /// Registers (or replaces) the factory of `class_name` (ConfigError for an empty name).
  void add(const std::string& class_name, Factory factory) {
    if (class_name.empty()) detail::throw_config("register_layer: the class name must not be empty");
    const std::lock_guard<std::mutex> lock(mutex_);
    factories_[class_name] = std::move(factory);
  }
  /// Whether a factory is registered under `class_name`.
  bool contains(const std::string& class_name) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return factories_.count(class_name) > 0;
  }
  /// The registered class names.
  std::vector<std::string> names() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [name, factory] : factories_) out.push_back(name);
    return out;
  }

  /// The layer of one entry {"class_name", "config", "in_features"}; in_features must equal `in_features`.
  std::unique_ptr<Layer<S>> build(const Config& entry, Index in_features, int depth = 0) const {
    if (depth >= kMaxLayerDepth)
      detail::throw_config("layer entry: containers nested deeper than ", kMaxLayerDepth, " levels");
    ConfigReader r(entry, "layer entry");
    const std::string type = r.read<std::string>("class_name");
    const Config& config = r.get("config");
    const Index in = r.read<Index>("in_features");
    const bool has_rules = r.has("weight_rules");
    const Config* rules = has_rules ? &r.get("weight_rules") : nullptr;
    r.finish();
    if (in != in_features)
      detail::throw_config(type, ": in_features expected ", in_features,
                           " (the features of its input in the model) but the entry says ", in);
    Factory factory;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto it = factories_.find(type);
      if (it == factories_.end()) {
        std::string known;
        for (const auto& [name, f] : factories_) known += (known.empty() ? "" : ", ") + name;
        detail::throw_config("unknown layer class '", type, "' (registered: ", known,
                             "; register your own layers with register_layer)");
      }
      factory = it->second;
    }
    const LayerBuilder<S> children = [this, depth](const Config& e, Index f) { return build(e, f, depth + 1); };
    std::unique_ptr<Layer<S>> layer = factory(in_features, config, children);
    if (!layer) detail::throw_config(type, ": the registered factory returned no layer");
    if (rules) layer->set_weight_rules(read_weight_rules(*rules, type + " weight_rules"));
    return layer;
  }

 private:
  LayerRegistry() {
    add_leaf<Dense<S>>("Dense");
    add_leaf<ActivationLayer<S>>("Activation");
    add_leaf<Dropout<S>>("Dropout");
    add_leaf<LayerNorm<S>>("LayerNorm");
    add_leaf<RMSNorm<S>>("RMSNorm");
    add_leaf<BatchNorm<S>>("BatchNorm");
    add_leaf<Embedding<S>>("Embedding");
    add_leaf<SinusoidalPositionalEncoding<S>>("SinusoidalPositionalEncoding");
    add_leaf<PositionEmbedding<S>>("PositionEmbedding");
    add_leaf<Conv1D<S>>("Conv1D");
    add_leaf<MaxPool1D<S>>("MaxPool1D");
    add_leaf<AvgPool1D<S>>("AvgPool1D");
    add_leaf<GlobalMaxPool<S>>("GlobalMaxPool");
    add_leaf<GlobalAvgPool<S>>("GlobalAvgPool");
    add_leaf<LastStep<S>>("LastStep");
    add_leaf<GatedMeanPool<S>>("GatedMeanPool");
    add_leaf<BertPool<S>>("BertPool");
    add_leaf<LSTM<S>>("LSTM");
    add_leaf<GRU<S>>("GRU");
    add_leaf<SeqSelfAttention<S>>("SeqSelfAttention");
    add_leaf<SeqWeightedAttention<S>>("SeqWeightedAttention");
    add_leaf<LastStepAttention<S>>("LastStepAttention");
    add_leaf<MultiHeadAttention<S>>("MultiHeadAttention");
    add_leaf<ScaledDotProductAttention<S>>("ScaledDotProductAttention");
    add_leaf<ResidualScaledDotProductAttention<S>>("ResidualScaledDotProductAttention");
    add_leaf<FeatureAttention<S>>("FeatureAttention");
    add_leaf<TemporalAttention<S>>("TemporalAttention");
    add_leaf<TransformerEncoderBlock<S>>("TransformerEncoderBlock");
    add_leaf<TransformerDecoderBlock<S>>("TransformerDecoderBlock");
    add_leaf<Masking<S>>("Masking");
    add_leaf<Merge<S>>("Merge");
    add_leaf<Concatenate<S>>("Concatenate");
    add_leaf<KerasPaddingAttention<S>>("KerasPaddingAttention");
    factories_["Bidirectional"] = &Bidirectional<S>::from_config;
    factories_["Residual"] = &Residual<S>::from_config;
    factories_["MultiHead"] = &MultiHead<S>::from_config;
    factories_["Graph"] = [](Index in, const Config& config, const LayerBuilder<S>& build) {
      return std::unique_ptr<Layer<S>>(std::make_unique<Graph<S>>(Graph<S>::from_config(in, config, build)));
    };
    factories_["Sequential"] = [](Index in, const Config& config, const LayerBuilder<S>& build) {
      return std::unique_ptr<Layer<S>>(std::make_unique<Sequential<S>>(Sequential<S>::from_config(in, config, build)));
    };
  }
  template <class L>
  void add_leaf(const char* name) {
    factories_[name] = [](Index in, const Config& config, const LayerBuilder<S>&) {
      return L::from_config(in, config);
    };
  }

  mutable std::mutex mutex_;
  std::map<std::string, Factory> factories_;
};

namespace detail {
template <class L, class = void>
struct HasFromConfig : std::false_type {};
template <class L>
struct HasFromConfig<L, std::void_t<decltype(L::from_config(Index(1), std::declval<const Config&>()))>>
    : std::true_type {};

template <template <class> class L, class S>
void register_layer_as(const std::string& name) {
  static_assert(std::is_base_of<Layer<S>, L<S>>::value, "register_layer<L>: L<S> must derive from Layer<S>");
  static_assert(HasFromConfig<L<S>>::value || std::is_constructible<L<S>, Index, const Config&>::value,
                "register_layer<L>: L<S> needs a static from_config(Index, const Config&) or a constructor "
                "L(Index, const Config&)");
  LayerRegistry<S>::instance().add(name, [](Index in, const Config& config, const LayerBuilder<S>&) {
    if constexpr (HasFromConfig<L<S>>::value) {
      return std::unique_ptr<Layer<S>>(L<S>::from_config(in, config));
    } else {
      return std::unique_ptr<Layer<S>>(std::make_unique<L<S>>(in, config));
    }
  });
}
}  // namespace detail

/// Registers the layer template L (L\<float> and L\<double>) under `class_name` (what `L<S>::class_name()` returns).
template <template <class> class L>
void register_layer(const std::string& class_name) {
  detail::register_layer_as<L, float>(class_name);
  detail::register_layer_as<L, double>(class_name);
}

/// The layer of a model-file entry for `in_features` inputs (see the file comment).
template <class S>
std::unique_ptr<Layer<S>> build_layer(const Config& entry, Index in_features) {
  return LayerRegistry<S>::instance().build(entry, in_features);
}

}  // namespace seqattn
