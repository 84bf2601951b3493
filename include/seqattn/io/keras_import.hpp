#pragma once
/// \file
/// import_keras\<S>(path): a Keras model file as a ready seqattn Sequential\<S>, in C++ (no Python at run time);
/// import_keras_graph\<S>(path): any functional model (a DAG) as a Graph\<S> (model/graph.hpp).
/// Not part of the umbrella header: it needs the HDF5 C library (with its high-level library), libzip and
/// nlohmann-json (Debian libhdf5-dev, libzip-dev, nlohmann-json3-dev; CMake target seqattn::keras_import).
///
/// ```unparsed
///   Sequential<float> model = import_keras<float>("model.keras");   // Keras 3 archive
///   Sequential<float> model = import_keras<float>("model.h5");      // legacy Keras 2 HDF5 model file
///   model.predict(x, mask);
///   Graph<float> g = import_keras_graph<float>("two_inputs.keras"); // inputs named as Keras' Input layers
///   g.forward({{&a, &mask_a}, {&b, &mask_b}}, Mode::Infer);        // g.output(k): Keras' output k
///
/// ```
/// Functional graphs (import_keras_graph): the config's input_layers, output_layers and every layer's inbound_nodes
/// (Keras 2 `.h5` lists [[layer, node, tensor, kwargs]], Keras 3 `.keras` {"args": [__keras_tensor__ ...], "kwargs"})
/// become a Graph\<S>:
///
/// ```unparsed
///   - Input layers -> graph inputs in the model's input order, named as the layers, features from batch_shape /
///     batch_input_shape ((batch, time) int ids: 1 feature, for an Embedding);
///   - each call of a layer -> a node named as the layer; call k > 0 of a layer (a shared layer, node_index k) ->
///     node "<layer>#<k>" made with add_shared (one set of weights; Keras counts them once too);
///   - Add, Subtract, Multiply, Average, Maximum, Minimum -> graph.merge (MergeOp); Concatenate on the last axis
///     (axis -1, or 2 / 1 for 3D / 2D tensors) -> graph.concatenate; any other axis is refused;
///   - Keras' MultiHeadAttention called as layer(query, value, key=None) (positionally or by keyword): query =
///     value (= key) -> a one-input node (self-attention); key absent or = value -> node inputs (query, value), the
///     value being keys and values; else node inputs (query, key, value) (seqattn's order; key_features /
///     value_features from the tensors). use_causal_mask is refused in cross-attention, and so are masks on a key and
///     a value that are different tensors;
///   - every other layer the Sequential importer maps -> the same seqattn layer (the same mapping code and checks);
///     a nested Sequential model -> a Sequential node of its layers; a nested functional model with one output -> a
///     Graph node (its own graph, built the same way; several outputs are refused). Keras 2 numbers a nested model's
///     calls from 1 in references (its call 0 is not saved), Keras 3 from 0: both are read.
///   Masks follow Keras: Masking and Embedding(mask_zero) make them, layers pass them on, merges AND them (an input
///   without a mask keeps every step), cross-attention outputs the query's mask; Keras 3's Masking mask ops
///   (NotEqual -> Any passed as `mask`) are recognised and dropped as in the chain importer. What cannot be reproduced
///   (the cases below: a GlobalMaxPooling1D or Conv1D on a masked input, ...) is refused with a ConfigError naming the
///   file, the layer and why; so are layers with several outputs (tensor index > 0) and unknown layers (the message
///   of the Sequential importer). A Sequential model file becomes a graph of one input "input" and one node
///   "sequential". save_model(graph) / load_graph<S> (io/model_file.hpp) store the imported graph.
///   Largest difference from Keras over the graph cases of tests/reference/keras (manifest "graph_cases", valid steps,
///   relative to max(1, |y|)): 3.7e-7 in float, 2.2e-7 in double (test_keras_import_graph).
///
/// ```
/// Files: a `.keras` zip (config.json + model.weights.h5) or a Keras 2 `.h5` (root attribute model_config,
/// weights under /model_weights). Training configs and optimizer weights are ignored. Models: Sequential
/// (nested Sequential models are flattened) and functional models whose graph is a chain, with residual blocks:
/// a tensor x feeding a chain f and an Add([x, f(x)]) becomes Residual(f) (layers/residual.hpp), nested blocks too.
/// The whole config is checked before anything is built: a layer the importer does not map, an option it does
/// not support, or a Keras semantics it cannot reproduce throws ConfigError naming the file, the Keras layer,
/// its class and what is unsupported. Weights are read with the shape the config implies (MismatchError
/// otherwise, before reading), NaN / Inf is a NonFiniteError, a malformed file a FormatError, all with the
/// path; members and attributes are read only up to what the file's size justifies.
///
/// Inputs: (B, T, F) as in Keras; a model starting with an Embedding takes its ids as (B, T, 1), one starting with
/// a TrigPosEmbedding / PositionEmbedding in mode expand its positions as (B, T, 1).
/// Masks: Keras derives its mask from the data (Masking, Embedding mask_zero, PositionEmbedding expand mask_zero);
/// the imported model does too (layers/masking.hpp, Embedding mask_zero, PositionEmbedding mask_position: a step
/// mask of the steps at that position, wherever they are): pass the zero-padded batch with or without a Mask.
/// Only trailing padded steps are padding (right padding): a masked step followed by a valid one throws.
/// Pass no Mask to a model without Masking / Embedding(mask_zero): Keras has no mask there.
///
/// Mapped layers (Keras -> seqattn) and where the results differ from Keras':
///
/// ```unparsed
///   InputLayer -> (the input size); Masking -> Masking; Embedding -> Embedding (mask_zero);
///   Dense -> Dense (3D inputs); Activation -> ActivationLayer (linear, relu, gelu (exact erf, Keras' string),
///   tanh, sigmoid, softmax); Dropout -> Dropout (identity at inference); Conv1D -> Conv1D (valid, same,
///   causal, strides, dilation); LSTM, GRU (reset_after True or False) -> LSTM, GRU; Bidirectional (concat, sum, ave,
///   mul) -> Bidirectional; LayerNormalization (Keras' and keras-layer-normalization's, told apart by the `axis` key;
///   epsilon from the config) -> LayerNorm; BatchNormalization (moving statistics) -> BatchNorm;
///   GlobalAveragePooling1D -> GlobalAvgPool; GlobalMaxPooling1D -> GlobalMaxPool (unmasked inputs only);
///   Keras MultiHeadAttention (self-attention, key_dim = value_dim, use_causal_mask) -> MultiHeadAttention
///   (head_size key_dim); keras-multi-head MultiHeadAttention (told apart by `head_num`) -> MultiHeadAttention
///   with activation(a).output_activation(a) (Keras applies its activation to q, k, v and the output projection);
///   SeqSelfAttention -> SeqSelfAttention (on a masked input without history_only: KerasPaddingAttention, see
///   below); SeqWeightedAttention -> SeqWeightedAttention; ScaledDotProductAttention -> ScaledDotProductAttention
///   (history_only); TrigPosEmbedding (add, concat, expand) ->
///   SinusoidalPositionalEncoding (expand: real positions, as Keras); PositionEmbedding (add, concat, expand) ->
///   PositionEmbedding (expand: table (2 input_dim + 1, d), positions clipped to [-input_dim, input_dim];
///   mask_zero -> mask_position: keras-pos-embd masks the steps whose position equals mask_zero, so
///   mask_zero=True masks position 1 and an integer n position n; mask_zero is a no-op in add and concat, as in
///   Keras); Add([x, f(x)]) -> Residual(f) (f: no Masking or Embedding inside, same features and steps).
///   Weight rules: trainable, <role>_regularizer and <role>_constraint (roles kernel, recurrent, bias, embeddings,
///   gamma, beta) -> set_trainable / set_regularizer / set_constraint (apply_keras_rules); any other regularizer or
///   constraint that is set (activity_regularizer, ...) is refused.
///   Largest difference from Keras over tests/reference/keras (valid steps, float): 7.2e-7 (the transformer
///   encoder); in double 5.4e-7 (test_keras_import). The imported model is a plain Sequential: save_model /
///   load_model (io/model_file.hpp) store it, Masking and KerasPaddingAttention included.
///   Outputs (B, U) of Keras (pooling, recurrent last state) are (B, 1, U) in seqattn.
/// ```
/// Differences (valid steps match Keras within float rounding; what Keras writes at PADDED steps differs,
/// seqattn writes 0 there):
///
/// ```unparsed
///   - keras-self-attention SeqSelfAttention on a masked input (its issue #41): valid steps attend to padded
///     steps too. Reproduced by KerasPaddingAttention (io/keras/keras_padding_attention.hpp: the layer runs
///     without a mask over all T steps) where the padded values are 0 in both (right after Masking or a
///     Bidirectional layer); refused elsewhere. Valid outputs then depend on T, as in Keras.
///   - GlobalMaxPooling1D ignores the mask in Keras (the max includes the padded steps): refused on masked inputs.
///   - GlobalAveragePooling1D of a fully padded sequence: Keras gives NaN (0/0), seqattn 0.
///   - Conv1D drops the mask in Keras: refused on masked inputs.
///   - Masked steps inside a sequence (a zero step before a valid one): Keras skips them; Masking throws.
///   - Embedding(mask_zero) masks only trailing zero ids (a zero inside a sequence stays a valid step).
///   - PositionEmbedding mode expand: Keras casts a float position to int32 (truncation toward 0); seqattn throws
///     ShapeError for a non-integer position. The steps masked by mask_zero output 0 (Keras: their table row).
/// ```
/// Refused: Bidirectional merge_mode None (two outputs), Keras MultiHeadAttention with value_dim
/// != key_dim (seqattn's heads have one size for q, k and v; its value_features is a value INPUT width, torch's
/// vdim), output_shape or cross-attention, activity regularizers, constraints or trainable=false of a
/// SeqSelfAttention, PositionEmbedding mask_zero that is not a boolean or an integer, by import_keras: functional
/// graphs that are neither a chain nor residual blocks (other merge layers, an Add of two branches, a tensor feeding
/// three layers) and shared layers (its message names import_keras_graph, which maps them), return_state /
/// return_attention, stateful or go_backwards layers,
/// activations other than the six above.
/// HDF5 note: Debian's libhdf5 is not thread-safe: import from one thread at a time. The importer checks the
/// sizes it reads, but parsing a hostile HDF5 file is HDF5's own code.

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <memory>
#include <fstream>
#include <map>
#include <string>

#include "seqattn/io/errors.hpp"
#include "seqattn/io/keras/hdf5_reader.hpp"
#include "seqattn/io/keras/layer_mapping.hpp"
#include "seqattn/io/keras/model_config.hpp"
#include "seqattn/io/keras/zip_reader.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

namespace detail {
namespace keras {

constexpr std::uint64_t kMaxConfigBytes = std::uint64_t(64) << 20;

// Python's json writes a non-finite float as the bare token NaN, Infinity or -Infinity (Keras:
// Masking(mask_value=float("nan"))), which is not JSON: outside strings they become the strings "NaN",
// "Infinity", "-Infinity" (read back by the options that accept them: Masking's mask_value).
inline std::string quote_non_finite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* token : {"NaN", "Infinity", "-Infinity"}) {
      const size_t n = std::char_traits<char>::length(token);
      if (text.compare(i, n, token) == 0) {
        out += '"';
        out += token;
        out += '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

inline json parse_config(const std::string& text, const std::string& who) {
  try {
    return json::parse(quote_non_finite(text));
  } catch (const json::exception& e) {
    throw_format(who, ": the model config is not valid JSON: ", e.what());
  }
}

// Builds one planned layer for an input of F features and copies its weights (a residual block: a Residual of
// its body).
template <class S>
std::unique_ptr<Layer<S>> build_planned(PlannedLayer<S>& p, Index F, const H5File& weights, const std::string& who);

// Builds the planned layers into `seq` and copies their weights; a residual block's body into its Residual.
template <class S>
void build_into(Sequential<S>& seq, std::vector<PlannedLayer<S>>& plan, const H5File& weights, const std::string& who) {
  for (PlannedLayer<S>& p : plan) seq.add(build_planned(p, seq.out_features(), weights, who));
}

template <class S>
std::unique_ptr<Layer<S>> build_planned(PlannedLayer<S>& p, Index F, const H5File& weights, const std::string& who) {
  if (!p.body.empty()) {
    Sequential<S> body(F);
    build_into(body, p.body, weights, who);
    try {
      return std::make_unique<Residual<S>>(F, std::move(body));
    } catch (const Error& e) {
      throw_config(who, ": layer '", p.source->name,
                   "' (Add): the residual branch cannot be a seqattn Residual: ", e.what());
    }
  }
  std::unique_ptr<Layer<S>> made = p.make();
  Layer<S>& layer = *made;
  std::map<std::string, Param<S>> params;
  for (auto& q : layer.params()) params[q.name] = q;
  for (auto& q : layer.buffers()) params[q.name] = q;
  for (const auto& c : p.copies) {
    const KerasLayer& src = *p.source;
    const std::string& path = src.weights.at(c.keras_index);
    const auto it = params.find(c.param);
    if (it == params.end()) throw_config(who, ": internal: ", layer.describe(), " has no parameter ", c.param);
    const std::vector<S> values = weights.read_dataset<S>(path, c.keras_shape);
    if (static_cast<Index>(values.size()) != it->second.size())
      throw_mismatch(who, ": layer '", src.name, "': weight '", path, "' has ", values.size(), " values but ",
                     layer.describe(), " parameter ", c.param, " has ", it->second.size());
    std::copy(values.begin(), values.end(), it->second.value);
  }
  for (const auto& f : p.fills) {  // "Wq=I": identity matrix
    const std::string name = f.first.substr(0, f.first.find('='));
    Param<S>& q = params.at(name);
    q.values().setZero();
    const Index n = q.shape.at(0);
    for (Index i = 0; i < n; ++i) q.value[i * q.shape.at(1) + i] = f.second;
  }
  return made;
}

template <class S>
Sequential<S> build(const KerasModel& model, const H5File& weights, const std::string& who) {
  LayerMapper<S> mapper(who);
  Index in_features = 0;
  std::vector<PlannedLayer<S>> plan = mapper.plan(model, in_features);
  Sequential<S> seq(in_features);
  build_into(seq, plan, weights, who);
  return seq;
}

inline std::uint64_t regular_file_size(const std::string& path, const std::string& who) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_file(who, ": cannot open the file: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw_file(who, ": not a regular file");
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace keras
}  // namespace detail

namespace detail {
namespace keras {

// Opens a `.keras` archive or a Keras 2 `.h5` (told apart by their first bytes: zip or HDF5 signature) and calls
// use(config root, weights file, keras3).
template <class Use>
auto with_model_file(const std::string& path, const std::string& who, Use&& use) {
  const std::uint64_t size = regular_file_size(path, who);
  std::string head(8, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::throw_file(who, ": cannot open the file");
    in.read(&head[0], 8);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  if (head.size() >= 4 && head.compare(0, 4, std::string("PK\x03\x04", 4)) == 0) {
    ZipReader zip(path, who);
    const json root = parse_config(zip.read("config.json", kMaxConfigBytes), who + " config.json");
    H5File weights = H5File::from_bytes(zip.read("model.weights.h5", size * 1032 + 64), who + " model.weights.h5");
    return use(root, weights, true);
  }
  if (H5File::has_signature(head)) {
    H5File file = H5File::open(path, who, size);
    if (!file.has_attribute("/", "model_config"))
      detail::throw_format(who,
                           ": an HDF5 file without a 'model_config' attribute (a weights-only file? "
                           "the importer needs a whole model saved by model.save)");
    const json root = parse_config(file.string_attribute("/", "model_config"), who);
    return use(root, file, false);
  }
  detail::throw_format(who,
                       ": not a Keras model file: it starts with neither the zip signature (.keras) nor the "
                       "HDF5 signature (.h5)");
}

// A functional graph (KerasGraph) as a Graph<S>: inputs, one node per call, merges, shared layers, outputs. A nested
// model's graph gets its inputs' states (`given`) and returns its output's (`out0`).
template <class S>
Graph<S> build_graph(const KerasGraph& kg, const H5File& weights, const std::string& who,
                     const std::vector<FlowState>* given = nullptr, FlowState* out0 = nullptr) {
  LayerMapper<S> mapper(who);
  std::vector<GraphInput> inputs;
  std::map<std::string, FlowState> state;  // by graph node name
  for (size_t i = 0; i < kg.input_names.size(); ++i) {
    FlowState s = mapper.input_state(kg.input_shapes[i], "input '" + kg.input_names[i] + "'");
    if (given) {
      if (given->at(i).features != s.features || given->at(i).ids != s.ids)
        throw_config(who, ": input '", kg.input_names[i], "' of a nested model takes ", s.features,
                     " features but gets ", given->at(i).features);
      s = given->at(i);
    }
    inputs.push_back(GraphInput{kg.input_names[i], s.features});
    state[kg.input_names[i]] = s;
  }
  const auto node_name = [](const KerasRef& r, bool input) {
    return r.node == 0 || input ? r.layer : r.layer + "#" + std::to_string(r.node);
  };
  const auto is_input = [&kg](const std::string& layer) {
    return std::find(kg.input_names.begin(), kg.input_names.end(), layer) != kg.input_names.end();
  };
  Graph<S> graph(inputs);
  const auto fail_node = [&who](const KerasCall& c, const Error& e) {
    throw_config(who, ": layer '", c.layer_name, "' (", c.class_name, "): cannot become a graph node: ", e.what());
  };
  for (const KerasCall& c : kg.calls) {
    std::vector<GraphNode> from;
    std::vector<FlowState> in;
    for (const KerasRef& r : c.inputs) {
      const std::string n = node_name(r, is_input(r.layer));
      from.push_back(graph.node(n));
      in.push_back(state.at(n));
    }
    if (c.sub) {  // a nested functional model: a Graph node
      if (c.sub->outputs.size() != 1)
        throw_config(who, ": layer '", c.layer_name, "' (", c.class_name, "): a nested model with ",
                     c.sub->outputs.size(), " outputs is not supported (a graph node has one output)");
      if (c.sub->input_names.size() != in.size())
        throw_config(who, ": layer '", c.layer_name, "' (", c.class_name, ") has ", c.sub->input_names.size(),
                     " inputs but is called on ", in.size(), " tensors");
      FlowState out;
      Graph<S> sub = build_graph<S>(*c.sub, weights, who, &in, &out);
      try {
        if (c.node_index > 0)
          graph.add_shared(c.name, graph.node(c.layer_name), from);
        else
          graph.add(c.name, std::make_unique<Graph<S>>(sub), from);
      } catch (const ShapeError& e) {
        fail_node(c, e);
      }
      state[c.name] = out;
      continue;
    }
    static const std::vector<std::pair<const char*, MergeOp>> merges = {
        {"Add", MergeOp::Add},         {"Subtract", MergeOp::Subtract}, {"Multiply", MergeOp::Multiply},
        {"Average", MergeOp::Average}, {"Maximum", MergeOp::Maximum},   {"Minimum", MergeOp::Minimum}};
    const auto merge = std::find_if(merges.begin(), merges.end(),
                                    [&c](const auto& m) { return c.class_name == m.first; });
    if (!c.nested && (merge != merges.end() || c.class_name == "Concatenate")) {
      const bool concat = merge == merges.end();
      state[c.name] = mapper.merge_state(c.leaves.at(0), in, concat);
      try {
        if (concat)
          graph.concatenate(c.name, from);
        else
          graph.merge(c.name, merge->second, from);
      } catch (const Error& e) {
        fail_node(c, e);
      }
      continue;
    }
    // Planned layers for this call (a later call of a shared layer: planned again for its input, then dropped).
    std::vector<PlannedLayer<S>> plan;
    FlowState s = in.at(0);
    if (c.inputs.size() > 1 && !c.nested && c.class_name == "MultiHeadAttention") {
      mapper.map_cross_attention(c.leaves.at(0), s, c.inputs.size() == 3 ? &in[1] : nullptr, in.back(), plan);
    } else {
      if (c.inputs.size() != 1)
        throw_config(who, ": layer '", c.layer_name, "' (", c.class_name, ") is called on ", c.inputs.size(),
                     " tensors; the importer maps it on one");
      for (const KerasLayer& l : c.leaves) mapper.map(l, s, plan);
    }
    if (plan.empty())
      throw_config(who, ": layer '", c.layer_name, "' (", c.class_name, ") maps to no seqattn layer");
    try {
      if (c.node_index > 0) {
        graph.add_shared(c.name, graph.node(c.layer_name), from);
      } else if (plan.size() == 1 && !c.nested) {
        graph.add(c.name, build_planned(plan[0], in[0].features, weights, who), from);
      } else {
        auto seq = std::make_unique<Sequential<S>>(in[0].features);
        build_into(*seq, plan, weights, who);
        graph.add(c.name, std::move(seq), from);
      }
    } catch (const ConfigError&) {
      throw;
    } catch (const MismatchError&) {
      throw;
    } catch (const FormatError&) {
      throw;
    } catch (const ShapeError& e) {
      fail_node(c, e);
    }
    state[c.name] = s;
  }
  std::vector<GraphNode> outputs;
  for (const KerasRef& r : kg.outputs) outputs.push_back(graph.node(node_name(r, is_input(r.layer))));
  if (out0) *out0 = state.at(node_name(kg.outputs.at(0), is_input(kg.outputs.at(0).layer)));
  graph.set_outputs(outputs);
  try {
    graph.check();
  } catch (const ConfigError& e) {
    throw_config(who, ": ", e.what());
  }
  return graph;
}

}  // namespace keras
}  // namespace detail

/// Imports a Keras 3 `.keras` archive or a Keras 2 `.h5` model file (told apart by their first bytes: zip or
/// HDF5 signature). See the file comment for the mapped layers, differences and errors.
template <class S>
Sequential<S> import_keras(const std::string& path) {
  using namespace detail::keras;
  const std::string who = "import_keras(" + path + ")";
  return with_model_file(path, who, [&who](const json& root, const H5File& weights, bool keras3) {
    ModelConfigReader reader(weights, who, keras3);
    return build<S>(reader.read(root), weights, who);
  });
}

/// Imports a Keras functional model whose graph is any DAG (several inputs or outputs, merges, shared layers,
/// cross-attention) as a Graph\<S>: inputs named as Keras' Input layers (in the model's input order), one node per
/// layer call named as the layer ("\<layer>#\<k>" for call k > 0 of a shared layer), outputs in Keras' order. A
/// Sequential model becomes a graph of one input "input" and one node "sequential" (import_keras's
/// model). See the file comment.
template <class S>
Graph<S> import_keras_graph(const std::string& path) {
  using namespace detail::keras;
  const std::string who = "import_keras_graph(" + path + ")";
  return with_model_file(path, who, [&who](const json& root, const H5File& weights, bool keras3) {
    ModelConfigReader reader(weights, who, keras3);
    if (root.is_object() && root.value("class_name", json()) == json("Sequential")) {
      Sequential<S> seq = build<S>(reader.read(root), weights, who);
      Graph<S> graph({GraphInput{"input", seq.in_features()}});
      const GraphNode node =
          graph.add("sequential", std::make_unique<Sequential<S>>(std::move(seq)), {graph.input("input")});
      graph.set_outputs({node});
      return graph;
    }
    const KerasGraph kg = reader.read_graph(root);
    return build_graph<S>(kg, weights, who);
  });
}

}  // namespace seqattn
