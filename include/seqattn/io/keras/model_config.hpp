#pragma once
// The layer chain of a Keras model config (the JSON of a `.h5`'s `model_config` attribute or of a `.keras`'s
// config.json), flattened into its leaf layers in call order, each with the HDF5 paths of its weights in
// Keras' order. Sequential models (nested ones are flattened into their parent) and functional models whose
// graph is a chain (each layer called once, on the previous layer's output) are accepted, and residual blocks in
// them: a tensor x feeding a chain f and an Add([x, f(x)]) (in either order) becomes one KerasLayer "Add" whose
// body is f (seqattn's Residual(f)); blocks may nest inside f. Anything else is a ConfigError naming the layer
// and why (a merge other than Add, an Add of two branches, a tensor feeding three layers, shared layers).
//   Keras 2 `.h5`: weights of a top-level layer in /model_weights/<name>, in the order of the group's
//     `weight_names` attribute; a nested model keeps its layers' weights in its own group, named
//     "<layer>/<weight>".
//   Keras 3 `.keras`: weights at layers/<snake_case class>[_<n>]/vars/<i> (n: rank among the container's
//     layers of that class), sub-objects (cell, forward_layer, query_dense, ...) below.
//   Keras 3 functional graphs carry a Masking layer's mask as two op layers (NotEqual(x, mask_value), then
//     Any(axis=-1)) passed as the `mask` argument of a later call: recognised and dropped when they repeat a
//     Masking layer of the same input and mask_value; refused otherwise.

#include <nlohmann/json.hpp>

#include <map>
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

 private:
  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    throw_config(who_, ": ", std::forward<Parts>(parts)...);
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
      fail("layer '", name, "' (", cls, "): a functional model nested as a layer is not supported");
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
             " times (shared layers are not supported: the graph must be a chain)");
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
    // Keras 3 Masking pattern: NotEqual(x, v) -> Any(axis=-1) used as a mask; keep it only as a repetition of a
    // Masking layer called on the same x with mask_value v.
    std::set<std::string> dropped;
    std::map<std::string, const Node*> by_name;
    for (const Node& n : nodes) by_name[name_of(*n.layer)] = &n;
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
        if (!current.empty()) fail("the model has several inputs ('", current, "', '", name, "'): not a chain");
        current = name;
        take_input_shape((*n.layer)["config"], model);
        continue;
      }
      const bool add = cls == "Add" && n.inputs.size() == 2;
      if (n.inputs.size() != 1 && !add)
        fail("layer '", name, "' (", cls, ") takes ", n.inputs.size(),
             " different inputs: the functional graph is not a chain (supported: chains of single-input layers and "
             "residual blocks Add([x, f(x)]) where f is such a chain)");
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
    if (g.taken != g.nodes) fail("some layers are not on the chain from the input to the output");
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
               "': only a residual Add([x, f(x)]) of a tensor x and a chain f of layers applied to x is supported");
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
             "Add([x, f(x)]), a residual block)");
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
             "': the functional graph is not a chain");
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
