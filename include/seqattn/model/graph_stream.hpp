#pragma once
/// \file
/// GraphStream\<S>: the stream form of a Graph (model/graph.hpp; core/stream.hpp, "Several inputs"), what
/// Stream\<S>(graph, B) runs. Graph input 0 steps; graph inputs 1 .. are the context; the stream computes output 0.
///
/// ```unparsed
///   Nodes that read only the context (an encoder over the memory) run once per set_context, in Mode::Infer, on
///   copies of their layers taken when the stream opens. The stream nodes (those reading input 0) step in graph
///   order: a node steps its input 0 and takes its other inputs (context nodes) as its layer stream's context
///   (cross-attention: TransformerDecoderBlock, MultiHeadAttention with 2 or 3 inputs); a merge steps all its inputs
///   together, which must then all be stream nodes. Shared nodes stream with their owner's weights, in place.
///   Only the nodes output 0 needs run. As in Sequential, after a node that pools time only per-step nodes may follow.
/// ```
/// ConfigError naming the node when a node cannot stream: its layer refuses (causal only), a node other than a merge
/// reads the stream at an input other than 0, a merge mixes stream and context inputs, or output 0 does not read
/// input 0. State and reset: every stream node's, named "\<node>.\<state>".

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/stream.hpp"
#include "seqattn/model/graph.hpp"

namespace seqattn {

/// The stream form of a Graph: the nodes output 0 depends on, stepped in order; see the file documentation.
template <class S>
class GraphStream final : public LayerStream<S> {
 public:
  /// Opens the stream of `graph` for `batch` streams (ConfigError naming a node that cannot stream).
  GraphStream(const Graph<S>& graph, Index batch, const StreamOptions& options)
      : graph_(graph), nodes_(static_cast<std::size_t>(graph.node_count())) {
    const Index N = graph.node_count(), out = graph.output_node(0);
    // needed: the nodes output 0 reads, directly or not
    std::vector<bool> needed(nodes_.size(), false);
    needed[static_cast<std::size_t>(out)] = true;
    for (Index k = out; k >= 0; --k)
      if (needed[static_cast<std::size_t>(k)])
        for (Index from : graph.node_inputs(k)) needed[static_cast<std::size_t>(from)] = true;
    std::vector<bool> pooled(nodes_.size(), false);
    for (Index k = 0; k < N; ++k) {
      NodeRun& run = nodes_[static_cast<std::size_t>(k)];
      run.needed = needed[static_cast<std::size_t>(k)];
      const Index input = graph.node_input_number(k);
      if (input >= 0) {
        run.streams = input == 0;
        continue;
      }
      const std::vector<Index>& from = graph.node_inputs(k);
      for (Index f : from) run.streams = run.streams || nodes_[static_cast<std::size_t>(f)].streams;
      if (!run.needed) continue;
      const Layer<S>& layer = *graph.node_weights(k);
      if (!run.streams) {  // reads only the context: a copy of the layer runs at set_context
        run.context_layer = layer.clone();
        continue;
      }
      try {
        run.stream = layer.open_inputs_stream(batch, options, Index(from.size()));
      } catch (const ConfigError& e) {
        detail::throw_config("Graph: node '", name(k), "' ", e.what());
      }
      if (run.stream->steps_all_inputs()) {
        for (std::size_t i = 0; i < from.size(); ++i)
          if (!nodes_[static_cast<std::size_t>(from[i])].streams)
            detail::throw_config("Graph: node '", name(k), "' (", layer.describe(), ") cannot be streamed: it steps all ",
                                 "its inputs together but input ", i, " (node '", name(from[i]),
                                 "') reads only the context (graph inputs 1 ..), not the streamed input 0");
      } else {
        if (!nodes_[static_cast<std::size_t>(from[0])].streams)
          detail::throw_config("Graph: node '", name(k), "' (", layer.describe(), ") cannot be streamed: its input 0 ",
                               "(node '", name(from[0]), "') reads only the context, but another input reads the ",
                               "streamed input (only input 0 of a layer steps; its other inputs are its context)");
        for (std::size_t i = 1; i < from.size(); ++i)
          if (nodes_[static_cast<std::size_t>(from[i])].streams)
            detail::throw_config("Graph: node '", name(k), "' (", layer.describe(), ") cannot be streamed: its input ",
                                 i, " (node '", name(from[i]), "') changes with the stream, but a layer steps only its ",
                                 "input 0 (its other inputs are its context, fixed while the stream steps)");
      }
      for (Index f : from)
        if (pooled[static_cast<std::size_t>(f)] && !run.stream->per_step())
          detail::throw_config("Graph: node '", name(k), "' (", layer.describe(), ") cannot be streamed after node '",
                               name(f), "', which pools time: only per-step layers (Dense, activations, norms, "
                               "Dropout, merges) may follow it in a stream");
      pooled[static_cast<std::size_t>(k)] =
          run.stream->pools_time() || std::any_of(from.begin(), from.end(), [&](Index f) { return bool(pooled[static_cast<std::size_t>(f)]); });
      run.xs.resize(from.size());
      if (!run.stream->steps_all_inputs() && from.size() > 1) run.context.resize(from.size() - 1);
    }
    if (!nodes_[static_cast<std::size_t>(out)].streams)
      detail::throw_config("Graph: cannot be streamed: its output 0 (node '", name(out), "') does not read input 0 ('",
                           name(graph.input(0).index), "'), the input a stream steps");
    context_masks_.resize(static_cast<std::size_t>(graph.min_inputs()));
    context_copies_.resize(static_cast<std::size_t>(graph.min_inputs()));
  }

  Index context_inputs() const override { return graph_.min_inputs() - 1; }

  /// context[i]: graph input i + 1 -> the context nodes' outputs (once) -> every stream node's context
  void set_context(const LayerInputs<S>& context) override { apply_context(context, -1); }
  /// The same for stream b alone (batch-1 context: the context nodes run on it, then the stream nodes' contexts of b).
  void set_stream_context(Index b, const LayerInputs<S>& context) override { apply_context(context, b); }

  /// x (B, n, features of input 0) -> the stream nodes in order -> y (B, n, features of output 0)
  void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
    const Index B = x.dimension(0), n = x.dimension(1), out = graph_.output_node(0);
    for (Index k = 0; k <= out; ++k) {
      NodeRun& run = nodes_[static_cast<std::size_t>(k)];
      if (!run.streams || !run.needed) continue;
      if (!run.stream) {  // input 0
        run.output = &x;
        continue;
      }
      Tensor3<S>& target = k == out ? y : run.buffer;
      if (k != out) ensure_shape(target, B, n, graph_.node_features(k));
      const std::vector<Index>& from = graph_.node_inputs(k);
      if (run.stream->steps_all_inputs()) {
        for (std::size_t i = 0; i < from.size(); ++i) run.xs[i] = nodes_[static_cast<std::size_t>(from[i])].output;
        run.stream->step_inputs(run.xs, start, target);
      } else {
        run.stream->step(*nodes_[static_cast<std::size_t>(from[0])].output, start, target);
      }
      run.output = &target;
    }
  }
  void reset(Index b) override {
    for (NodeRun& run : nodes_)
      if (run.stream) run.stream->reset(b);
  }
  void state(StreamStateList<S>& list, const std::string& prefix) override {
    for (Index k = 0; k < graph_.node_count(); ++k)
      if (nodes_[static_cast<std::size_t>(k)].stream)
        nodes_[static_cast<std::size_t>(k)].stream->state(list, prefix + name(k) + ".");
  }
  Index max_steps() const override {
    Index steps = kUnlimitedSteps;
    for (const NodeRun& run : nodes_)
      if (run.stream) steps = std::min(steps, run.stream->max_steps());
    return steps;
  }
  bool per_step() const override {
    return std::all_of(nodes_.begin(), nodes_.end(), [](const NodeRun& r) { return !r.stream || r.stream->per_step(); });
  }
  bool pools_time() const override {
    return std::any_of(nodes_.begin(), nodes_.end(), [](const NodeRun& r) { return r.stream && r.stream->pools_time(); });
  }

 private:
  // set_context (stream < 0: every stream) or set_stream_context(stream).
  void apply_context(const LayerInputs<S>& context, Index stream) {
    if (static_cast<Index>(context.size()) != context_inputs())
      detail::throw_shape("Graph: set_context expected ", context_inputs(), " context input(s) but got ",
                          context.size());
    for (Index k = 0; k < graph_.node_count(); ++k) {
      NodeRun& run = nodes_[static_cast<std::size_t>(k)];
      const Index input = graph_.node_input_number(k);
      if (input > 0) {  // a copy: the caller's tensors need not outlive the call
        const Tensor3<S>& x = *context[static_cast<std::size_t>(input - 1)].x;
        Tensor3<S>& copy = context_copies_[static_cast<std::size_t>(input)];
        ensure_shape(copy, x.dimension(0), x.dimension(1), x.dimension(2));
        copy = x;
        context_masks_[static_cast<std::size_t>(input)] = *context[static_cast<std::size_t>(input - 1)].mask;
        run.output = &copy;
        run.mask = &context_masks_[static_cast<std::size_t>(input)];
      } else if (run.context_layer) {
        const std::vector<Index>& from = graph_.node_inputs(k);
        run.call.resize(from.size());
        for (std::size_t i = 0; i < from.size(); ++i)
          run.call[i] = LayerInput<S>{nodes_[static_cast<std::size_t>(from[i])].output,
                                      nodes_[static_cast<std::size_t>(from[i])].mask};
        const Tensor3<S>& y = run.context_layer->forward(run.call, Mode::Infer);
        run.own_mask = run.context_layer->out_mask_of(run.call, y.dimension(1));
        run.output = &y;
        run.mask = &run.own_mask;
      }
    }
    for (Index k = 0; k < graph_.node_count(); ++k) {
      NodeRun& run = nodes_[static_cast<std::size_t>(k)];
      if (run.context.empty()) continue;
      const std::vector<Index>& from = graph_.node_inputs(k);
      for (std::size_t i = 1; i < from.size(); ++i)
        run.context[i - 1] = LayerInput<S>{nodes_[static_cast<std::size_t>(from[i])].output,
                                           nodes_[static_cast<std::size_t>(from[i])].mask};
      if (stream < 0)
        run.stream->set_context(run.context);
      else
        run.stream->set_stream_context(stream, run.context);
    }
  }

  struct NodeRun {
    bool needed = false;                           // output 0 reads it
    bool streams = false;                          // reads graph input 0 (directly or not)
    std::unique_ptr<LayerStream<S>> stream;        // stream nodes
    std::unique_ptr<Layer<S>> context_layer;       // context nodes: a copy of the layer, run at set_context
    LayerInputs<S> call, context;                  // a context node's call; a stream node's context (inputs 1 ..)
    std::vector<const Tensor3<S>*> xs;             // a merge's stepped inputs
    Tensor3<S> buffer;                             // a stream node's output of the last step
    const Tensor3<S>* output = nullptr;            // its output: the step's, or the context's
    const Mask* mask = nullptr;                    // a context node's output mask
    Mask own_mask;
  };

  const std::string& name(Index k) const { return graph_.node_name(GraphNode{k}); }

  const Graph<S>& graph_;
  std::vector<NodeRun> nodes_;
  std::vector<Tensor3<S>> context_copies_;  // by graph input number (1 ..)
  std::vector<Mask> context_masks_;
};

}  // namespace seqattn
