#pragma once
/// \file
/// The layer chain of a Keras model config (the JSON of a `.h5`'s `model_config` attribute or of a `.keras`'s
/// config.json), flattened into its leaf layers in call order, each with the HDF5 paths of its weights in
/// Keras' order. Sequential models (nested ones are flattened into their parent) and functional models whose
/// graph is a chain (each layer called once, on the previous layer's output) are accepted, and residual blocks in
/// them: a tensor x feeding a chain f and an Add([x, f(x)]) (in either order) becomes one KerasLayer "Add" whose
/// body is f (seqattn's Residual(f)); blocks may nest inside f. Anything else is a ConfigError naming the layer
/// and why (a merge other than Add, an Add of two branches, a tensor feeding three layers, shared layers).
///
/// ```unparsed
///   Keras 2 `.h5`: weights of a top-level layer in /model_weights/<name>, in the order of the group's
///     `weight_names` attribute; a nested model keeps its layers' weights in its own group, named
///     "<layer>/<weight>".
///   Keras 3 `.keras`: weights at layers/<snake_case class>[_<n>]/vars/<i> (n: rank among the container's
///     layers of that class), sub-objects (cell, forward_layer, query_dense, ...) below.
/// ```
/// read_graph(): any functional graph (import_keras_graph): inputs, every call of every layer (KerasCall; shared
///
/// ```unparsed
///   layers have several), outputs; merges and MultiHeadAttention's (query, value, key) arguments in seqattn's order.
///   Keras 3 functional graphs carry a Masking layer's mask as two op layers (NotEqual(x, mask_value), then
///     Any(axis=-1)) passed as the `mask` argument of a later call: recognised and dropped when they repeat a
///     Masking layer of the same input and mask_value; refused otherwise.
/// ```

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/io/keras/hdf5_reader.hpp"

namespace seqattn {
namespace detail {
namespace keras {

using json = nlohmann::json;

struct KerasLayer {
  std::string class_name;
  std::string name;
  json config;                       // the layer's "config" object
  json call_kwargs;                  // functional call arguments (use_causal_mask), or null
  std::vector<std::string> weights;  // HDF5 dataset paths, Keras' weight order
  std::vector<KerasLayer> body;      // class_name "Add": the residual block Add([x, f(x)]), f = body
};

struct KerasModel {
  std::vector<Index> input_shape;  // without the batch dimension; -1 for None
  std::vector<KerasLayer> layers;
  bool keras3 = false;
};

// A functional graph (import_keras_graph): the model's inputs, every call of a layer ("node" in Keras: a layer called
// at two places has two) in an order where each call comes after the calls it reads, and the outputs.
struct KerasGraph;

struct KerasRef {  // a tensor: output `tensor` of call `node` of layer `layer`
  std::string layer;
  Index node = 0;
  Index tensor = 0;
};

struct KerasCall {
  std::string name;        // the graph node's name: the layer's name, "<layer>#<k>" for its call k > 0
  std::string layer_name;  // the Keras layer
  std::string class_name;
  Index node_index = 0;
  std::vector<KerasRef> inputs;     // the tensors it reads, in seqattn's order (MultiHeadAttention: query, key, value)
  std::vector<KerasLayer> leaves;   // the layer (one), or a nested Sequential's leaf layers (nested = true)
  bool nested = false;
  std::shared_ptr<const KerasGraph> sub;  // a nested functional model: its graph (leaves empty)
};

struct KerasGraph {
  std::vector<std::string> input_names;          // the graph inputs, in the model's input order
  std::vector<std::vector<Index>> input_shapes;  // without the batch dimension; -1 for None
  std::vector<KerasCall> calls;
  std::vector<KerasRef> outputs;
  bool keras3 = false;
};

// The graph importer's hint in the chain importer's refusals.
inline const char* graph_importer_hint() {
  return " (import_keras_graph<S>(path) imports functional graphs that are not chains as a Graph<S>)";
}

// Keras' to_snake_case (keras.src.utils.naming): "MultiHeadAttention" -> "multi_head_attention", "Conv1D" ->
// "conv1d", "LSTM" -> "lstm".
inline std::string snake_case(const std::string& name) {
  // (.)([A-Z][a-z]+) -> \1_\2
  std::string a;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (i > 0 && c >= 'A' && c <= 'Z' && i + 1 < name.size() && name[i + 1] >= 'a' && name[i + 1] <= 'z' &&
        !(a.size() && a.back() == '_'))
      a += '_';
    a += c;
  }
  // ([a-z])([A-Z]) -> \1_\2, then lower
  std::string b;
  for (size_t i = 0; i < a.size(); ++i) {
    const char c = a[i];
    if (i > 0 && c >= 'A' && c <= 'Z' && a[i - 1] >= 'a' && a[i - 1] <= 'z') b += '_';
    b += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return b;
}

class ModelConfigReader {
 public:
  ModelConfigReader(const H5File& weights, std::string who, bool keras3)
      : h5_(weights), who_(std::move(who)), keras3_(keras3) {}

  KerasModel read(const json& root) {
    KerasModel model;
    model.keras3 = keras3_;
    if (!root.is_object() || !root.contains("class_name") || !root["class_name"].is_string() ||
        !root.contains("config") || !root["config"].is_object())
      fail("the model config is not a Keras model (no class_name and config)");
    const std::string cls = root["class_name"];
    if (cls == "Sequential") {
      sequential(root["config"], model, "", keras3_ ? "" : "/model_weights", true);
    } else if (cls == "Functional" || cls == "Model") {
      functional(root["config"], model);
    } else {
      fail("the model is a '", cls, "'; only Sequential and functional (Functional / Model) models can be imported");
    }
    if (model.input_shape.empty()) fail("the model config gives no input shape");
    return model;
  }

  // A functional model as a graph (import_keras_graph): Input layers -> inputs (input_layers order), every call of
  // every layer -> a KerasCall (nested Sequential models: one call holding their leaf layers), output_layers ->
  // outputs. Keras 3's Masking mask ops (NotEqual -> Any) are dropped as in the chain reader.
  KerasGraph read_graph(const json& root) {
    KerasGraph graph;
    graph.keras3 = keras3_;
    if (!root.is_object() || !root.contains("class_name") || !root["class_name"].is_string() ||
        !root.contains("config") || !root["config"].is_object())
      fail("the model config is not a Keras model (no class_name and config)");
    const std::string cls = root["class_name"];
    if (cls != "Functional" && cls != "Model")
      fail("the model is a '", cls, "'; import_keras_graph reads functional (Functional / Model) models");
    return graph_of(root["config"], "", "/model_weights", true, 0);
  }

 private:
  // The graph of a functional model's config; k3_container, h5_group and top locate its weights (add_layer).
  KerasGraph graph_of(const json& config, const std::string& k3_container, const std::string& h5_group, bool top,
                      int depth) {
    if (depth > 16) fail("functional models nested deeper than 16 levels");
    KerasGraph graph;
    graph.keras3 = keras3_;
    // Each layer's calls, parsed.
    struct Parsed {
      const json* layer;
      std::string name, cls;
      std::vector<std::vector<KerasRef>> args;   // per call: positional tensors (merge lists flattened)
      std::vector<std::map<std::string, KerasRef>> named;  // per call: tensor keyword arguments
      std::vector<std::string> mask;             // per call: the layer whose output is the mask argument, or ""
      std::vector<json> scalars;                 // per call: the other keyword arguments
      std::vector<bool> scalar_args;             // per call: a positional argument that is not a tensor
    };
    std::vector<Parsed> layers;
    std::map<std::string, size_t> index;
    for (const json& layer : layers_of(config, *this)) {
      check_layer(layer);
      Parsed p;
      p.layer = &layer;
      p.name = name_of(layer);
      p.cls = layer["class_name"];
      if (index.count(p.name)) fail("two layers are named '", p.name, "'");
      const json inbound = layer.contains("inbound_nodes") ? layer["inbound_nodes"] : json::array();
      if (!inbound.is_array()) fail("layer '", p.name, "': inbound_nodes is not a list");
      for (const json& n : inbound) {
        std::vector<KerasRef> args;
        std::map<std::string, KerasRef> named;
        std::string mask;
        json scalars = json::object();
        bool scalar_arg = false;
        if (n.is_object()) {  // Keras 3: {"args": [...], "kwargs": {...}}
          if (n.contains("args") && n["args"].is_array())
            for (const json& a : n["args"]) {
              if (tensor3(a)) {
                args.push_back(ref3(a, p.name));
              } else if (a.is_array() && !a.empty()) {
                for (const json& t : a) {
                  if (!tensor3(t)) fail("layer '", p.name, "' (", p.cls, "): a list argument that is not tensors");
                  args.push_back(ref3(t, p.name));
                }
              } else {
                scalar_arg = true;
              }
            }
          if (n.contains("kwargs") && n["kwargs"].is_object())
            for (const auto& kv : n["kwargs"].items()) {
              if (kv.key() == "mask" && tensor3(kv.value())) {
                mask = ref3(kv.value(), p.name).layer;
              } else if (kv.key() == "mask" && kv.value().is_array() &&
                         std::all_of(kv.value().begin(), kv.value().end(), [](const json& m) { return m.is_null(); })) {
                // no mask for any of several inputs (a nested model's call)
              } else if (tensor3(kv.value())) {
                named[kv.key()] = ref3(kv.value(), p.name);
              } else if (kv.value().is_object() || kv.value().is_array()) {
                fail("layer '", p.name, "' (", p.cls, "): call argument '", kv.key(), "' is not supported");
              } else {
                scalars[kv.key()] = kv.value();
              }
            }
        } else if (n.is_array()) {  // Keras 2: [[name, node, tensor, kwargs], ...]
          for (const json& t : n) {
            if (!ref2(t)) fail("layer '", p.name, "': malformed inbound node");
            args.push_back(KerasRef{t[0].get<std::string>(), t[1].get<Index>(), t[2].get<Index>()});
            if (t.size() >= 4 && t[3].is_object())
              for (const auto& kv : t[3].items()) {
                if (ref2(kv.value())) {
                  const json& v = kv.value();
                  const KerasRef r{v[0].get<std::string>(), v[1].get<Index>(), v[2].get<Index>()};
                  if (kv.key() == "mask")
                    mask = r.layer;
                  else
                    named[kv.key()] = r;
                } else if (kv.value().is_object() || kv.value().is_array()) {
                  fail("layer '", p.name, "' (", p.cls, "): call argument '", kv.key(), "' is not supported");
                } else {
                  scalars[kv.key()] = kv.value();
                }
              }
          }
        } else {
          fail("layer '", p.name, "': malformed inbound node");
        }
        p.args.push_back(std::move(args));
        p.named.push_back(std::move(named));
        p.mask.push_back(mask);
        p.scalars.push_back(std::move(scalars));
        p.scalar_args.push_back(scalar_arg);
      }
      index[p.name] = layers.size();
      layers.push_back(std::move(p));
    }
    // Keras 3 mask ops (the chain reader's rule, on each layer's first call).
    std::vector<Node> first_calls;
    for (const Parsed& p : layers) {
      Node n;
      n.layer = p.layer;
      if (!p.args.empty())
        for (const KerasRef& r : p.args[0])
          if (std::find(n.inputs.begin(), n.inputs.end(), r.layer) == n.inputs.end()) n.inputs.push_back(r.layer);
      first_calls.push_back(std::move(n));
    }
    const std::set<std::string> dropped = masking_mask_ops(first_calls);
    // Inputs, in input_layers order.
    const std::vector<KerasRef> ins = refs_list(config, "input_layers");
    const std::vector<KerasRef> outs = refs_list(config, "output_layers");
    if (ins.empty()) fail("the functional model has no input_layers");
    if (outs.empty()) fail("the functional model has no output_layers");
    for (const KerasRef& r : ins) {
      const auto it = index.find(r.layer);
      if (it == index.end() || layers[it->second].cls != "InputLayer")
        fail("input '", r.layer, "' is not an InputLayer of the model");
      KerasModel shape;
      take_input_shape((*layers[it->second].layer)["config"], shape);
      if (shape.input_shape.empty()) fail("input '", r.layer, "' gives no input shape");
      graph.input_names.push_back(r.layer);
      graph.input_shapes.push_back(shape.input_shape);
    }
    for (const Parsed& p : layers)
      if (p.cls == "InputLayer" && std::find(graph.input_names.begin(), graph.input_names.end(), p.name) ==
                                       graph.input_names.end())
        fail("InputLayer '", p.name, "' is not one of the model's input_layers");
    // Keras 3 weight paths: the rank of each layer among the model's layers of its class, in config order.
    std::map<std::string, int> rank;
    std::map<std::string, std::string> k3;
    for (const Parsed& p : layers)
      if (!dropped.count(p.name) && p.cls != "InputLayer") k3[p.name] = keras3_path(k3_container, p.cls, rank);
    // Keras 2 numbers the calls of a nested model from 1 (its call 0 links its own inputs to its outputs and is not
    // saved: Keras' _should_skip_first_node); Keras 3 from 0.
    const auto norm = [&](KerasRef r) {
      const auto it = index.find(r.layer);
      if (keras3_ || it == index.end()) return r;
      const Parsed& p = layers[it->second];
      const json& c = (*p.layer)["config"];
      const bool skip = p.cls == "Functional" || p.cls == "Model" ||
                        (p.cls == "Sequential" && c.contains("layers") && c["layers"].is_array() &&
                         !c["layers"].empty() && c["layers"][0].is_object() &&
                         c["layers"][0].value("class_name", json()) == json("InputLayer"));
      if (skip) {
        if (r.node < 1)
          fail("a reference to call ", r.node, " of nested model '", r.layer, "' (Keras 2 numbers them from 1)");
        --r.node;
      }
      return r;
    };
    // The calls, each after the calls it reads (and after call 0 of its own layer).
    std::set<std::string> done(graph.input_names.begin(), graph.input_names.end());
    std::map<std::string, std::vector<KerasLayer>> first_leaves;
    std::map<std::string, std::shared_ptr<const KerasGraph>> first_sub;
    const auto call_name = [](const std::string& layer, Index k) {
      return k == 0 ? layer : layer + "#" + std::to_string(k);
    };
    const auto ready = [&](const KerasRef& r) {
      const auto it = index.find(r.layer);
      if (it == index.end()) return false;
      if (layers[it->second].cls == "InputLayer") return r.node == 0 && done.count(r.layer) > 0;
      return done.count(call_name(r.layer, r.node)) > 0;
    };
    struct Pending {
      size_t layer;
      Index call;
    };
    std::vector<Pending> pending;
    for (size_t i = 0; i < layers.size(); ++i) {
      const Parsed& p = layers[i];
      if (p.cls == "InputLayer" || dropped.count(p.name)) continue;
      if (p.args.empty()) fail("layer '", p.name, "' (", p.cls, ") is never called in the graph");
      for (size_t k = 0; k < p.args.size(); ++k) pending.push_back(Pending{i, Index(k)});
    }
    while (!pending.empty()) {
      bool progress = false;
      for (size_t j = 0; j < pending.size();) {
        const Parsed& p = layers[pending[j].layer];
        const size_t k = static_cast<size_t>(pending[j].call);
        KerasCall call;
        call.layer_name = p.name;
        call.class_name = p.cls;
        call.node_index = Index(k);
        call.name = call_name(p.name, Index(k));
        if (p.scalar_args[k])
          fail("layer '", p.name, "' (", p.cls, "): a positional call argument that is not a tensor is not supported");
        const std::string& m = p.mask[k];
        if (!m.empty() && !dropped.count(m))
          fail("layer '", p.name, "': its mask argument comes from '", m, "', which is not a Masking layer's mask");
        call.inputs = call_inputs(p.name, p.cls, *p.layer, p.args[k], p.named[k]);
        for (KerasRef& r : call.inputs) r = norm(r);
        bool ok = k == 0 || done.count(p.name) > 0;
        for (const KerasRef& r : call.inputs) {
          if (r.tensor != 0)
            fail("layer '", p.name, "' reads output ", r.tensor, " of layer '", r.layer,
                 "' (layers with several outputs are not supported)");
          if (dropped.count(r.layer))
            fail("layer '", p.name, "' reads '", r.layer, "', an operation that is not supported as a layer input");
          if (!index.count(r.layer)) fail("layer '", p.name, "' reads '", r.layer, "', which is not in the model");
          ok = ok && ready(r);
        }
        if (!ok) {
          ++j;
          continue;
        }
        if (p.cls == "Functional" || p.cls == "Model") {  // a nested functional model: its own graph
          for (const auto& kv : p.scalars[k].items())
            if (kv.key() != "training" && !(kv.key() == "mask" && kv.value().is_null()))
              fail("layer '", p.name, "' (", p.cls, "): call argument '", kv.key(), "' is not supported");
          if (k == 0)
            first_sub[p.name] = std::make_shared<const KerasGraph>(
                graph_of((*p.layer)["config"], k3.at(p.name), top ? "/model_weights/" + p.name : h5_group, false,
                         depth + 1));
          call.sub = first_sub.at(p.name);
        } else if (k == 0) {
          KerasModel tmp;
          std::map<std::string, int> unused;
          add_layer(*p.layer, tmp, k3_container, h5_group, top, unused, p.scalars[k], &k3.at(p.name));
          call.leaves = std::move(tmp.layers);
          call.nested = p.cls == "Sequential";
          first_leaves[p.name] = call.leaves;
        } else {  // a later call of a layer (shared): the layers of its first call, with this call's arguments
          call.leaves = first_leaves.at(p.name);
          if (!call.nested && call.leaves.size() == 1) call.leaves[0].call_kwargs = p.scalars[k];
          call.nested = p.cls == "Sequential";
        }
        done.insert(call.name);
        graph.calls.push_back(std::move(call));
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(j));
        progress = true;
      }
      if (!progress)
        fail("layer '", layers[pending[0].layer].name, "' reads a tensor that no call of the graph computes first");
    }
    for (KerasRef r : outs) {
      r = norm(r);
      if (r.tensor != 0) fail("output ", r.tensor, " of layer '", r.layer, "' (several outputs) is not supported");
      if (!ready(r)) fail("output '", r.layer, "' (call ", r.node, ") is not computed by the graph");
      graph.outputs.push_back(r);
    }
    return graph;
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    throw_config(who_, ": ", std::forward<Parts>(parts)...);
  }

  // Keras 3 tensor argument {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}.
  static bool tensor3(const json& v) {
    return v.is_object() && v.contains("class_name") && v["class_name"] == "__keras_tensor__" &&
           v.contains("config") && v["config"].is_object() && v["config"].contains("keras_history") &&
           v["config"]["keras_history"].is_array() && v["config"]["keras_history"].size() == 3 &&
           v["config"]["keras_history"][0].is_string() && v["config"]["keras_history"][1].is_number_integer() &&
           v["config"]["keras_history"][2].is_number_integer();
  }
  KerasRef ref3(const json& v, const std::string& who) const {
    if (!tensor3(v)) fail("layer '", who, "': malformed tensor argument");
    const json& h = v["config"]["keras_history"];
    return KerasRef{h[0].get<std::string>(), h[1].get<Index>(), h[2].get<Index>()};
  }
  // Keras 2 tensor reference [layer, node, tensor(, kwargs)].
  static bool ref2(const json& v) {
    return v.is_array() && v.size() >= 3 && v.size() <= 4 && v[0].is_string() && v[1].is_number_integer() &&
           v[2].is_number_integer();
  }
  // input_layers / output_layers: [[layer, node, tensor], ...] or one [layer, node, tensor] (Keras 3, one tensor).
  std::vector<KerasRef> refs_list(const json& config, const char* key) const {
    std::vector<KerasRef> out;
    if (!config.contains(key)) return out;
    const json& v = config[key];
    if (ref2(v)) return {KerasRef{v[0].get<std::string>(), v[1].get<Index>(), v[2].get<Index>()}};
    if (!v.is_array()) fail("'", key, "' is not a list of tensors");
    for (const json& t : v) {
      if (!ref2(t)) fail("'", key, "' holds ", t.dump(), ", not a tensor [layer, node, tensor]");
      out.push_back(KerasRef{t[0].get<std::string>(), t[1].get<Index>(), t[2].get<Index>()});
    }
    return out;
  }
  static bool same(const KerasRef& a, const KerasRef& b) {
    return a.layer == b.layer && a.node == b.node && a.tensor == b.tensor;
  }
  // The tensors a call reads, in seqattn's order. Keras' MultiHeadAttention is called layer(query, value, key=None)
  // (positionally or by keyword); seqattn's node reads (query), (query, keys and values) or (query, key, value).
  std::vector<KerasRef> call_inputs(const std::string& name, const std::string& cls, const json& layer,
                                    const std::vector<KerasRef>& args,
                                    const std::map<std::string, KerasRef>& named) const {
    if (cls == "MultiHeadAttention" && !layer["config"].contains("head_num")) {
      const auto pick = [&](const char* key, size_t position) -> const KerasRef* {
        const auto it = named.find(key);
        if (it != named.end()) return &it->second;
        return position < args.size() ? &args[position] : nullptr;
      };
      for (const auto& kv : named)
        if (kv.first != "query" && kv.first != "value" && kv.first != "key")
          fail("layer '", name, "' (MultiHeadAttention): tensor call argument '", kv.first, "' is not supported");
      const KerasRef* query = pick("query", 0);
      const KerasRef* value = pick("value", named.count("query") ? 0 : 1);
      const KerasRef* key = pick("key", named.count("query") ? 1 : 2);
      if (!query || !value) fail("layer '", name, "' (MultiHeadAttention): no query or no value tensor");
      if (args.size() > 3) fail("layer '", name, "' (MultiHeadAttention): more than 3 tensor arguments");
      if (same(*query, *value) && (!key || same(*key, *value))) return {*query};
      if (!key || same(*key, *value)) return {*query, *value};
      return {*query, *key, *value};
    }
    if (!named.empty())
      fail("layer '", name, "' (", cls, "): tensor call argument '", named.begin()->first, "' is not supported");
    if (args.empty()) fail("layer '", name, "' (", cls, ") has no input tensor");
    return args;
  }

  static const json& layers_of(const json& config, const ModelConfigReader& self) {
    if (!config.contains("layers") || !config["layers"].is_array()) self.fail("a model config has no 'layers' list");
    return config["layers"];
  }

  void check_layer(const json& layer) const {
    if (!layer.is_object() || !layer.contains("class_name") || !layer["class_name"].is_string() ||
        !layer.contains("config") || !layer["config"].is_object())
      fail("a layer entry has no class_name and config");
  }

  static std::string name_of(const json& layer) {
    const json& c = layer["config"];
    if (c.contains("name") && c["name"].is_string()) return c["name"];
    if (layer.contains("name") && layer["name"].is_string()) return layer["name"];
    return "";
  }

  void take_input_shape(const json& config, KerasModel& model) const {
    for (const char* key : {"batch_input_shape", "batch_shape"}) {
      if (!config.contains(key) || model.input_shape.size()) continue;
      const json& shape = config[key];
      if (!shape.is_array() || shape.size() < 2) fail("input shape '", key, "' is not a list of at least 2 sizes");
      for (size_t i = 1; i < shape.size(); ++i) {
        if (shape[i].is_null()) {
          model.input_shape.push_back(-1);
        } else if (shape[i].is_number_integer() && shape[i].get<long long>() > 0) {
          model.input_shape.push_back(shape[i].get<Index>());
        } else {
          fail("input shape '", key, "' holds an invalid size ", shape[i].dump());
        }
      }
    }
  }

  // The `.keras` path of a layer: <container>/layers/<snake>[_n].
  std::string keras3_path(const std::string& container, const std::string& cls, std::map<std::string, int>& rank) {
    const std::string snake = snake_case(cls);
    const int n = rank[snake]++;
    return (container.empty() ? "" : container + "/") + "layers/" + snake + (n ? "_" + std::to_string(n) : "");
  }

  // h5_group: the HDF5 group of the top-level container ("/model_weights") or of a nested model.
  void sequential(const json& config, KerasModel& model, const std::string& k3_container, const std::string& h5_group,
                  bool top) {
    std::map<std::string, int> rank;
    for (const json& layer : layers_of(config, *this)) {
      check_layer(layer);
      const std::string cls = layer["class_name"];
      take_input_shape(layer["config"], model);
      if (cls == "InputLayer") continue;
      add_layer(layer, model, k3_container, h5_group, top, rank, json());
    }
    if (model.input_shape.empty() && config.contains("build_input_shape")) {
      json c;
      c["batch_input_shape"] = config["build_input_shape"];
      take_input_shape(c, model);
    }
  }

  void add_layer(const json& layer, KerasModel& model, const std::string& k3_container, const std::string& h5_group,
                 bool top, std::map<std::string, int>& rank, const json& kwargs, const std::string* k3_path = nullptr) {
    const std::string cls = layer["class_name"];
    const std::string name = name_of(layer);
    if (cls == "Sequential") {
      const std::string k3 = k3_path ? *k3_path : keras3_path(k3_container, cls, rank);
      sequential(layer["config"], model, k3, top ? "/model_weights/" + name : h5_group, false);
      return;
    }
    if (cls == "Functional" || cls == "Model")
      fail("layer '", name, "' (", cls, "): a functional model nested as a layer is not supported",
           graph_importer_hint());
    KerasLayer out;
    out.class_name = cls;
    out.name = name;
    out.config = layer["config"];
    out.call_kwargs = kwargs;
    if (keras3_) {
      keras3_weights(k3_path ? *k3_path : keras3_path(k3_container, cls, rank), cls, out.weights);
    } else {
      h5_weights(top ? h5_group + "/" + name : h5_group, top ? "" : name + "/", out.weights);
    }
    model.layers.push_back(std::move(out));
  }

  void h5_weights(const std::string& group, const std::string& prefix, std::vector<std::string>& out) const {
    if (!h5_.has_attribute(group, "weight_names")) return;  // a layer without weights may have no group
    for (const std::string& w : h5_.string_attributes(group, "weight_names"))
      if (prefix.empty() || w.compare(0, prefix.size(), prefix) == 0) out.push_back(group + "/" + w);
  }

  void keras3_weights(const std::string& path, const std::string& cls, std::vector<std::string>& out) const {
    for (int i = 0; i < 64; ++i) {
      const std::string v = path + "/vars/" + std::to_string(i);
      if (!h5_.exists(v)) break;
      out.push_back(v);
    }
    std::vector<std::string> subs;
    if (cls == "Bidirectional") subs = {"forward_layer/cell", "backward_layer/cell"};
    if (cls == "LSTM" || cls == "GRU") subs = {"cell"};
    if (cls == "MultiHeadAttention") subs = {"query_dense", "key_dense", "value_dense", "output_dense"};
    for (const std::string& s : subs) keras3_weights(path + "/" + s, "", out);
  }

  // Tensor references of a node's arguments: Keras 2 [name, node, index, kwargs] lists; Keras 3
  // {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, index]}} objects.
  static void refs_in(const json& v, std::vector<std::string>& out, bool keras2_list) {
    if (v.is_object()) {
      if (v.contains("class_name") && v["class_name"] == "__keras_tensor__" && v.contains("config") &&
          v["config"].is_object() && v["config"].contains("keras_history") && v["config"]["keras_history"].is_array() &&
          v["config"]["keras_history"].size() >= 1 && v["config"]["keras_history"][0].is_string()) {
        out.push_back(v["config"]["keras_history"][0]);
        return;
      }
      for (const auto& item : v.items()) refs_in(item.value(), out, keras2_list);
    } else if (v.is_array()) {
      if (keras2_list && v.size() >= 3 && v[0].is_string() && v[1].is_number_integer()) {
        out.push_back(v[0]);
        return;
      }
      for (const json& item : v) refs_in(item, out, keras2_list);
    }
  }

  struct Node {
    const json* layer = nullptr;
    std::vector<std::string> inputs;  // distinct input layer names, mask arguments excluded
    std::string mask_from;            // Keras 3: the layer whose output is passed as `mask`
    json kwargs;
  };

  // Keras 3 Masking pattern: NotEqual(x, v) -> Any(axis=-1) used as a mask; kept only as a repetition of a Masking
  // layer called on the same x with mask_value v. Returns the names of the op layers to drop.
  std::set<std::string> masking_mask_ops(const std::vector<Node>& nodes) const {
    std::set<std::string> dropped;
    for (const Node& n : nodes) {
      const std::string cls = (*n.layer)["class_name"];
      if (cls != "NotEqual") continue;
      const std::string name = name_of(*n.layer);
      const json& args = (*n.layer)["inbound_nodes"][0]["args"];
      bool ok = n.inputs.size() == 1 && args.is_array() && args.size() == 2 && args[1].is_number();
      if (ok) {
        ok = false;
        for (const Node& m : nodes)
          if ((*m.layer)["class_name"] == "Masking" && m.inputs == n.inputs &&
              (*m.layer)["config"].value("mask_value", 0.0) == args[1].get<double>())
            ok = true;
      }
      std::string any_name;
      for (const Node& m : nodes)
        if (m.inputs.size() == 1 && m.inputs[0] == name) {
          const json& c = (*m.layer)["config"];
          if ((*m.layer)["class_name"] == "Any" && c.value("axis", json(0)) == json(-1) && !c.value("keepdims", false))
            any_name = name_of(*m.layer);
          else
            ok = false;
        }
      if (!ok || any_name.empty())
        fail("layer '", name,
             "' (NotEqual): an operation in the graph that is not the mask of a Masking layer is "
             "not supported");
      dropped.insert(name);
      dropped.insert(any_name);
    }
    return dropped;
  }

  void functional(const json& config, KerasModel& model) {
    std::vector<Node> nodes;
    for (const json& layer : layers_of(config, *this)) {
      check_layer(layer);
      Node node;
      node.layer = &layer;
      const std::string name = name_of(layer);
      const json inbound = layer.contains("inbound_nodes") ? layer["inbound_nodes"] : json::array();
      if (!inbound.is_array()) fail("layer '", name, "': inbound_nodes is not a list");
      if (inbound.size() > 1)
        fail("layer '", name, "' (", layer["class_name"].get<std::string>(), ") is called ", inbound.size(),
             " times (shared layers are not supported: the graph must be a chain)", graph_importer_hint());
      std::vector<std::string> refs;
      if (inbound.size() == 1) {
        const json& n = inbound[0];
        if (n.is_object()) {  // Keras 3
          if (n.contains("args")) refs_in(n["args"], refs, false);
          if (n.contains("kwargs") && n["kwargs"].is_object()) {
            for (const auto& kv : n["kwargs"].items()) {
              if (kv.key() == "mask") {
                std::vector<std::string> m;
                refs_in(kv.value(), m, false);
                if (m.size() == 1) node.mask_from = m[0];
                if (m.size() > 1) fail("layer '", name, "': a mask argument from several tensors is not supported");
              } else if (kv.value().is_object() || kv.value().is_array()) {
                refs_in(kv.value(), refs, false);
              } else {
                node.kwargs[kv.key()] = kv.value();
              }
            }
          }
        } else if (n.is_array()) {  // Keras 2: [[name, node, index, kwargs], ...]
          for (const json& t : n) {
            if (!t.is_array() || t.size() < 3 || !t[0].is_string()) fail("layer '", name, "': malformed inbound node");
            refs.push_back(t[0]);
            if (t.size() >= 4 && t[3].is_object())
              for (const auto& kv : t[3].items()) {
                if (kv.value().is_array()) {
                  refs_in(kv.value(), refs, true);
                } else {
                  node.kwargs[kv.key()] = kv.value();
                }
              }
          }
        } else {
          fail("layer '", name, "': malformed inbound node");
        }
      }
      for (const std::string& r : refs)
        if (std::find(node.inputs.begin(), node.inputs.end(), r) == node.inputs.end()) node.inputs.push_back(r);
      nodes.push_back(std::move(node));
    }
    const std::set<std::string> dropped = masking_mask_ops(nodes);
    for (const Node& n : nodes)
      if (!n.mask_from.empty() && !dropped.count(n.mask_from))
        fail("layer '", name_of(*n.layer), "': its mask argument comes from '", n.mask_from,
             "', which is not a Masking layer's mask");
    // The chain: one InputLayer, then each layer consumes the previous one's output, exactly once, except
    // residual blocks: x feeds a chain f and an Add([x, f(x)]) (read by walk()).
    std::string current;
    Graph g;
    for (const Node& n : nodes) {
      const std::string name = name_of(*n.layer);
      if (dropped.count(name)) continue;
      const std::string cls = (*n.layer)["class_name"];
      if (cls == "InputLayer") {
        if (!current.empty())
          fail("the model has several inputs ('", current, "', '", name, "'): not a chain", graph_importer_hint());
        current = name;
        take_input_shape((*n.layer)["config"], model);
        continue;
      }
      const bool add = cls == "Add" && n.inputs.size() == 2;
      if (n.inputs.size() != 1 && !add)
        fail("layer '", name, "' (", cls, ") takes ", n.inputs.size(),
             " different inputs: the functional graph is not a chain (supported: chains of single-input layers and "
             "residual blocks Add([x, f(x)]) where f is such a chain)", graph_importer_hint());
      for (const std::string& in : n.inputs) g.consumers[in].push_back(&n);
      ++g.nodes;
    }
    if (current.empty()) fail("the functional model has no InputLayer");
    // Keras 3 weight paths: the rank of each layer among the model's layers of its class, in config order.
    std::map<std::string, int> rank;
    for (const Node& n : nodes) {
      const std::string cls = (*n.layer)["class_name"];
      if (!dropped.count(name_of(*n.layer)) && cls != "InputLayer")
        g.keras3_path[name_of(*n.layer)] = keras3_path("", cls, rank);
    }
    model.layers = walk(g, current, "");
    if (g.taken != g.nodes)
      fail("some layers are not on the chain from the input to the output", graph_importer_hint());
  }

  struct Graph {
    std::map<std::string, std::vector<const Node*>> consumers;
    std::map<std::string, std::string> keras3_path;
    size_t nodes = 0, taken = 0;
  };

  // The layer of node n (a nested Sequential: its leaf layers), appended to `out`.
  void leaf(const Graph& g, const Node& n, std::vector<KerasLayer>& out) {
    KerasModel tmp;
    std::map<std::string, int> unused;
    add_layer(*n.layer, tmp, "", "/model_weights", true, unused, n.kwargs, &g.keras3_path.at(name_of(*n.layer)));
    for (KerasLayer& l : tmp.layers) out.push_back(std::move(l));
  }

  // The layers from the output of `from` on, up to `stop` included ("": to the end of the graph). A tensor that
  // feeds two layers must feed an Add and a chain ending at the Add's other input: one KerasLayer "Add" whose
  // body holds the chain (a residual block).
  std::vector<KerasLayer> walk(Graph& g, std::string current, const std::string& stop, int depth = 0) {
    if (depth > 32) fail("residual blocks nested deeper than 32 levels");
    std::vector<KerasLayer> out;
    while (current != stop) {
      const auto it = g.consumers.find(current);
      if (it == g.consumers.end()) {
        if (stop.empty()) return out;
        fail("the branch from '", current, "' does not lead to '", stop, "'");
      }
      const std::vector<const Node*>& next = it->second;
      if (next.size() == 1) {
        const Node& n = *next[0];
        if (n.inputs.size() != 1)
          fail("layer '", name_of(*n.layer), "' (Add) adds '", n.inputs[0], "' and '", n.inputs[1],
               "': only a residual Add([x, f(x)]) of a tensor x and a chain f of layers applied to x is supported",
               graph_importer_hint());
        leaf(g, n, out);
        ++g.taken;
        current = name_of(*n.layer);
        continue;
      }
      const Node* add = nullptr;
      const Node* branch = nullptr;
      for (const Node* n : next) (n->inputs.size() == 2 && !add ? add : branch) = n;
      if (next.size() != 2 || !add || !branch || branch->inputs.size() != 1)
        fail("the output of '", current, "' feeds ", next.size(),
             " layers: the functional graph is not a chain (supported: a tensor x feeding a chain f and an "
             "Add([x, f(x)]), a residual block)", graph_importer_hint());
      const std::string& end = add->inputs[0] == current ? add->inputs[1] : add->inputs[0];
      KerasLayer block;
      block.class_name = "Add";
      block.name = name_of(*add->layer);
      block.config = (*add->layer)["config"];
      block.call_kwargs = add->kwargs;
      leaf(g, *branch, block.body);
      ++g.taken;
      for (KerasLayer& l : walk(g, name_of(*branch->layer), end, depth + 1)) block.body.push_back(std::move(l));
      const auto tail = g.consumers.find(end);
      if (tail == g.consumers.end() || tail->second.size() != 1 || tail->second[0] != add)
        fail("the output of '", end, "' feeds more than the residual Add '", block.name,
             "': the functional graph is not a chain", graph_importer_hint());
      out.push_back(std::move(block));
      ++g.taken;
      current = name_of(*add->layer);
    }
    return out;
  }

  const H5File& h5_;
  std::string who_;
  bool keras3_;
};

}  // namespace keras
}  // namespace detail
}  // namespace seqattn
