#pragma once
/// \file
/// Maps each Keras layer of a KerasModel (io/keras/model_config.hpp) to seqattn layers and loads its weights.
/// Two passes: plan() checks every layer and option (ConfigError naming the Keras layer, its class and what is
/// unsupported) before anything is built; build() then constructs the layers and copies the weights (FormatError
/// / MismatchError for a missing or misshapen weight). The table of mapped layers and every semantic difference
/// is in io/keras_import.hpp.

#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "seqattn/io/keras/hdf5_reader.hpp"
#include "seqattn/io/keras/keras_padding_attention.hpp"
#include "seqattn/io/keras/model_config.hpp"
#include "seqattn/layers/masking.hpp"
#include "seqattn/seqattn.hpp"

namespace seqattn {
namespace detail {
namespace keras {

// Reads a layer's config keys, tracking which were used: finish() refuses any key left over.
class ConfigReader {
 public:
  ConfigReader(const KerasLayer& layer, std::string who) : layer_(layer), who_(std::move(who)) {
    // Keys that never change inference: names, dtypes, initializers, seeds; and the weight rules that
    // apply_keras_rules maps (trainable, <role>_regularizer / <role>_constraint of the roles of
    // core/weight_rules.hpp). Any other regularizer or constraint that is set (activity_regularizer, a rule of
    // another name) is left for finish() to refuse: it would change training.
    for (const auto& kv : layer.config.items()) {
      const std::string& k = kv.key();
      if (k == "name" || k == "trainable" || k == "dtype" || k == "seed" || ends_with(k, "_initializer") ||
          k == "batch_input_shape" || k == "batch_shape" || k == "build_config" ||
          ((ends_with(k, "_regularizer") || ends_with(k, "_constraint")) && (kv.value().is_null() || role_rule(k))))
        used_.insert(k);
    }
  }

  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    throw_config(who_, ": layer '", layer_.name, "' (", layer_.class_name, "): ", std::forward<Parts>(parts)...);
  }

  bool has(const std::string& key) const { return layer_.config.contains(key) && !layer_.config[key].is_null(); }
  const json& raw(const std::string& key) {
    used_.insert(key);
    return layer_.config[key];
  }
  void ignore(std::initializer_list<const char*> keys) {
    for (const char* k : keys) used_.insert(k);
  }

  Index positive(const std::string& key) {
    if (!has(key)) fail("option '", key, "' is missing");
    const json& v = raw(key);
    if (v.is_array() && v.size() == 1) return positive_value(key, v[0]);
    return positive_value(key, v);
  }
  bool boolean(const std::string& key, bool fallback) {
    if (!has(key)) return (used_.insert(key), fallback);
    const json& v = raw(key);
    if (!v.is_boolean()) fail("option '", key, "' expected true or false but got ", v.dump());
    return v.get<bool>();
  }
  double number(const std::string& key, double fallback) {
    if (!has(key)) return (used_.insert(key), fallback);
    const json& v = raw(key);
    if (!v.is_number()) fail("option '", key, "' expected a number but got ", v.dump());
    return v.get<double>();
  }
  std::string string(const std::string& key, const std::string& fallback) {
    if (!has(key)) return (used_.insert(key), fallback);
    const json& v = raw(key);
    if (!v.is_string()) fail("option '", key, "' expected a string but got ", v.dump());
    return v.get<std::string>();
  }
  // The option must be absent, null or equal to one of `allowed` (JSON values); `why` ends the message.
  void require(const std::string& key, std::initializer_list<json> allowed, const std::string& why) {
    used_.insert(key);
    if (!has(key)) return;
    const json& v = layer_.config[key];
    for (const json& a : allowed)
      if (v == a) return;
    fail("option ", key, "=", v.dump(), " is not supported (", why, ")");
  }
  Activation activation(const std::string& key, const char* fallback = "linear") {
    std::string a = fallback;
    if (has(key)) {
      const json& v = raw(key);
      if (!v.is_string()) fail("option '", key, "' expected an activation name but got ", v.dump());
      a = v.get<std::string>();
    } else {
      used_.insert(key);
    }
    // Keras' names are the activation table's (layers/activation.hpp: "gelu" is the exact erf form in Keras
    // 2.15 and 3, "swish" is silu, "leaky_relu" has slope 0.2), except hard_sigmoid: Keras 2 meant
    // clip(0.2 x + 0.5, 0, 1), Keras 3 relu6(x + 3) / 6, and a file does not say which Keras wrote it.
    if (a == "hard_sigmoid")
      fail("activation 'hard_sigmoid' (option '", key, "') is not supported: Keras 2 and Keras 3 define it "
           "differently (clip(0.2 x + 0.5, 0, 1) and relu6(x + 3) / 6)");
    try {
      return activation_from_string(a);
    } catch (const ConfigError& e) {
      fail("activation '", a, "' (option '", key, "') is not supported: ", e.what());
    }
  }
  void finish() const {
    for (const auto& kv : layer_.config.items()) {
      if (used_.count(kv.key())) continue;
      if (kv.key() == "activity_regularizer")
        fail("option 'activity_regularizer' (", kv.value().dump(),
             ") is not supported: seqattn has no activity regularizers (a training loss on the layer's output)");
      if (ends_with(kv.key(), "_regularizer") || ends_with(kv.key(), "_constraint"))
        fail("option '", kv.key(), "' (", kv.value().dump(),
             ") is not supported: the importer maps the regularizers and constraints of the weight roles kernel, "
             "recurrent, bias, embeddings, gamma and beta only (core/weight_rules.hpp)");
      fail("option '", kv.key(), "' (", kv.value().dump(), ") is not known to the importer");
    }
  }

  // <role>_regularizer or <role>_constraint of a ParamRole that apply_keras_rules reads (not "other").
  static bool role_rule(const std::string& key) {
    for (std::size_t i = 0; i + 1 < kParamRoles; ++i) {
      const std::string role = to_string(static_cast<ParamRole>(i));
      if (key == role + "_regularizer" || key == role + "_constraint") return true;
    }
    return false;
  }

 private:
  static bool ends_with(const std::string& s, const char* tail) {
    const std::string t(tail);
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  }
  Index positive_value(const std::string& key, const json& v) const {
    if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > (1LL << 40))
      fail("option '", key, "' expected a positive integer but got ", v.dump());
    return v.get<Index>();
  }

  const KerasLayer& layer_;
  std::string who_;
  std::set<std::string> used_;
};

// A small Keras JSON value (a regularizer or constraint) as a Config (core/layer_config.hpp).
inline Config rule_config(const json& j) {
  if (j.is_boolean()) return Config(j.get<bool>());
  if (j.is_number_integer()) return Config(j.get<std::int64_t>());
  if (j.is_number()) return Config(j.get<double>());
  if (j.is_string()) return Config(j.get<std::string>());
  if (j.is_array()) {
    Config c = Config::array();
    for (const auto& e : j) c.push_back(rule_config(e));
    return c;
  }
  if (j.is_object()) {
    Config c = Config::object();
    for (const auto& kv : j.items()) c.set(kv.key(), rule_config(kv.value()));
    return c;
  }
  return Config();
}

// The weight rules of a Keras layer's config on the seqattn layer built for it (core/weight_rules.hpp):
// "trainable": false freezes it; <role>_regularizer (L1L2, L1, L2) and <role>_constraint (MaxNorm, NonNeg,
// UnitNorm, MinMaxNorm) for the roles kernel, recurrent, bias, embeddings, gamma, beta. A constraint with an axis
// on a matrix parameter is imported only for Dense, LSTM, GRU and Embedding, whose Keras weights have seqattn's
// (rows, cols) layout, and for keras-pos-embd's PositionEmbedding (embeddings) and keras-multi-head's
// MultiHeadAttention (Wq, Wk, Wv, Wo (F, F), bq .. bo: the roles kernel and bias) whose weights are seqattn's
// parameters as they are (Conv1D's (k, in, filters) kernel and Keras' own MultiHeadAttention's 3-D kernels are not:
// ConfigError). Any other regularizer or constraint that is set is refused by ConfigReader::finish().
// Regularizers are sums over the values, so they hold for every layout. Rules of a layer that the mapping
// disabled (BatchNormalization scale=False: gamma) are not applied, as in Keras.
template <class S>
void apply_keras_rules(Layer<S>& layer, const KerasLayer& src, const std::string& who) {
  try {
    const json& c = src.config;
    if (c.contains("trainable") && c["trainable"].is_boolean() && !c["trainable"].get<bool>())
      layer.set_trainable(false);
    const bool same_layout = src.class_name == "Dense" || src.class_name == "LSTM" || src.class_name == "GRU" ||
                             src.class_name == "Embedding" || src.class_name == "PositionEmbedding" ||
                             (src.class_name == "MultiHeadAttention" && c.contains("head_num"));
    ParamList<S> params = layer.params();
    for (std::size_t i = 0; i + 1 < kParamRoles; ++i) {
      const ParamRole role = static_cast<ParamRole>(i);
      const std::string name = to_string(role);
      if ((role == ParamRole::Gamma && c.value("scale", true) == false) ||
          (role == ParamRole::Beta && c.value("center", true) == false))
        continue;
      Config holder = Config::object();
      for (const char* kind : {"_regularizer", "_constraint"})
        if (c.contains(name + kind) && !c[name + kind].is_null()) holder.set(name + kind, rule_config(c[name + kind]));
      if (holder.keys().empty()) continue;
      seqattn::ConfigReader reader(holder, "Keras " + name + " rules");
      L1L2 reg;
      Constraint constraint;
      reader.read_into(name + "_regularizer", reg);
      reader.read_into(name + "_constraint", constraint);
      if (reg.active()) layer.set_regularizer(role, reg);
      if (!constraint.active()) continue;
      if (constraint.uses_axis() && !same_layout)
        for (const auto& p : params)
          if (p.role == role && p.shape.size() > 1)
            throw_config(name, "_constraint ", constraint.describe(), ": the Keras weight's layout differs from ",
                         "seqattn's parameter ", p.name, " ", p.shape_string(), ", so the axis does not carry over");
      layer.set_constraint(role, constraint);
    }
  } catch (const ConfigError& e) {
    throw_config(who, ": layer '", src.name, "' (", src.class_name, "): ", e.what());
  }
}

// The rules of the layer a Keras Bidirectional wraps (config "layer"; Keras 3 also writes "backward_layer", whose
// own rules then apply to the backward direction), set on the seqattn Bidirectional's forward_layer() and
// backward_layer() (their parameters, seqattn's Keras layout).
template <class S>
void apply_wrapped_rules(Bidirectional<S>& layer, const KerasLayer& src, const std::string& who) {
  KerasLayer inner;
  inner.class_name = src.config["layer"]["class_name"].get<std::string>();
  inner.name = src.name + "/" + src.config["layer"]["config"].value("name", std::string());
  inner.config = src.config["layer"]["config"];
  apply_keras_rules(layer.forward_layer(), inner, who);
  const json* back = src.config.contains("backward_layer") && src.config["backward_layer"].is_object() &&
                             src.config["backward_layer"].contains("config")
                         ? &src.config["backward_layer"]
                         : nullptr;
  if (back) {
    inner.name = src.name + "/" + (*back)["config"].value("name", std::string());
    inner.config = (*back)["config"];
  }
  apply_keras_rules(layer.backward_layer(), inner, who);
}

// What flows between layers while planning.
struct FlowState {
  Index features = 0;
  bool ids = false;         // the input is integer ids (B, T): seqattn takes them as (B, T, 1)
  bool mask = false;        // Keras carries a mask here (from Masking or Embedding mask_zero)
  bool padded_zero = true;  // padded steps hold 0 in Keras and in seqattn (or no mask)
  bool reduced = false;     // the time axis is gone in Keras ((B, F)); seqattn keeps (B, 1, F)
};

// One planned seqattn layer: a factory and the weight copies.
template <class S>
struct PlannedLayer {
  std::function<std::unique_ptr<Layer<S>>()> make;
  // Keras weight index -> seqattn parameter (or buffer) name, with the Keras shape expected.
  struct Copy {
    size_t keras_index;
    std::string param;
    std::vector<Index> keras_shape;
    std::function<void(const std::vector<S>&, S*)> transform;  // null: copy as is (row-major)
  };
  std::vector<Copy> copies;
  std::vector<std::pair<std::string, S>> fills;  // parameters set to a constant (BatchNorm scale=False)
  const KerasLayer* source = nullptr;
  std::vector<PlannedLayer> body;  // not empty: a Residual of these layers (make is null)
};

template <class S>
class LayerMapper {
 public:
  explicit LayerMapper(std::string who) : who_(std::move(who)) {}

  // Checks every layer and plans the seqattn layers; throws before anything is built.
  std::vector<PlannedLayer<S>> plan(const KerasModel& model, Index& in_features) {
    FlowState s = input_state(model.input_shape, "the model input");
    in_features = s.features;
    std::vector<PlannedLayer<S>> out;
    for (const KerasLayer& layer : model.layers) map_layer(layer, s, out);
    return out;
  }

  // What a model input of this shape (without the batch dimension) carries; `what` names it in errors.
  FlowState input_state(const std::vector<Index>& shape, const std::string& what) const {
    FlowState s;
    if (shape.size() == 1) {
      s.ids = true;
      s.features = 1;
    } else if (shape.size() == 2 && shape[1] > 0) {
      s.features = shape[1];
    } else {
      throw_config(who_, ": ", what, " has shape (batch", shape_tail(shape),
                   "); only (batch, time, features) inputs with a known feature size, or (batch, time) integer "
                   "ids for an Embedding, are supported");
    }
    return s;
  }

  // Graph import (import_keras_graph): one layer on one input, planned into `out` (s: its input, then its output).
  void map(const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) { map_layer(l, s, out); }

  // Keras' MultiHeadAttention called on several tensors: query q and keys/values kv (2 inputs), or query, key k and
  // value v (3 inputs: k != null). q becomes the output's state.
  void map_cross_attention(const KerasLayer& l, FlowState& q, const FlowState* k, const FlowState& v,
                           std::vector<PlannedLayer<S>>& out) {
    ConfigReader r(l, who_);
    if (l.config.contains("head_num"))
      r.fail("keras-multi-head's MultiHeadAttention on several input tensors is not supported");
    for (const FlowState* s : std::initializer_list<const FlowState*>{&q, k, &v}) {
      if (!s) continue;
      if (s->ids) r.fail("an input is integer ids (batch, time); only an Embedding can take them");
      if (s->reduced) r.fail("an input has no time axis");
    }
    if (k && (k->mask || v.mask))
      r.fail("a key and a value from different tensors with a mask are not supported (seqattn masks keys and "
             "values with one mask)");
    if (l.call_kwargs.is_object() && l.call_kwargs.value("use_causal_mask", false) == true)
      r.fail("use_causal_mask in cross-attention (query and value from different tensors) is not supported");
    map_keras_mha(r, l, q, out, k ? k->features : v.features, v.features, true);
  }

  // A merge layer (Add, Subtract, Multiply, Average, Maximum, Minimum; Concatenate when concat) of the states `in`:
  // checks its config and the inputs, returns the output's state. Masks: Keras ANDs the input masks (an input
  // without a mask keeps every step), as seqattn's merges do; at masked steps Keras computes the merge of what the
  // inputs hold there, seqattn writes 0.
  FlowState merge_state(const KerasLayer& l, const std::vector<FlowState>& in, bool concat) {
    ConfigReader r(l, who_);
    if (concat) {
      const json axis = l.config.contains("axis") ? r.raw("axis") : json(-1);
      const bool reduced = !in.empty() && in[0].reduced;
      const bool last = axis == json(-1) || axis == json(reduced ? 1 : 2);
      if (!last)
        r.fail("axis ", axis.dump(), " is not supported (only the last axis, the features: -1",
               reduced ? " or 1" : " or 2", ")");
    }
    r.finish();
    if (!l.call_kwargs.is_null())
      for (const auto& kv : l.call_kwargs.items())
        if (kv.key() != "training" && !(kv.key() == "mask" && kv.value().is_null()))
          r.fail("call argument '", kv.key(), "' is not supported");
    if (in.size() < 2) r.fail("takes ", in.size(), " input(s); a merge needs at least 2");
    if (l.class_name == "Subtract" && in.size() != 2) r.fail("takes ", in.size(), " inputs; Subtract takes 2");
    FlowState s = in[0];
    bool any_mask = false, all_zero = true;
    for (const FlowState& f : in) {
      if (f.ids) r.fail("an input is integer ids (batch, time); only an Embedding can take them");
      if (f.reduced != in[0].reduced)
        r.fail("merges an input with a time axis and one without (Keras broadcasting is not supported)");
      if (!concat && f.features != in[0].features)
        r.fail("merges inputs of ", in[0].features, " and ", f.features, " features (they must be equal)");
      any_mask = any_mask || f.mask;
      all_zero = all_zero && f.mask && f.padded_zero;
    }
    if (concat) {
      s.features = 0;
      for (const FlowState& f : in) s.features += f.features;
    }
    s.mask = any_mask;
    s.padded_zero = !any_mask || all_zero;  // merges of zeros are zero (Multiply, Maximum, ... included)
    return s;
  }

 private:
  static std::string shape_tail(const std::vector<Index>& shape) {
    std::string t;
    for (Index d : shape) t += d < 0 ? ", None" : ", " + std::to_string(d);
    return t;
  }

  template <class L, class... Args>
  static std::function<std::unique_ptr<Layer<S>>()> factory(Args... args) {
    return [=]() -> std::unique_ptr<Layer<S>> { return std::make_unique<L>(args...); };
  }

  void add(std::vector<PlannedLayer<S>>& out, const KerasLayer& src, std::function<std::unique_ptr<Layer<S>>()> make,
           std::vector<typename PlannedLayer<S>::Copy> copies = {}) {
    PlannedLayer<S> p;
    const std::string who = who_;
    if (src.class_name == "SeqSelfAttention")  // its regularizers are options (map_seq_self_attention)
      p.make = std::move(make);
    else
      p.make = [make = std::move(make), &src, who]() {
        std::unique_ptr<Layer<S>> layer = make();
        apply_keras_rules(*layer, src, who);
        if (auto* bi = dynamic_cast<Bidirectional<S>*>(layer.get())) apply_wrapped_rules(*bi, src, who);
        return layer;
      };
    p.copies = std::move(copies);
    p.source = &src;
    out.push_back(std::move(p));
  }

  void expect_weights(ConfigReader& r, const KerasLayer& l, size_t n) const {
    if (l.weights.size() != n) r.fail("expected ", n, " weight tensors but the file has ", l.weights.size());
  }

  void not_ids(ConfigReader& r, const FlowState& s) const {
    if (s.ids) r.fail("the model input is integer ids (batch, time); only an Embedding can take them");
  }

  // Mode expand of TrigPosEmbedding / PositionEmbedding reads the model input (B, T) of positions (seqattn: (B, T, 1)).
  void expand_input(ConfigReader& r, FlowState& s) const {
    if (!s.ids)
      r.fail("mode 'expand' takes the model's input (batch, time) of positions; here the input is (batch, time, ",
             s.features, ")");
    s.ids = false;
  }

  void map_layer(const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) {
    ConfigReader r(l, who_);
    const std::string& c = l.class_name;
    const Index F = s.features;
    using Copy = typename PlannedLayer<S>::Copy;
    if (c != "Embedding" && !(c == "TrigPosEmbedding" || c == "PositionEmbedding")) not_ids(r, s);
    if (!l.call_kwargs.is_null() && c != "MultiHeadAttention")
      for (const auto& kv : l.call_kwargs.items())
        if (kv.key() != "training" && !(kv.key() == "mask" && kv.value().is_null()))
          r.fail("call argument '", kv.key(), "' is not supported");
    if (c == "Dense") {
      const Index units = r.positive("units");
      const Activation act = r.activation("activation");
      const bool bias = r.boolean("use_bias", true);
      r.require("quantization_config", {nullptr}, "quantized weights");
      r.require("lora_rank", {nullptr}, "LoRA");
      r.finish();
      expect_weights(r, l, bias ? 2 : 1);
      std::vector<Copy> copies{{0, "W", {F, units}, nullptr}};
      if (bias) copies.push_back({1, "b", {units}, nullptr});
      add(out, l, factory<Dense<S>>(F, units, DenseOptions().activation(act).use_bias(bias)), copies);
      s.features = units;
      if (s.mask) s.padded_zero = false;  // Keras computes act(b) at padded steps, seqattn writes 0
    } else if (c == "Activation") {
      const Activation act = r.activation("activation");
      r.finish();
      add(out, l, factory<ActivationLayer<S>>(F, act));
      if (s.mask && act != Activation::ReLU && act != Activation::Tanh && act != Activation::Linear &&
          act != Activation::GELU)
        s.padded_zero = false;
    } else if (c == "Dropout" || c == "SpatialDropout1D") {
      const double rate = r.number("rate", 0.0);
      r.require("noise_shape", {nullptr}, "dropout noise shapes");
      r.finish();
      if (c != "Dropout") r.fail("not supported");
      add(out, l, factory<Dropout<S>>(F, rate));
    } else if (c == "Masking") {
      // mask_value NaN (Keras JSON: the bare token NaN, quoted by parse_config): Masking's missing-value form
      const bool nan = l.config.contains("mask_value") && l.config["mask_value"] == json("NaN");
      const double value =
          nan ? (r.raw("mask_value"), std::numeric_limits<double>::quiet_NaN()) : r.number("mask_value", 0.0);
      r.finish();
      add(out, l, factory<Masking<S>>(F, value));
      s.mask = true;
      s.padded_zero = true;
    } else if (c == "Embedding") {
      if (!s.ids) r.fail("an Embedding must take the model's integer ids (batch, time) as its input");
      const Index vocab = r.positive("input_dim"), dim = r.positive("output_dim");
      const bool mask_zero = r.boolean("mask_zero", false);
      r.ignore({"input_length"});
      r.require("quantization_config", {nullptr}, "quantized weights");
      r.require("sparse", {false}, "sparse gradients");
      r.require("lora_rank", {nullptr}, "LoRA");
      r.finish();
      expect_weights(r, l, 1);
      add(out, l, factory<Embedding<S>>(Index(1), vocab, dim, EmbeddingOptions().mask_zero(mask_zero)),
          {Copy{0, "embeddings", {vocab, dim}, nullptr}});
      s.ids = false;
      s.features = dim;
      if (mask_zero) {
        s.mask = true;
        s.padded_zero = false;  // Keras looks up row 0 at padded steps, seqattn writes 0
      }
    } else if (c == "Conv1D") {
      const Index filters = r.positive("filters"), k = r.positive("kernel_size");
      const Index stride = r.positive("strides"), dilation = r.positive("dilation_rate");
      const std::string padding = r.string("padding", "valid");
      const Activation act = r.activation("activation");
      const bool bias = r.boolean("use_bias", true);
      r.require("data_format", {"channels_last"}, "only channels_last");
      r.require("groups", {1}, "grouped convolutions");
      r.require("activity_regularizer", {nullptr}, "activity regularizers, a loss on the layer's output");
      r.finish();
      if (padding != "valid" && padding != "same" && padding != "causal")
        r.fail("padding '", padding, "' is not supported");
      if (stride > 1 && dilation > 1) r.fail("strides > 1 with dilation_rate > 1 (Keras refuses it too)");
      if (s.mask)
        r.fail(
            "Conv1D drops the Keras mask and convolves over the padded steps, whose values differ between Keras "
            "and seqattn here; put the Conv1D before the Masking / Embedding(mask_zero) layer");
      expect_weights(r, l, bias ? 2 : 1);
      std::vector<Copy> copies{{0, "W", {k, F, filters}, nullptr}};
      if (bias) copies.push_back({1, "b", {filters}, nullptr});
      add(out, l,
          factory<Conv1D<S>>(F, filters, k,
                             Conv1DOptions()
                                 .stride(stride)
                                 .dilation(dilation)
                                 .padding(padding_from_string(padding))
                                 .use_bias(bias)
                                 .activation(act)),
          copies);
      s.features = filters;
    } else if (c == "LSTM" || c == "GRU") {
      map_recurrent(r, l, s, out, false);
    } else if (c == "Bidirectional") {
      map_bidirectional(r, l, s, out);
    } else if (c == "LayerNormalization") {
      const bool pkg = !l.config.contains("axis");  // keras-layer-normalization has no axis key
      if (!pkg) {
        const json& axis = r.raw("axis");
        const bool last = axis == json(-1) || axis == json::array({-1}) || axis == json(2) || axis == json::array({2});
        if (!last) r.fail("axis ", axis.dump(), " is not supported (only the last axis, the features)");
        r.require("rms_scaling", {false}, "RMS normalization");
      }
      const double eps = r.number("epsilon", pkg ? 1e-14 : 1e-3);
      const bool center = r.boolean("center", true), scale = r.boolean("scale", true);
      r.finish();
      expect_weights(r, l, size_t(center) + size_t(scale));
      std::vector<Copy> copies;
      if (scale) copies.push_back({0, "gamma", {F}, nullptr});
      if (center) copies.push_back({size_t(scale), "beta", {F}, nullptr});
      add(out, l, factory<LayerNorm<S>>(F, LayerNormOptions().eps(eps).center(center).scale(scale)), copies);
      if (s.mask) s.padded_zero = false;
    } else if (c == "BatchNormalization") {
      const json axis = l.config.contains("axis") ? r.raw("axis") : json(-1);
      const bool last = axis == json(-1) || axis == json::array({-1}) || axis == json(2) || axis == json::array({2});
      if (!last) r.fail("axis ", axis.dump(), " is not supported (only the last axis, the features)");
      const double eps = r.number("epsilon", 1e-3);
      const bool center = r.boolean("center", true), scale = r.boolean("scale", true);
      r.ignore({"momentum"});
      r.require("synchronized", {false}, "synchronized batch normalization");
      r.require("renorm", {false}, "batch renormalization");
      r.require("virtual_batch_size", {nullptr}, "ghost batch normalization");
      r.finish();
      expect_weights(r, l, size_t(center) + size_t(scale) + 2);
      std::vector<Copy> copies;
      size_t i = 0;
      if (scale) copies.push_back({i++, "gamma", {F}, nullptr});
      if (center) copies.push_back({i++, "beta", {F}, nullptr});
      copies.push_back({i++, "running_mean", {F}, nullptr});
      copies.push_back({i++, "running_var", {F}, nullptr});
      add(out, l, factory<BatchNorm<S>>(F, BatchNormOptions().eps(eps).center(center).scale(scale)), copies);
      if (s.mask) s.padded_zero = false;
    } else if (c == "GlobalAveragePooling1D" || c == "GlobalMaxPooling1D") {
      r.require("data_format", {"channels_last"}, "only channels_last");
      r.require("keepdims", {false}, "keepdims");
      r.finish();
      if (s.reduced) r.fail("the input has no time axis");
      if (c == "GlobalMaxPooling1D" && s.mask)
        r.fail(
            "Keras' GlobalMaxPooling1D ignores the mask (the max runs over the padded steps too, whose values "
            "differ between Keras and seqattn here); seqattn's GlobalMaxPool uses the valid steps only, which "
            "would change the results of this model");
      if (c == "GlobalMaxPooling1D")
        add(out, l, factory<GlobalMaxPool<S>>(F));
      else
        add(out, l, factory<GlobalAvgPool<S>>(F));
      s.reduced = true;
      s.mask = false;
      s.padded_zero = true;
    } else if (c == "MultiHeadAttention" && l.config.contains("head_num")) {
      map_multi_head_pkg(r, l, s, out);
    } else if (c == "MultiHeadAttention") {
      map_keras_mha(r, l, s, out);
    } else if (c == "SeqSelfAttention") {
      map_seq_self_attention(r, l, s, out);
    } else if (c == "SeqWeightedAttention") {
      const bool bias = r.boolean("use_bias", true);
      r.require("return_attention", {false}, "a second output");
      r.finish();
      expect_weights(r, l, bias ? 2 : 1);
      std::vector<Copy> copies{{0, "W", {F, 1}, nullptr}};
      if (bias) copies.push_back({1, "b", {1}, nullptr});
      add(out, l, factory<SeqWeightedAttention<S>>(F, SeqWeightedAttentionOptions().use_bias(bias)), copies);
      s.reduced = true;
      s.mask = false;
      s.padded_zero = true;
    } else if (c == "ScaledDotProductAttention") {
      const bool history = r.boolean("history_only", false);
      r.require("return_attention", {false}, "a second output");
      r.finish();
      expect_weights(r, l, 0);
      // q = k = v = x, scores q k^T / sqrt(F): the same layer (layers/scaled_dot_product_attention.hpp).
      add(out, l, factory<ScaledDotProductAttention<S>>(F, ScaledDotProductAttentionOptions().history_only(history)));
      if (s.mask) s.padded_zero = false;
    } else if (c == "TrigPosEmbedding") {
      const std::string mode = r.string("mode", "add");
      const Index dim = l.config.contains("output_dim") && !l.config["output_dim"].is_null()
                            ? r.positive("output_dim")
                            : (r.ignore({"output_dim"}), 0);
      r.finish();
      if (mode != "add" && mode != "concat" && mode != "expand") r.fail("mode '", mode, "' is not supported");
      if (mode != "add" && dim <= 0) r.fail("mode ", mode, " needs output_dim");
      if (mode == "expand") {
        // The model input (B, T) holds one real position per step (any float: Keras casts it to floatx):
        // SinusoidalPositionalEncoding's expand mode, input (B, T, 1) -> (B, T, d). The mask passes through (none).
        expand_input(r, s);
        add(out, l,
            factory<SinusoidalPositionalEncoding<S>>(Index(1),
                                                     SinusoidalOptions().mode(PositionMode::Expand).output_dim(dim)));
        s.features = dim;
        return;
      }
      not_ids(r, s);
      const bool concat = mode == "concat";
      add(out, l,
          factory<SinusoidalPositionalEncoding<S>>(F, SinusoidalOptions()
                                                          .mode(concat ? PositionMode::Concat : PositionMode::Add)
                                                          .output_dim(concat ? dim : 0)));
      if (concat) s.features = F + dim;
      if (s.mask) s.padded_zero = false;
    } else if (c == "PositionEmbedding") {
      const std::string mode = r.string("mode", "expand");
      const Index input_dim = r.positive("input_dim"), dim = r.positive("output_dim");
      const json mask_zero = l.config.contains("mask_zero") ? r.raw("mask_zero") : json(false);
      r.require("activity_regularizer", {nullptr}, "activity regularizers, a loss on the layer's output");
      r.finish();
      if (mode != "add" && mode != "concat" && mode != "expand") r.fail("mode '", mode, "' is not supported");
      if (mode == "expand") {
        // The model input (B, T) holds one integer position per step: PositionEmbedding's expand mode, table
        // (2 input_dim + 1, d), row clip(p, -input_dim, input_dim) + input_dim. keras-pos-embd masks the steps
        // whose position equals mask_zero when mask_zero is truthy (Python): true compares as 1 (so
        // mask_zero=True masks position 1, not 0), a non-zero integer n masks position n; false, null and 0 make
        // no mask. Keras casts a float position to int32 (truncation); seqattn refuses a non-integer position.
        expand_input(r, s);
        std::optional<Index> mask_position;
        if (mask_zero.is_boolean()) {
          if (mask_zero.get<bool>()) mask_position = 1;
        } else if (mask_zero.is_number_integer()) {
          if (mask_zero.get<long long>() != 0) mask_position = mask_zero.get<Index>();
        } else if (!mask_zero.is_null()) {
          r.fail("mask_zero=", mask_zero.dump(), " is not supported (expected true, false or an integer position)");
        }
        expect_weights(r, l, 1);
        const Index rows = 2 * input_dim + 1;
        add(out, l,
            factory<PositionEmbedding<S>>(
                Index(1), input_dim,
                PositionEmbeddingOptions().mode(PositionMode::Expand).output_dim(dim).mask_position(mask_position)),
            {Copy{0, "embeddings", {rows, dim}, nullptr}});
        s.features = dim;
        if (mask_position) {
          s.mask = true;          // a step mask: the steps at the padding position, anywhere in the sequence
          s.padded_zero = false;  // Keras looks up their row anyway, seqattn writes 0
        }
        return;
      }
      not_ids(r, s);  // mask_zero has no effect in modes add and concat (Keras passes the input mask on)
      const bool concat = mode == "concat";
      if (!concat && dim != F) r.fail("mode add needs output_dim = the input features (", F, ") but got ", dim);
      expect_weights(r, l, 1);
      add(out, l,
          factory<PositionEmbedding<S>>(F, input_dim,
                                        PositionEmbeddingOptions()
                                            .mode(concat ? PositionMode::Concat : PositionMode::Add)
                                            .output_dim(concat ? dim : 0)),
          {Copy{0, "embeddings", {input_dim, dim}, nullptr}});
      if (concat) s.features = F + dim;
      if (s.mask) s.padded_zero = false;
    } else if (c == "Add") {
      map_residual(r, l, s, out);
    } else if (c == "InputLayer") {
      r.finish();
    } else {
      throw_config(who_, ": layer '", l.name, "' (", c,
                   ") is not supported: the importer maps InputLayer, Masking, "
                   "Embedding, Dense, Activation, Dropout, Conv1D, LSTM, GRU, Bidirectional, LayerNormalization, "
                   "BatchNormalization, GlobalAveragePooling1D, GlobalMaxPooling1D, MultiHeadAttention (Keras' and "
                   "keras-multi-head's), SeqSelfAttention, SeqWeightedAttention, ScaledDotProductAttention, "
                   "TrigPosEmbedding, PositionEmbedding, nested Sequential models and residual blocks Add([x, f(x)])");
    }
  }

  // LSTM / GRU options; `inner` for the layer of a Bidirectional.
  template <class Options>
  Options recurrent_options(ConfigReader& r, const std::string& cls, bool& sequences) {
    sequences = r.boolean("return_sequences", false);
    Options o;
    o.return_sequences(sequences).activation(r.activation("activation", "tanh"));
    o.recurrent_activation(r.activation("recurrent_activation", "sigmoid"));
    o.use_bias(r.boolean("use_bias", true));
    r.require("return_state", {false}, "a second output");
    r.require("go_backwards", {false}, "reversed input");
    r.require("stateful", {false}, "state kept between batches");
    r.require("time_major", {false}, "time-major input");
    r.require("activity_regularizer", {nullptr}, "activity regularizers, a loss on the layer's output");
    r.ignore({"dropout", "recurrent_dropout", "implementation", "unroll", "zero_output_for_mask", "unit_forget_bias"});
    if constexpr (std::is_same_v<Options, GRUOptions>)  // reset_after=False: bias (3U,), GRU reset_after(false)
      o.reset_after(r.boolean("reset_after", true));
    else
      (void)cls;
    return o;
  }

  // reset_after: GRU's bias is (2, 3U) (Keras reset_after=True) or (3U,) (reset_after=False).
  void recurrent_copies(const std::string& cls, Index F, Index units, bool bias, size_t first,
                        const std::string& prefix, std::vector<typename PlannedLayer<S>::Copy>& copies,
                        bool reset_after = true) {
    const Index G = cls == "LSTM" ? 4 : 3;
    copies.push_back({first, prefix + "kernel", {F, G * units}, nullptr});
    copies.push_back({first + 1, prefix + "recurrent_kernel", {units, G * units}, nullptr});
    if (bias) {
      if (cls == "LSTM" || !reset_after)
        copies.push_back({first + 2, prefix + "bias", {G * units}, nullptr});
      else
        copies.push_back({first + 2, prefix + "bias", {2, G * units}, nullptr});
    }
  }

  void map_recurrent(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out, bool) {
    const Index units = r.positive("units");
    bool seq = false;
    std::vector<typename PlannedLayer<S>::Copy> copies;
    if (s.reduced) r.fail("the input has no time axis");
    if (l.class_name == "LSTM") {
      LSTMOptions o = recurrent_options<LSTMOptions>(r, "LSTM", seq);
      r.finish();
      expect_weights(r, l, o.use_bias() ? 3 : 2);
      recurrent_copies("LSTM", s.features, units, o.use_bias(), 0, "", copies);
      add(out, l, factory<LSTM<S>>(s.features, units, o), copies);
    } else {
      GRUOptions o = recurrent_options<GRUOptions>(r, "GRU", seq);
      r.finish();
      expect_weights(r, l, o.use_bias() ? 3 : 2);
      recurrent_copies("GRU", s.features, units, o.use_bias(), 0, "", copies, o.reset_after());
      add(out, l, factory<GRU<S>>(s.features, units, o), copies);
    }
    s.features = units;
    if (!seq) {
      s.reduced = true;
      s.mask = false;
      s.padded_zero = true;
    } else if (s.mask) {
      s.padded_zero = false;  // Keras repeats the last valid output at padded steps, seqattn writes 0
    }
  }

  void map_bidirectional(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) {
    if (l.config.contains("merge_mode") && l.config["merge_mode"].is_null())
      r.fail("merge_mode None (the two directions as two outputs) is not supported");
    const std::string merge = r.string("merge_mode", "concat");
    MergeMode mode = MergeMode::Concat;
    bool known = false;
    for (const auto& [m, name] : config_names(MergeMode::Concat))
      if (merge == name) mode = m, known = true;
    if (!known)
      r.fail("merge_mode '", merge,
             "' is not supported (seqattn's Bidirectional merges by concat, sum, ave or mul; "
             "None, two outputs, is not)");
    if (!l.config.contains("layer") || !l.config["layer"].is_object() || !l.config["layer"].contains("class_name") ||
        !l.config["layer"].contains("config") || !l.config["layer"]["config"].is_object())
      r.fail("no wrapped layer");
    r.raw("layer");
    if (l.config.contains("backward_layer") && !l.config["backward_layer"].is_null()) {
      // Keras 3 always writes the backward layer: accept it when it mirrors the forward layer.
      const json& b = r.raw("backward_layer");
      json fc = l.config["layer"]["config"], bc = b.value("config", json::object());
      for (json* c : {&fc, &bc}) {
        for (const char* k : {"name", "go_backwards", "seed", "dtype"}) c->erase(k);
        for (auto it = c->begin(); it != c->end();) {  // initializers differ by their object ids only
          const std::string& k = it.key();
          const bool skip = k.find("_initializer") != std::string::npos ||
                            k.find("_regularizer") != std::string::npos || k.find("_constraint") != std::string::npos;
          it = skip ? c->erase(it) : std::next(it);
        }
      }
      if (b.value("class_name", "") != l.config["layer"]["class_name"] || fc != bc)
        r.fail("a backward_layer that differs from the forward layer is not supported");
    } else {
      r.ignore({"backward_layer"});
    }
    r.finish();
    KerasLayer inner;
    inner.class_name = l.config["layer"]["class_name"];
    inner.name = l.name + "/" + l.config["layer"]["config"].value("name", std::string());
    inner.config = l.config["layer"]["config"];
    ConfigReader ir(inner, who_);
    if (inner.class_name != "LSTM" && inner.class_name != "GRU")
      ir.fail("Bidirectional wraps only LSTM or GRU layers in the importer");
    if (s.reduced) r.fail("the input has no time axis");
    const Index units = ir.positive("units"), F = s.features;
    bool seq = false;
    std::vector<typename PlannedLayer<S>::Copy> copies;
    const BidirectionalOptions bo = BidirectionalOptions().merge_mode(mode);
    bool bias = true, reset_after = true;
    if (inner.class_name == "LSTM") {
      LSTMOptions o = recurrent_options<LSTMOptions>(ir, "LSTM", seq);
      ir.finish();
      bias = o.use_bias();
      add(out, l, factory<Bidirectional<S>>(F, units, o, bo));
    } else {
      GRUOptions o = recurrent_options<GRUOptions>(ir, "GRU", seq);
      ir.finish();
      bias = o.use_bias();
      reset_after = o.reset_after();
      add(out, l, factory<Bidirectional<S>>(F, units, o, bo));
    }
    const size_t per = bias ? 3 : 2;
    expect_weights(r, l, 2 * per);
    recurrent_copies(inner.class_name, F, units, bias, 0, "forward.", out.back().copies, reset_after);
    recurrent_copies(inner.class_name, F, units, bias, per, "backward.", out.back().copies, reset_after);
    s.features = merge == "concat" ? 2 * units : units;
    if (!seq) {
      s.reduced = true;
      s.mask = false;
    }
    s.padded_zero = true;  // Bidirectional writes 0 at padded steps in Keras and in seqattn (any merge of zeros)
  }

  // A residual block Add([x, f(x)]) (io/keras/model_config.hpp): Residual(f). f must keep the features, the
  // steps (checked when the Residual is built) and the mask.
  void map_residual(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) {
    r.finish();
    if (l.body.empty()) r.fail("an Add that is not a residual block Add([x, f(x)]) is not supported");
    if (s.ids || s.reduced) r.fail("a residual block needs (batch, time, features) inputs");
    FlowState inner = s;
    PlannedLayer<S> p;
    for (const KerasLayer& b : l.body) {
      if (b.class_name == "Masking" || b.class_name == "Embedding")
        r.fail("layer '", b.name, "' (", b.class_name,
               ") inside the residual branch changes the mask: seqattn's Residual keeps its input's mask");
      map_layer(b, inner, p.body);
    }
    if (inner.reduced) r.fail("the residual branch removes the time axis (Add needs equal shapes)");
    if (inner.features != s.features)
      r.fail("the residual branch outputs ", inner.features, " features but its input has ", s.features,
             " (Add needs equal shapes)");
    p.source = &l;
    out.push_back(std::move(p));
    if (s.mask) s.padded_zero = false;  // x + f(x) at padded steps: Keras computes f there, seqattn writes 0
  }

  void map_multi_head_pkg(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) {
    const Index heads = r.positive("head_num"), F = s.features;
    const Activation act = r.activation("activation", "relu");
    const bool bias = r.boolean("use_bias", true);
    const bool history = r.boolean("history_only", false);
    r.finish();
    if (s.reduced) r.fail("the input has no time axis");
    if (F % heads != 0) r.fail("the input features (", F, ") are not divisible by head_num (", heads, ")");
    if (act == Activation::Softmax) r.fail("activation softmax on the projections is not supported");
    expect_weights(r, l, bias ? 8 : 4);
    std::vector<typename PlannedLayer<S>::Copy> copies;
    const char* names[4][2] = {{"Wq", "bq"}, {"Wk", "bk"}, {"Wv", "bv"}, {"Wo", "bo"}};
    size_t i = 0;
    for (auto& n : names) {
      copies.push_back({i++, n[0], {F, F}, nullptr});
      if (bias) copies.push_back({i++, n[1], {F}, nullptr});
    }
    // keras-multi-head applies the activation to the q, k, v projections and to the output projection.
    add(out, l,
        factory<MultiHeadAttention<S>>(
            F, heads,
            MultiHeadAttentionOptions().use_bias(bias).causal(history).activation(act).output_activation(act)),
        copies);
    if (s.mask) s.padded_zero = false;
  }

  // key_features / value_features: the widths of separate key and value inputs (cross-attention), or 0.
  void map_keras_mha(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out,
                     Index key_features = 0, Index value_features = 0, bool cross = false) {
    const Index heads = r.positive("num_heads"), key_dim = r.positive("key_dim"), F = s.features;
    const Index Fk = key_features > 0 ? key_features : F, Fv = value_features > 0 ? value_features : F;
    const Index value_dim = l.config.contains("value_dim") && !l.config["value_dim"].is_null()
                                ? r.positive("value_dim")
                                : (r.ignore({"value_dim"}), key_dim);
    const bool bias = r.boolean("use_bias", true);
    r.ignore({"dropout", "query_shape", "key_shape", "value_shape"});
    r.require("output_shape", {nullptr}, "an output size other than the query's features");
    r.require("attention_axes", {nullptr, json::array({1})}, "attention over axes other than time");
    r.require("activity_regularizer", {nullptr}, "activity regularizers, a loss on the layer's output");
    r.require("flash_attention", {nullptr, false}, "");
    bool causal = false;
    const json kwargs = l.call_kwargs.is_object() ? l.call_kwargs : json::object();
    for (const auto& kv : kwargs.items()) {
      if (kv.key() == "use_causal_mask" && kv.value().is_boolean()) {
        causal = kv.value().get<bool>();
      } else if (kv.key() == "training" || (kv.key() == "mask" && kv.value().is_null()) ||
                 ((kv.key() == "return_attention_scores") && kv.value() == json(false))) {
      } else {
        r.fail("call argument '", kv.key(), "' = ", kv.value().dump(), " is not supported");
      }
    }
    r.finish();
    if (s.reduced) r.fail("the input has no time axis");
    if (value_dim != key_dim)
      r.fail("value_dim (", value_dim, ") != key_dim (", key_dim,
             ") is not supported: seqattn's MultiHeadAttention has one head size (its key_dim / head_size) for the "
             "query, key and value projections of every head, so its value projection is (F, heads x key_dim) where "
             "Keras' is (F, heads x value_dim) (seqattn's value_features is the width of a separate value input, "
             "torch's vdim, not a per-head value size)");
    expect_weights(r, l, bias ? 8 : 4);
    const Index D = heads * key_dim;
    std::vector<typename PlannedLayer<S>::Copy> copies;
    size_t i = 0;
    const char* names[3][2] = {{"Wq", "bq"}, {"Wk", "bk"}, {"Wv", "bv"}};
    const Index rows[3] = {F, Fk, Fv};
    for (int j = 0; j < 3; ++j) {
      copies.push_back({i++, names[j][0], {rows[j], heads, key_dim}, nullptr});
      if (bias) copies.push_back({i++, names[j][1], {heads, key_dim}, nullptr});
    }
    copies.push_back({i++, "Wo", {heads, key_dim, F}, nullptr});
    if (bias) copies.push_back({i++, "bo", {F}, nullptr});
    (void)D;
    const std::optional<Index> kf = cross ? std::optional<Index>(Fk) : std::nullopt;
    const std::optional<Index> vf = cross ? std::optional<Index>(Fv) : std::nullopt;
    add(out, l,
        factory<MultiHeadAttention<S>>(F, heads,
                                       MultiHeadAttentionOptions()
                                           .head_size(key_dim)
                                           .use_bias(bias)
                                           .causal(causal)
                                           .key_features(kf)
                                           .value_features(vf)),
        copies);
    if (s.mask) s.padded_zero = false;
  }

  void map_seq_self_attention(ConfigReader& r, const KerasLayer& l, FlowState& s, std::vector<PlannedLayer<S>>& out) {
    const Index F = s.features;
    const Index units = r.positive("units");
    const std::string type = r.string("attention_type", "additive");
    const bool history = r.boolean("history_only", false);
    Index width = 0;
    if (l.config.contains("attention_width") && !l.config["attention_width"].is_null())
      width = r.positive("attention_width");
    else
      r.ignore({"attention_width"});
    const Activation act = r.activation("attention_activation");
    const bool add_bias = r.boolean("use_additive_bias", true), att_bias = r.boolean("use_attention_bias", true);
    const double reg = r.number("attention_regularizer_weight", 0.0);
    r.require("return_attention", {false}, "a second output");
    // Its regularizers are options (below); constraints and trainable=false are not mapped for it: refused.
    r.require("kernel_constraint", {nullptr}, "constraints of SeqSelfAttention are not mapped");
    r.require("bias_constraint", {nullptr}, "constraints of SeqSelfAttention are not mapped");
    r.require("trainable", {true}, "a frozen SeqSelfAttention is not mapped");
    r.finish();
    if (s.reduced) r.fail("the input has no time axis");
    if (type != "additive" && type != "multiplicative") r.fail("attention_type '", type, "' is not supported");
    if (act == Activation::Softmax) r.fail("attention_activation softmax is not supported");
    SeqSelfAttentionOptions o;
    const bool additive = type == "additive";
    o.units(units).attention_type(additive ? AttentionType::Additive : AttentionType::Multiplicative);
    o.history_only(history).attention_activation(act).use_additive_bias(add_bias).use_attention_bias(att_bias);
    o.attention_regularizer_weight(reg);
    for (const char* key : {"kernel_regularizer", "bias_regularizer"}) {
      if (!l.config.contains(key) || l.config[key].is_null()) continue;
      Config holder = Config::object();
      holder.set(key, rule_config(l.config[key]));
      seqattn::ConfigReader reader(holder, who_ + ": layer '" + l.name + "' (SeqSelfAttention)");
      L1L2 v;
      reader.read_into(key, v);
      if (std::string(key) == "kernel_regularizer")
        o.kernel_regularizer(v);
      else
        o.bias_regularizer(v);
    }
    if (width > 0 && !(history && width >= 1000000000)) o.attention_width(width);  // 1e9: history_only without width
    std::vector<typename PlannedLayer<S>::Copy> copies;
    size_t i = 0;
    const std::string p = l.name + "_";
    if (additive) {
      copies.push_back({i++, "Wt", {F, units}, nullptr});
      copies.push_back({i++, "Wx", {F, units}, nullptr});
      if (add_bias) copies.push_back({i++, "bh", {units}, nullptr});
      copies.push_back({i++, "Wa", {units, 1}, nullptr});
    } else {
      copies.push_back({i++, "Wa", {F, F}, nullptr});
    }
    if (att_bias) copies.push_back({i++, "ba", {1}, nullptr});
    expect_weights(r, l, i);
    if (s.mask && !history) {
      // keras-self-attention issue #41: valid steps attend to padded steps too.
      if (!s.padded_zero)
        r.fail(
            "on a masked input Keras' SeqSelfAttention lets valid steps attend to the padded steps (its issue "
            "#41), whose values here differ between Keras and seqattn (they are 0 only right after Masking or a "
            "Bidirectional layer); set history_only=True, or put the layer right after Masking / Bidirectional");
      add(out, l, factory<KerasPaddingAttention<S>>(F, o), copies);
      s.padded_zero = false;  // Keras' padded rows attend to the valid steps; seqattn writes 0
      padding_attention_ = true;
    } else {
      add(out, l, factory<SeqSelfAttention<S>>(F, o), copies);
      if (s.mask) s.padded_zero = false;
    }
  }

 public:
  bool padding_attention_ = false;

 private:
  std::string who_;
};

}  // namespace keras
}  // namespace detail
}  // namespace seqattn
