#pragma once
// Seeded random graphs (model/graph.hpp) for the property tests (tests/unit/test_property_graphs.cpp):
//   random_graph<S>(seed, steps)   one or two inputs ("x", and "context" with its own length), then 2 to 6 random
//       nodes, each one of: a random stack (tests/support/random_model.hpp: every layer type, nested Sequentials
//       and Residual blocks; time-preserving ones, behind a Dense that gives it its input width), an elementwise
//       merge of 2 or 3 nodes (projected to one width), a Concatenate, a cross-attention from a node to the
//       context, or the shared copy of an earlier projection on another node; the nodes no other node reads are
//       concatenated into a Dense head (every node reaches the output). The structure depends on `seed` only.
//   random_graph<S>(seed, steps, true)   causal: the stacks are random causal models (RandomModelOptions::causal),
//       so the graph streams (model/graph_stream.hpp): "x" steps, "context" is read by cross-attention only.
// RandomGraph::recipe lists the nodes, for failure messages.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/graph.hpp"
#include "support/random_model.hpp"

namespace seqattn::testing {

template <class S>
struct RandomGraph {
  std::unique_ptr<Graph<S>> graph;
  bool two_inputs = false;
  std::string recipe;
};

template <class S>
RandomGraph<S> random_graph(std::uint64_t seed, Index steps, bool causal = false) {
  Rng rng(seed * 0x9E3779B97F4A7C15ULL + 7);
  const auto below = [&](Index n) { return static_cast<Index>(rng.below(static_cast<std::uint64_t>(n))); };
  std::uint64_t weight = seed * 1000;
  RandomGraph<S> out;
  out.two_inputs = rng.below(2) == 1;
  const Index F = 2 + below(5), Fc = 2 + below(4);
  std::vector<GraphInput> inputs = {{"x", F}};
  if (out.two_inputs) inputs.push_back({"context", Fc});
  out.graph = std::make_unique<Graph<S>>(inputs);
  Graph<S>& g = *out.graph;

  struct Slot {
    GraphNode node;
    Index features;
    bool read = false;
  };
  std::vector<Slot> slots = {{g.input("x"), F}};
  std::vector<GraphNode> projections;  // Dense nodes that may be shared
  bool cross_used = false;
  int count = 0;
  const auto name = [&](const char* kind) { return std::string(kind) + std::to_string(count++); };
  const auto pick = [&]() -> Slot& { return slots[static_cast<std::size_t>(below(Index(slots.size())))]; };
  const auto project = [&](Slot& from, Index width) {  // a Dense from `from` to `width` features
    from.read = true;
    const GraphNode p = g.template add<Dense<S>>(name("project"), {from.node}, width, DenseOptions().seed(++weight));
    projections.push_back(p);
    out.recipe += "\n  " + g.node_name(p) + " <- " + g.node_name(from.node);
    return p;
  };

  const Index nodes = 2 + below(5);
  for (Index k = 0; k < nodes; ++k) {
    const Index kind = below(out.two_inputs ? 5 : 4);
    if (kind == 0) {  // a random stack that keeps the steps
      for (int attempt = 0; attempt < 20; ++attempt) {
        RandomModel<S> m = random_model<S>(seed * 100 + std::uint64_t(k) * 10 + std::uint64_t(attempt),
                                           RandomModelOptions().steps(steps).allow_embedding(false).max_layers(3).causal(causal),
                                           ++weight);
        if (m.model.out_time(steps) != steps || m.model.out_time(steps + 3) != steps + 3) continue;
        const GraphNode in = project(pick(), m.model.in_features());
        const Index width = m.model.out_features();
        const GraphNode body = g.add(name("stack"), std::make_unique<Sequential<S>>(std::move(m.model)), {in});
        out.recipe += "\n  " + g.node_name(body) + ":" + m.recipe;
        slots.push_back({body, width});
        break;
      }
    } else if (kind == 1 || kind == 2) {  // a merge or a concatenation of 2 or 3 nodes
      const Index n = 2 + below(2);
      std::vector<GraphNode> parts;
      std::vector<Index> widths;
      Slot& first = pick();
      first.read = true;
      parts.push_back(first.node);
      widths.push_back(first.features);
      for (Index i = 1; i < n; ++i) {
        Slot& other = pick();
        other.read = true;
        if (kind == 1 && other.features != first.features) {
          parts.push_back(project(other, first.features));
        } else {
          parts.push_back(other.node);
        }
        widths.push_back(kind == 1 ? first.features : other.features);
      }
      static const MergeOp kOps[] = {MergeOp::Add, MergeOp::Multiply, MergeOp::Average, MergeOp::Maximum,
                                     MergeOp::Minimum, MergeOp::Subtract};
      const MergeOp op = n == 2 ? kOps[below(6)] : kOps[below(5)];
      const GraphNode merged = kind == 1 ? g.merge(name(to_string(op).c_str()), op, parts) : g.concatenate(name("concat"), parts);
      Index width = 0;
      for (Index w : widths) width = kind == 1 ? w : width + w;
      std::string from;
      for (const GraphNode& p : parts) from += " " + g.node_name(p);
      out.recipe += "\n  " + g.node_name(merged) + " <-" + from;
      slots.push_back({merged, width});
    } else if (kind == 3 && !projections.empty()) {  // an earlier projection applied again
      const GraphNode owner = projections[static_cast<std::size_t>(below(Index(projections.size())))];
      Index in_width = g.node_layer(owner)->in_features();
      Slot& from = pick();
      from.read = true;
      GraphNode source = from.node;
      if (from.features != in_width) source = project(from, in_width);
      const GraphNode shared = g.add_shared(name("shared"), owner, {source});
      out.recipe += "\n  " + g.node_name(shared) + " = " + g.node_name(owner) + " on " + g.node_name(source);
      slots.push_back({shared, g.node_layer(owner)->out_features()});
    } else if (out.two_inputs) {  // cross-attention from a node to the context
      Slot& query = pick();
      query.read = true;
      const Index heads = query.features % 2 == 0 && rng.below(2) == 1 ? 2 : 1;
      const GraphNode cross = g.template add<MultiHeadAttention<S>>(
          name("cross"), {query.node, g.input("context")}, heads,
          MultiHeadAttentionOptions().key_features(Fc).seed(++weight));
      cross_used = true;
      out.recipe += "\n  " + g.node_name(cross) + " <- " + g.node_name(query.node) + ", context";
      slots.push_back({cross, query.features});
    }
  }
  if (out.two_inputs && !cross_used) {
    Slot& query = pick();
    query.read = true;
    const GraphNode cross = g.template add<MultiHeadAttention<S>>(
        name("cross"), {query.node, g.input("context")}, 1, MultiHeadAttentionOptions().key_features(Fc).seed(++weight));
    out.recipe += "\n  " + g.node_name(cross) + " <- " + g.node_name(query.node) + ", context";
    slots.push_back({cross, query.features});
  }
  // the nodes nobody reads (the last one always) into the head
  std::vector<GraphNode> tails;
  std::vector<Index> widths;
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (!slots[i].read || i + 1 == slots.size()) {
      tails.push_back(slots[i].node);
      widths.push_back(slots[i].features);
    }
  GraphNode last = tails[0];
  if (tails.size() > 1) last = g.concatenate(name("tails"), tails);
  const GraphNode head = g.template add<Dense<S>>("head", {last}, 1 + below(3), DenseOptions().seed(++weight));
  g.set_outputs({head});
  out.recipe += "\n  head <- " + g.node_name(last);
  return out;
}

}  // namespace seqattn::testing
