#pragma once
/// \file
/// Graph\<S>: a model whose layers form a directed acyclic graph (Keras' functional models): named inputs, each with
/// its own mask; nodes that apply a layer to one or more earlier nodes (merges, cross-attention: core/layer.hpp,
/// "Several inputs"); one or more outputs; a layer applied at two places (shared weights).
///
/// ```unparsed
///   Graph<float> g({{"series", 6}, {"context", 4}});                  // named inputs and their features
///   const GraphNode series = g.input("series"), context = g.input("context");
///   const GraphNode a = g.add<Dense<float>>("proj", {series}, 4);    // Dense<float>(6, 4) on series
///   const GraphNode s = g.merge("sum", MergeOp::Add, {a, context});  // Merge<float>(4, add, 2)
///   const GraphNode y = g.add<Dense<float>>("head", {s}, 1);
///   g.set_outputs({y});
///   const Tensor3<float>& out = g.forward({{&x, &mx}, {&c, &mc}}, Mode::Train);  // LayerInputs<float>
///   g.backward(dy);                                                  // the inputs of the last forward
///
/// ```
/// Nodes can only read earlier nodes, so a graph has no cycle by construction. add() checks at once that each input
/// gives the features the layer expects for it (ShapeError naming the node, the input and both widths) and that the
/// layer takes that many inputs; names are unique and contain no '.'. The first forward (or check()) refuses a
/// graph without outputs and nodes or inputs that reach no output (ConfigError naming every one).
/// forward runs the nodes in the order they were added: node k's layer gets LayerInputs pointing at its input
/// nodes' outputs and masks; its output mask is layer.out_mask_of(inputs, T) (a merge keeps the steps every input
/// keeps; cross-attention keeps the query's mask). The inputs are copied (backward(dy) uses the copies).
/// backward runs the nodes in reverse: a node's output gradient is the sum over every consumer (fan-out) and, for an
/// output, its dy; input_grad(i) is graph input i's gradient (zeros when it reaches no output with a gradient).
/// Shared layers: add_shared(name, owner, inputs) applies the layer of node `owner` again. The node runs a copy of
/// that layer whose parameters are copied from the owner's before every forward; its parameter gradients are added
/// into the owner's after its backward (then zeroed), so params() lists the owner's only and an optimizer sees the
/// summed gradient. (One copy of the weights per shared node and forward, through views of both layers' parameters
/// taken at the first forward and again only when an assignment changes a layer's generation: core/param.hpp.)
/// A Graph is a Layer\<S> with as many inputs as it declares (min_inputs() == max_inputs()), so graphs nest in
/// graphs and, with one input and one output, in a Sequential. Several outputs: forward returns output 0;
/// output(k), output_mask(k) the others; backward_outputs({&dy0, &dy1}) takes one gradient per output.
/// params()/buffers() are named "\<node>.\<layer's name>": "proj.W", "enc.0.dense.W". Model files: config() and
/// from_config (registered as "Graph"), so a graph inside a Sequential is saved with it. Streams
/// (model/graph_stream.hpp):
/// input 0 steps, the other inputs are the context (Stream::set_context; the nodes that read only the context run once
/// per set_context), output 0 is the stream's output. summary(T) lists every node,
/// its layer, its inputs, its output shape and parameter count. Buffers (copies, masks, gradients) are resized only
/// when a shape changes.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <typeinfo>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/model/stream.hpp"

namespace seqattn {

template <class S>
class GraphStream;  // model/graph_stream.hpp

/// A node of a Graph: what add() returns and later nodes take as inputs.
struct GraphNode {
  Index index = -1;  ///< The node's position in the graph (-1: none).
};

/// A graph input: its name and features.
struct GraphInput {
  std::string name;  ///< The input's name.
  Index features = 0;  ///< The input's features.
};

/// A model as a directed acyclic graph of layers with several inputs and outputs, shared layers and merges;
/// see the file documentation.
template <class S>
class Graph final : public Layer<S> {
 public:
  using Layer<S>::forward;
  using Layer<S>::backward;

  /// A graph with these inputs (at least one, each with positive features); add layers with add().
  explicit Graph(std::vector<GraphInput> inputs)
      : Layer<S>(inputs.empty() || inputs[0].features <= 0 ? 1 : inputs[0].features) {
    if (inputs.empty()) detail::throw_config("Graph: needs at least one input");
    for (const GraphInput& in : inputs) {
      if (in.features <= 0)
        detail::throw_config("Graph: input '", in.name, "' features must be positive but got ", in.features);
      Node node;
      node.name = in.name;
      node.features = in.features;
      node.input_number = Index(input_nodes_.size());
      check_name(node.name);
      input_nodes_.push_back(Index(nodes_.size()));
      nodes_.push_back(std::move(node));
    }
  }
  /// A deep copy (every layer cloned).
  Graph(const Graph& other) : Layer<S>(other), nodes_(other.nodes_.size()), input_nodes_(other.input_nodes_),
                              outputs_(other.outputs_), checked_(other.checked_) {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      nodes_[i] = other.nodes_[i].copy_structure();
      if (other.nodes_[i].layer) nodes_[i].layer = other.nodes_[i].layer->clone();
    }
  }
  /// Copies into the existing layers (Layer::assign: their storage stays when the shapes match, so optimizers stay
  /// valid) when both graphs have the same nodes with layers of the same types; otherwise replaces them.
  Graph& operator=(const Graph& other) {
    if (this == &other) return *this;
    bool same = nodes_.size() == other.nodes_.size();
    for (std::size_t k = 0; same && k < nodes_.size(); ++k) {
      const Node &a = nodes_[k], &b = other.nodes_[k];
      same = a.name == b.name && a.inputs == b.inputs && a.owner == b.owner && !a.layer == !b.layer &&
             (!a.layer || typeid(*a.layer) == typeid(*b.layer));
    }
    if (same) {
      for (std::size_t k = 0; k < nodes_.size(); ++k)
        if (nodes_[k].layer) nodes_[k].layer->assign(*other.nodes_[k].layer);
    } else {
      Graph copy(other);
      nodes_ = std::move(copy.nodes_);
    }
    Layer<S>::operator=(other);
    input_nodes_ = other.input_nodes_;
    outputs_ = other.outputs_;
    checked_ = other.checked_;
    return *this;
  }

  /// The node of graph input `name` (ConfigError naming the inputs when there is none).
  GraphNode input(const std::string& name) const {
    for (Index i : input_nodes_)
      if (nodes_[static_cast<std::size_t>(i)].name == name) return GraphNode{i};
    std::string known;
    for (Index i : input_nodes_) known += (known.empty() ? "" : ", ") + nodes_[static_cast<std::size_t>(i)].name;
    detail::throw_config("Graph: no input named '", name, "' (inputs: ", known, ")");
  }
  /// The node of graph input i (ConfigError when out of range).
  GraphNode input(Index i) const {
    if (i < 0 || i >= Index(input_nodes_.size()))
      detail::throw_config("Graph: input ", i, " but the graph has ", input_nodes_.size());
    return GraphNode{input_nodes_[static_cast<std::size_t>(i)]};
  }

  /// A node applying `layer` to the outputs of `inputs` (earlier nodes of this graph).
  GraphNode add(const std::string& name, std::unique_ptr<Layer<S>> layer, std::vector<GraphNode> inputs) {
    if (!layer) detail::throw_config("Graph: node '", name, "' has no layer");
    check_name(name);
    const Index n = Index(inputs.size());
    if (n < layer->min_inputs() || n > layer->max_inputs())
      detail::throw_shape("Graph: node '", name, "' (", layer->describe(), ") takes ",
                          layer->min_inputs() == layer->max_inputs()
                              ? std::to_string(layer->min_inputs())
                              : detail::cat(layer->min_inputs(), " to ", layer->max_inputs()),
                          " input(s) but got ", n);
    Node node;
    node.name = name;
    for (Index i = 0; i < n; ++i) {
      const Index from = check_node(inputs[static_cast<std::size_t>(i)], name);
      const Index expected = layer->input_features(i, n), got = nodes_[static_cast<std::size_t>(from)].features;
      if (expected >= 0 && expected != got)
        detail::throw_shape("Graph: node '", name, "' (", layer->describe(), ") input ", i, " expected ", expected,
                            " features but node '", nodes_[static_cast<std::size_t>(from)].name, "' gives ", got);
      node.inputs.push_back(from);
    }
    node.features = layer->out_features();
    node.layer = std::move(layer);
    node.call.resize(static_cast<std::size_t>(n));
    nodes_.push_back(std::move(node));
    checked_ = false;
    return GraphNode{Index(nodes_.size()) - 1};
  }
  /// add(name, std::make_unique\<L>(features of inputs[0], args...), inputs).
  template <class L, class... Args>
  GraphNode add(const std::string& name, std::vector<GraphNode> inputs, Args&&... args) {
    if (inputs.empty()) detail::throw_config("Graph: node '", name, "' has no input");
    const Index features = nodes_[static_cast<std::size_t>(check_node(inputs[0], name))].features;
    return add(name, std::make_unique<L>(features, std::forward<Args>(args)...), std::move(inputs));
  }
  /// An elementwise merge (layers/merge.hpp) of nodes with the same features.
  GraphNode merge(const std::string& name, MergeOp op, std::vector<GraphNode> inputs) {
    if (inputs.empty()) detail::throw_config("Graph: node '", name, "' has no input");
    const Index features = nodes_[static_cast<std::size_t>(check_node(inputs[0], name))].features;
    const Index count = Index(inputs.size());
    return add(name, std::make_unique<Merge<S>>(features, op, count), std::move(inputs));
  }
  /// The concatenation of the nodes' features, in order.
  GraphNode concatenate(const std::string& name, std::vector<GraphNode> inputs) {
    std::vector<Index> widths;
    for (const GraphNode& in : inputs) widths.push_back(nodes_[static_cast<std::size_t>(check_node(in, name))].features);
    return add(name, std::make_unique<Concatenate<S>>(std::move(widths)), std::move(inputs));
  }
  /// The layer of node `owner` applied again, to `inputs` (shared weights: file comment).
  GraphNode add_shared(const std::string& name, GraphNode owner, std::vector<GraphNode> inputs) {
    Index root = check_node(owner, name);
    check_shareable(nodes_[static_cast<std::size_t>(root)], name);
    if (!nodes_[static_cast<std::size_t>(root)].layer)
      detail::throw_config("Graph: node '", name, "' cannot share input node '",
                           nodes_[static_cast<std::size_t>(root)].name, "' (it has no layer)");
    if (nodes_[static_cast<std::size_t>(root)].owner >= 0) root = nodes_[static_cast<std::size_t>(root)].owner;
    const GraphNode node = add(name, nodes_[static_cast<std::size_t>(root)].layer->clone(), std::move(inputs));
    nodes_.back().owner = root;
    return node;
  }

  /// The nodes whose outputs the graph returns (at least one; output 0 is forward's result).
  void set_outputs(std::vector<GraphNode> outputs) {
    if (outputs.empty()) detail::throw_config("Graph: needs at least one output");
    outputs_.clear();
    for (const GraphNode& out : outputs) outputs_.push_back(check_node(out, "outputs"));
    checked_ = false;
  }

  /// ConfigError unless the graph has outputs and every node and input reaches one (forward checks it first).
  void check() const {
    if (outputs_.empty()) detail::throw_config("Graph: no outputs (call set_outputs)");
    std::vector<bool> used(nodes_.size(), false);
    for (Index o : outputs_) used[static_cast<std::size_t>(o)] = true;
    for (std::size_t k = nodes_.size(); k-- > 0;)
      if (used[k])
        for (Index from : nodes_[k].inputs) used[static_cast<std::size_t>(from)] = true;
    std::string unused;
    for (std::size_t k = 0; k < nodes_.size(); ++k)
      if (!used[k]) unused += detail::cat(unused.empty() ? "" : ", ", nodes_[k].layer ? "node '" : "input '", nodes_[k].name, "'");
    if (!unused.empty())
      detail::throw_config("Graph: reaching no output: ", unused, " (outputs: ", output_names(), ")");
    checked_ = true;
  }

  ///@{
  /// Outputs of the last forward.
  Index output_count() const { return Index(outputs_.size()); }
  const Tensor3<S>& output(Index k) const { return node_output(outputs_.at(static_cast<std::size_t>(k))); }
  const Mask& output_mask(Index k) const { return masks_.at(static_cast<std::size_t>(outputs_.at(static_cast<std::size_t>(k)))); }
  ///@}
  ///@{
  /// Node access: its layer (null for inputs), name, output and mask of the last forward.
  Index node_count() const { return Index(nodes_.size()); }
  GraphNode node(const std::string& name) const {
    for (std::size_t k = 0; k < nodes_.size(); ++k)
      if (nodes_[k].name == name) return GraphNode{Index(k)};
    std::string known;
    for (const Node& n : nodes_) known += (known.empty() ? "" : ", ") + n.name;
    detail::throw_config("Graph: no node named '", name, "' (nodes: ", known, ")");
  }
  const std::string& node_name(GraphNode n) const { return nodes_.at(static_cast<std::size_t>(n.index)).name; }
  Layer<S>* node_layer(GraphNode n) { return nodes_.at(static_cast<std::size_t>(n.index)).layer.get(); }
  const Tensor3<S>& node_output(GraphNode n) const { return node_output(n.index); }
  const Mask& node_mask(GraphNode n) const { return masks_.at(static_cast<std::size_t>(n.index)); }
  ///@}

  ///@{
  /// Structure by node index (model/graph_stream.hpp): the nodes node k reads, its graph-input number (-1 for a layer
  /// node), its output features, and the layer whose weights it runs (null for inputs; a shared node: its owner's).
  const std::vector<Index>& node_inputs(Index k) const { return nodes_.at(static_cast<std::size_t>(k)).inputs; }
  Index node_input_number(Index k) const { return nodes_.at(static_cast<std::size_t>(k)).input_number; }
  Index node_features(Index k) const { return nodes_.at(static_cast<std::size_t>(k)).features; }
  const Layer<S>* node_weights(Index k) const {
    const Node& n = nodes_.at(static_cast<std::size_t>(k));
    return n.owner >= 0 ? nodes_[static_cast<std::size_t>(n.owner)].layer.get() : n.layer.get();
  }
  Index output_node(Index k) const { return outputs_.at(static_cast<std::size_t>(k)); }
  ///@}

  /// Streams (model/graph_stream.hpp): B streams over output 0; input 0 steps, inputs 1 .. are the context.
  Stream<S> stream(Index batch, StreamOptions options = StreamOptions()) const {
    return Stream<S>(*this, batch, options);
  }
  std::unique_ptr<LayerStream<S>> open_inputs_stream(Index batch, const StreamOptions& options,
                                                    Index inputs) const override {
    if (inputs != min_inputs()) return Layer<S>::open_inputs_stream(batch, options, inputs);
    if (!checked_) check();
    return std::make_unique<GraphStream<S>>(*this, batch, options);
  }
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    return open_inputs_stream(batch, options, 1);
  }

  /// One output gradient per output (null: no gradient from that output), after a forward; uses its inputs.
  void backward_outputs(const std::vector<const Tensor3<S>*>& dys) {
    if (dys.size() != outputs_.size())
      detail::throw_shape(describe(), ": backward_outputs expected ", outputs_.size(), " gradients but got ",
                          dys.size());
    if (!dys[0]) detail::throw_shape(describe(), ": backward_outputs needs the gradient of output 0");
    pending_dys_ = &dys;
    try {
      backward_stored(*dys[0]);
    } catch (...) {
      pending_dys_ = nullptr;
      throw;
    }
    pending_dys_ = nullptr;
  }
  /// The gradient of output 0 (other outputs: none), with the inputs of the last forward.
  const Tensor3<S>& backward(const Tensor3<S>& dy) { return backward_stored(dy); }

  Index min_inputs() const override { return Index(input_nodes_.size()); }
  Index max_inputs() const override { return Index(input_nodes_.size()); }
  Index input_features(Index i, Index) const override {
    return i >= 0 && i < Index(input_nodes_.size()) ? nodes_[static_cast<std::size_t>(input_nodes_[static_cast<std::size_t>(i)])].features : -1;
  }
  Index out_features() const override {
    return outputs_.empty() ? this->in_features() : nodes_[static_cast<std::size_t>(outputs_[0])].features;
  }
  Index out_time(Index T) const override { return node_steps(std::vector<Index>(input_nodes_.size(), T))[static_cast<std::size_t>(output0())]; }
  Index out_time_of(const LayerInputs<S>& in) const override {
    std::vector<Index> steps;
    for (const LayerInput<S>& input : in) steps.push_back(input.x->dimension(1));
    return node_steps(steps)[static_cast<std::size_t>(output0())];
  }
  /// After a forward: the mask of output 0.
  Mask out_mask(const Mask& mask, Index) const override {
    return masks_.size() == nodes_.size() ? masks_[static_cast<std::size_t>(output0())] : mask;
  }
  Mask out_mask_of(const LayerInputs<S>& in, Index T) const override { return out_mask(*in[0].mask, T); }
  bool supports_step_masks() const override {
    return std::all_of(nodes_.begin(), nodes_.end(), [](const Node& n) { return !n.layer || n.layer->supports_step_masks(); });
  }
  std::string step_mask_refusal() const override {
    for (const Node& n : nodes_)
      if (n.layer && !n.layer->supports_step_masks())
        return detail::cat("its node '", n.name, "' (", n.layer->describe(), ") refuses it: ", n.layer->step_mask_refusal());
    return "";
  }
  /// Every node's terms; a shared node adds its own terms of its forward (an attention regularizer; weight
  /// penalties are the owner's, counted once: layers with regularizers cannot be shared).
  S extra_regularization_loss() const override {
    S total = S(0);
    for (const Node& n : nodes_)
      if (n.layer) total += n.layer->regularization_loss();
    return total;
  }
  std::size_t cache_bytes(Index B, Index T) const override {
    const std::vector<Index> steps = node_steps(std::vector<Index>(input_nodes_.size(), T));
    std::size_t total = 0;
    for (std::size_t k = 0; k < nodes_.size(); ++k)
      if (nodes_[k].layer) {
        const Index t = nodes_[k].inputs.empty() ? T : steps[static_cast<std::size_t>(nodes_[k].inputs[0])];
        total = detail::saturating_add(total, nodes_[k].layer->cache_bytes(B, t));
      }
    return total;
  }

  std::string name() const override { return "graph"; }
  std::string class_name() const override { return "Graph"; }
  /// {"inputs": [{"name", "features"}], "nodes": [{"name", "inputs": [names], "layer": layer_entry} or {"name",
  /// "inputs", "shares": owner name}], "outputs": [names]}: what a model file stores (io/model_file.hpp; the
  /// registry builds it, model/layer_registry.hpp).
  Config config() const override {
    Config inputs = Config::array(), nodes = Config::array(), outputs = Config::array();
    for (const Node& n : nodes_) {
      Config entry = Config::object();
      entry.set("name", n.name);
      if (!n.layer) {
        entry.set("features", n.features);
        inputs.push_back(std::move(entry));
        continue;
      }
      Config from = Config::array();
      for (Index i : n.inputs) from.push_back(Config(nodes_[static_cast<std::size_t>(i)].name));
      entry.set("inputs", std::move(from));
      if (n.owner >= 0) {
        entry.set("shares", nodes_[static_cast<std::size_t>(n.owner)].name);
      } else {
        entry.set("layer", layer_entry(*n.layer));
      }
      nodes.push_back(std::move(entry));
    }
    for (Index o : outputs_) outputs.push_back(Config(nodes_[static_cast<std::size_t>(o)].name));
    Config c = Config::object();
    c.set("inputs", std::move(inputs));
    c.set("nodes", std::move(nodes));
    c.set("outputs", std::move(outputs));
    return c;
  }
  /// Rebuilds a graph from config(), each node's layer with `build` for the features of its first input; the
  /// graph's first input must have `in_features` features. ConfigError naming the node for an unknown input name.
  static Graph from_config(Index in_features, const Config& config, const LayerBuilder<S>& build) {
    ConfigReader r(config, "Graph config");
    const Config& inputs = r.get("inputs");
    const Config& nodes = r.get("nodes");
    const Config& outputs = r.get("outputs");
    r.finish();
    if (!inputs.is_array() || inputs.size() == 0) r.fail("inputs", "a non-empty array of inputs", inputs);
    if (!nodes.is_array()) r.fail("nodes", "an array of nodes", nodes);
    if (!outputs.is_array() || outputs.size() == 0) r.fail("outputs", "a non-empty array of node names", outputs);
    std::vector<GraphInput> declared;
    for (const Config& in : inputs.elements()) {
      ConfigReader ri(in, "Graph config input");
      GraphInput gi{ri.read<std::string>("name"), ri.read_size("features")};
      ri.finish();
      declared.push_back(std::move(gi));
    }
    if (declared[0].features != in_features)
      detail::throw_config("Graph config: input '", declared[0].name, "' has ", declared[0].features,
                           " features but the entry says ", in_features);
    Graph graph(std::move(declared));
    const auto find = [&graph](const Config& name, const std::string& who) {
      if (name.kind() != Config::Kind::String) detail::throw_config("Graph config: node '", who, "' names an input that is not a string");
      return graph.node(name.as_string());
    };
    for (const Config& entry : nodes.elements()) {
      ConfigReader rn(entry, "Graph config node");
      const std::string name = rn.read<std::string>("name");
      const Config& from = rn.get("inputs");
      if (!from.is_array() || from.size() == 0) rn.fail("inputs", "a non-empty array of node names", from);
      std::vector<GraphNode> sources;
      for (const Config& s : from.elements()) sources.push_back(find(s, name));
      if (rn.has("shares")) {
        const GraphNode owner = find(rn.get("shares"), name);
        rn.finish();
        graph.add_shared(name, owner, std::move(sources));
        continue;
      }
      const Config& layer_config = rn.get("layer");
      rn.finish();
      std::unique_ptr<Layer<S>> layer;
      try {
        layer = build(layer_config, graph.nodes_[static_cast<std::size_t>(sources[0].index)].features);
      } catch (const MemoryError& e) {
        throw MemoryError(detail::cat("Graph node '", name, "': ", e.what()));
      } catch (const Error& e) {
        detail::throw_config("Graph node '", name, "': ", e.what());
      }
      graph.add(name, std::move(layer), std::move(sources));
    }
    std::vector<GraphNode> outs;
    for (const Config& o : outputs.elements()) outs.push_back(find(o, "outputs"));
    graph.set_outputs(std::move(outs));
    graph.check();
    return graph;
  }
  std::string describe() const override {
    return detail::cat("Graph(inputs=", input_nodes_.size(), ", nodes=", nodes_.size() - input_nodes_.size(),
                       ", outputs=", outputs_.size(), ")");
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Graph>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Graph&>(other); }

  /// A table of the nodes: name (type), inputs, output shape (T steps; -1 unknown), parameters.
  std::string summary(Index T = -1) const {
    const std::vector<Index> steps = node_steps(std::vector<Index>(input_nodes_.size(), T));
    std::vector<std::vector<std::string>> rows = {{"Node (layer)", "Inputs", "Output Shape", "Param #"}};
    Index total = 0;
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
      const Node& n = nodes_[k];
      std::string inputs;
      for (Index from : n.inputs) inputs += (inputs.empty() ? "" : ", ") + nodes_[static_cast<std::size_t>(from)].name;
      Index count = 0;
      if (n.layer && n.owner < 0) {
        Layer<S>& layer = *n.layer;  // params() only reads
        count = count_values(layer.params()) + count_values(layer.buffers());
      }
      total += count;
      const std::string what = !n.layer ? "input" : n.owner >= 0 ? "shares '" + nodes_[static_cast<std::size_t>(n.owner)].name + "'" : n.layer->describe();
      rows.push_back({n.name + " (" + what + ")", inputs.empty() ? "-" : inputs,
                      shape_string(-1, steps[k] < 0 ? -1 : steps[k], n.features), std::to_string(count)});
    }
    std::vector<std::size_t> width(4, 0);
    for (const auto& r : rows)
      for (std::size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], r[c].size());
    std::ostringstream out;
    out << "Model: \"graph\" (outputs: " << output_names() << ")\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      for (std::size_t c = 0; c < 4; ++c) out << " " << rows[i][c] << std::string(width[c] - rows[i][c].size() + 2, ' ');
      out << "\n";
      if (i == 0) out << std::string(width[0] + width[1] + width[2] + width[3] + 12, '=') << "\n";
    }
    out << "Total params: " << total << "\n";
    return out.str();
  }

 protected:
  void collect_params(ParamList<S>& list) override { collect(list, false); }
  void collect_buffers(ParamList<S>& list) override { collect(list, true); }

  /// One input: x (B, T, features of input 0) -> output 0
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    one_input_.resize(1);
    one_input_[0] = LayerInput<S>{&x, &mask};
    run_forward(one_input_, mode, y);
  }
  void do_forward_inputs(const LayerInputs<S>& in, Mode mode, Tensor3<S>& y) override { run_forward(in, mode, y); }
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    run_backward(dy);
    copy_input_grad(0, dx);
  }
  void do_backward_inputs(const LayerInputs<S>& in, const Tensor3<S>& dy) override {
    run_backward(dy);
    for (Index i = 0; i < Index(in.size()); ++i) copy_input_grad(i, this->input_grad_buffer(i));
  }

 private:
  // A shared node's views of its copy's and its owner's parameters and buffers. params() and buffers() build names
  // and shapes (heap allocations) at every call, so they are taken once and again only when a generation has
  // changed since: the owner's or the copy's (a container may gain or lose parameters) or that of a view's layer
  // (an assignment that may have moved or reshaped its tensors: core/param.hpp, the optimizers' rule).
  struct SharedViews {
    ParamList<S> owner_params, copy_params, owner_buffers, copy_buffers;
    std::uint64_t owner_generation = 0, copy_generation = 0;
    bool taken = false;
  };
  struct Node {
    std::string name;
    std::unique_ptr<Layer<S>> layer;  // null: a graph input
    std::vector<Index> inputs;        // the nodes it reads
    Index features = 0;               // of its output
    Index input_number = -1;          // graph inputs: which one
    Index owner = -1;                 // shared: the node whose parameters it uses
    LayerInputs<S> call;              // its inputs in the last forward
    Tensor3<S> grad;                  // the gradient of its output (backward)
    bool has_grad = false;
    SharedViews shared;               // shared nodes: not copied (taken again from the copy's own layers)

    Node copy_structure() const {  // everything but the layer
      Node n;
      n.name = name;
      n.inputs = inputs;
      n.features = features;
      n.input_number = input_number;
      n.owner = owner;
      n.call.resize(call.size());
      return n;
    }
  };

  // ConfigError when a parameter of the node's layer has a weight regularizer: the copy's backward would add its
  // gradient a second time (file comment).
  void check_shareable(const Node& n, const std::string& who) const {
    for (const auto& p : n.layer->params()) {
      const auto id = p.owner.lock();
      if (id && id->rules.regularizer(p.role).active())
        detail::throw_config("Graph: node '", who, "' cannot share the layer of node '", n.name, "' (",
                             n.layer->describe(), "): its parameter ", p.name, " has a ", to_string(p.role),
                             " regularizer (shared layers take no weight regularizers)");
    }
  }
  void check_name(const std::string& name) const {
    if (name.empty() || name.find('.') != std::string::npos)
      detail::throw_config("Graph: node name '", name, "' must be non-empty and contain no '.'");
    for (const Node& n : nodes_)
      if (n.name == name) detail::throw_config("Graph: a node named '", name, "' exists already");
  }
  Index check_node(GraphNode node, const std::string& who) const {
    if (node.index < 0 || node.index >= Index(nodes_.size()))
      detail::throw_config("Graph: node '", who, "' reads node ", node.index, " which is not in this graph (",
                           nodes_.size(), " nodes)");
    return node.index;
  }
  Index output0() const {
    if (outputs_.empty()) detail::throw_config("Graph: no outputs (call set_outputs)");
    return outputs_[0];
  }
  std::string output_names() const {
    std::string s;
    for (Index o : outputs_) s += (s.empty() ? "" : ", ") + nodes_[static_cast<std::size_t>(o)].name;
    return s.empty() ? "none" : s;
  }
  // The steps of every node's output for inputs of these steps (-1: unknown).
  std::vector<Index> node_steps(const std::vector<Index>& input_steps) const {
    std::vector<Index> steps(nodes_.size(), -1);
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
      const Node& n = nodes_[k];
      if (!n.layer) {
        steps[k] = input_steps.at(static_cast<std::size_t>(n.input_number));
      } else {
        const Index t = steps[static_cast<std::size_t>(n.inputs[0])];
        steps[k] = n.layer->out_time(t);
      }
    }
    return steps;
  }
  const Tensor3<S>& node_output(Index k) const {
    const Node& n = nodes_.at(static_cast<std::size_t>(k));
    return n.layer ? n.layer->output() : inputs_copy_.at(static_cast<std::size_t>(n.input_number));
  }

  void collect(ParamList<S>& list, bool buffers) {
    for (Node& n : nodes_) {
      if (!n.layer || n.owner >= 0) continue;  // shared nodes: the owner's parameters
      for (auto& p : buffers ? n.layer->buffers() : n.layer->params()) {
        p.name = n.name + "." + p.name;
        list.push_back(std::move(p));
      }
    }
  }

  // in (graph inputs) -> every node -> y (a copy of output 0)
  void run_forward(const LayerInputs<S>& in, Mode mode, Tensor3<S>& y) {
    if (!checked_) check();
    inputs_copy_.resize(input_nodes_.size());
    masks_.resize(nodes_.size());
    for (std::size_t i = 0; i < input_nodes_.size(); ++i) {
      const Tensor3<S>& x = *in[i].x;
      ensure_shape(inputs_copy_[i], x.dimension(0), x.dimension(1), x.dimension(2));
      inputs_copy_[i] = x;
      masks_[static_cast<std::size_t>(input_nodes_[i])] = *in[i].mask;
    }
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
      Node& n = nodes_[k];
      if (!n.layer) continue;
      for (std::size_t j = 0; j < n.inputs.size(); ++j)
        n.call[j] = LayerInput<S>{&node_output(n.inputs[j]), &masks_[static_cast<std::size_t>(n.inputs[j])]};
      if (n.owner >= 0) {
        const Node& owner = nodes_[static_cast<std::size_t>(n.owner)];
        check_shareable(owner, n.name);  // rules may have changed since add_shared
        copy_values(n);
      }
      const Tensor3<S>& out = n.layer->forward(n.call, mode);
      masks_[k] = n.layer->out_mask_of(n.call, out.dimension(1));
    }
    y = node_output(outputs_[0]);
  }

  // dy: output 0's gradient (pending_dys_: every output's) -> every node's gradient, input nodes last
  void run_backward(const Tensor3<S>& dy) {
    for (Node& n : nodes_) n.has_grad = false;
    add_grad(outputs_[0], dy);
    if (pending_dys_)
      for (std::size_t k = 1; k < outputs_.size(); ++k)
        if ((*pending_dys_)[k]) {
          const Tensor3<S>& g = *(*pending_dys_)[k];
          if (g.dimensions() != output(Index(k)).dimensions())
            detail::throw_shape(describe(), ": gradient of output ", k, " ('", nodes_[static_cast<std::size_t>(outputs_[k])].name,
                                "') expected ", shape_string(output(Index(k))), " but got ", shape_string(g));
          add_grad(outputs_[k], g);
        }
    for (std::size_t k = nodes_.size(); k-- > 0;) {
      Node& n = nodes_[k];
      if (!n.layer) continue;
      if (!n.has_grad) {  // reaches only outputs without a gradient
        const Tensor3<S>& out = n.layer->output();
        ensure_shape(n.grad, out.dimension(0), out.dimension(1), out.dimension(2));
        n.grad.setZero();
      }
      n.layer->backward(n.call, n.grad);
      for (std::size_t j = 0; j < n.inputs.size(); ++j) add_grad(n.inputs[j], n.layer->input_grad(Index(j)));
      if (n.owner >= 0) move_grads(n);
    }
  }
  // node k's output gradient += g (the first contribution is copied)
  void add_grad(Index k, const Tensor3<S>& g) {
    Node& n = nodes_[static_cast<std::size_t>(k)];
    if (!n.has_grad) {
      ensure_shape(n.grad, g.dimension(0), g.dimension(1), g.dimension(2));
      n.grad = g;
      n.has_grad = true;
    } else {
      n.grad += g;
    }
  }
  void copy_input_grad(Index i, Tensor3<S>& dx) {
    Node& n = nodes_[static_cast<std::size_t>(input_nodes_[static_cast<std::size_t>(i)])];
    const Tensor3<S>& x = inputs_copy_[static_cast<std::size_t>(i)];
    ensure_shape(dx, x.dimension(0), x.dimension(1), x.dimension(2));
    if (n.has_grad) {
      dx = n.grad;
    } else {
      dx.setZero();
    }
  }
  const Tensor3<S>& backward_stored(const Tensor3<S>& dy) {
    if (inputs_copy_.size() != input_nodes_.size() || masks_.size() != nodes_.size())
      detail::throw_shape(describe(), ": backward called before forward");
    stored_call_.resize(input_nodes_.size());
    for (std::size_t i = 0; i < input_nodes_.size(); ++i)
      stored_call_[i] = LayerInput<S>{&inputs_copy_[i], &masks_[static_cast<std::size_t>(input_nodes_[i])]};
    return Layer<S>::backward(stored_call_, dy);
  }

  // Shared layers: the owner's parameter values into the copy; the copy's gradients into the owner's, through the
  // node's views (SharedViews: taken again only after a generation change).
  static std::uint64_t generation_of(const Layer<S>& layer) {
    const std::shared_ptr<const LayerIdentity> id = layer.identity().lock();
    return id ? id->generation : 0;
  }
  static bool views_current(const ParamList<S>& list) {
    for (const auto& p : list) {
      const std::shared_ptr<LayerIdentity> id = p.owner.lock();
      if (!id || id->generation != p.generation) return false;
    }
    return true;
  }
  SharedViews& shared_views(Node& n) {
    SharedViews& v = n.shared;
    const Layer<S>& owner = *nodes_[static_cast<std::size_t>(n.owner)].layer;
    if (v.taken && v.owner_generation == generation_of(owner) && v.copy_generation == generation_of(*n.layer) &&
        views_current(v.owner_params) && views_current(v.copy_params) && views_current(v.owner_buffers) &&
        views_current(v.copy_buffers))
      return v;
    v.taken = false;
    Layer<S>& owner_layer = *nodes_[static_cast<std::size_t>(n.owner)].layer;
    v.owner_params = owner_layer.params();
    v.copy_params = n.layer->params();
    v.owner_buffers = owner_layer.buffers();
    v.copy_buffers = n.layer->buffers();
    const auto same_sizes = [](const ParamList<S>& a, const ParamList<S>& b) {
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].size() != b[i].size()) return false;
      return true;
    };
    if (!same_sizes(v.owner_params, v.copy_params) || !same_sizes(v.owner_buffers, v.copy_buffers))
      detail::throw_usage(describe(), ": shared node '", n.name, "' has parameters of other sizes than its owner '",
                          nodes_[static_cast<std::size_t>(n.owner)].name, "'");
    v.owner_generation = generation_of(owner_layer);
    v.copy_generation = generation_of(*n.layer);
    v.taken = true;
    return v;
  }
  void copy_values(Node& n) {
    const SharedViews& v = shared_views(n);
    for (std::size_t i = 0; i < v.owner_params.size(); ++i) {
      const Param<S>& from = v.owner_params[i];
      std::copy(from.value, from.value + from.size(), v.copy_params[i].value);
    }
    for (std::size_t i = 0; i < v.owner_buffers.size(); ++i) {
      const Param<S>& from = v.owner_buffers[i];
      std::copy(from.value, from.value + from.size(), v.copy_buffers[i].value);
    }
  }
  void move_grads(Node& n) {
    const SharedViews& v = shared_views(n);
    for (std::size_t i = 0; i < v.copy_params.size(); ++i) {
      const Param<S>& from = v.copy_params[i];
      const Param<S>& to = v.owner_params[i];
      const Index size = from.size();
      if (to.trainable())  // a frozen owner keeps its gradients
        for (Index j = 0; j < size; ++j) to.grad[j] += from.grad[j];
      std::fill(from.grad, from.grad + size, S(0));
    }
  }

  std::vector<Node> nodes_;
  std::vector<Index> input_nodes_;  // the nodes of the graph inputs, in input order
  std::vector<Index> outputs_;
  mutable bool checked_ = false;
  std::vector<Tensor3<S>> inputs_copy_;  // the inputs of the last forward
  std::vector<Mask> masks_;              // every node's output mask in the last forward
  LayerInputs<S> one_input_, stored_call_;
  const std::vector<const Tensor3<S>*>* pending_dys_ = nullptr;
};

}  // namespace seqattn

#include "seqattn/model/graph_stream.hpp"  // Graph::open_inputs_stream's stream (needs Graph complete)
