// Graphs in model files (model/graph.hpp config() / from_config, registered as "Graph"): a rebuilt graph has the
// same nodes, connections, shared layers, parameter names and outputs bitwise; a Sequential holding a graph saves
// and loads through io/model_file.hpp and predicts bitwise the same; bad entries are refused naming the node.
#include <gtest/gtest.h>

#include <sstream>

#include "seqattn/io/model_file.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"

using namespace seqattn;
using seqattn::testing::error_of;
using seqattn::testing::random_tensor;

namespace {

Graph<double> sample_graph() {
  Graph<double> g({{"series", 5}, {"context", 3}});
  const GraphNode q = g.add<Dense<double>>("query", {g.input("series")}, 4, DenseOptions().activation(Activation::Tanh).seed(1));
  const GraphNode cross = g.add<MultiHeadAttention<double>>("cross", {q, g.input("context")}, 2,
                                                            MultiHeadAttentionOptions().key_features(3).seed(2));
  const GraphNode again = g.add_shared("query_again", q, {g.input("series")});
  const GraphNode sum = g.merge("sum", MergeOp::Add, {cross, again});
  const GraphNode joined = g.concatenate("joined", {q, sum});
  g.set_outputs({g.add<Dense<double>>("head", {joined}, 2, DenseOptions().seed(3)), sum});
  return g;
}

TEST(GraphModelFile, ConfigRebuildsTheSameGraph) {
  Graph<double> g = sample_graph();
  const auto rebuilt = build_layer<double>(layer_entry<double>(g), 5);
  auto& h = dynamic_cast<Graph<double>&>(*rebuilt);
  EXPECT_EQ(h.summary(4), g.summary(4));
  EXPECT_EQ(h.output_count(), 2);
  const ParamList<double> a = g.params(), b = h.params();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].name, b[k].name);
    b[k].values() = a[k].values();
  }
  const Tensor3<double> x = random_tensor(2, 4, 5, 1), c = random_tensor(2, 6, 3, 2);
  const Mask mx = Mask::from_lengths({4, 2}), mc = Mask::from_lengths({6, 3});
  const Tensor3<double> y1 = g.forward({{&x, &mx}, {&c, &mc}});
  const Tensor3<double> y2 = h.forward({{&x, &mx}, {&c, &mc}});
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
  EXPECT_EQ(layer_entry<double>(h).dump(), layer_entry<double>(g).dump());
}

TEST(GraphModelFile, SequentialWithAGraphSavesAndLoads) {
  Graph<float> g({{"x", 3}});
  const GraphNode a = g.add<Dense<float>>("a", {g.input("x")}, 4, DenseOptions().activation(Activation::ReLU).seed(4));
  const GraphNode b = g.add<Dense<float>>("b", {g.input("x")}, 4, DenseOptions().seed(5));
  g.set_outputs({g.merge("gate", MergeOp::Multiply, {a, b})});
  Sequential<float> model(3);
  model.add(std::make_unique<Graph<float>>(g));
  model.add<Dense<float>>(2, DenseOptions().seed(6));
  std::stringstream file;
  save_model(model, file);
  Sequential<float> loaded = load_model<float>(file);
  EXPECT_EQ(loaded.summary(5), model.summary(5));
  EXPECT_EQ(loaded.params()[0].name, "0.graph.a.W");
  const Tensor3<float> x = random_tensor(2, 5, 3, 7).cast<float>();
  const Mask mask = Mask::from_lengths({5, 3});
  const Tensor3<float> y1 = model.forward(x, mask), y2 = loaded.forward(x, mask);
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
}

TEST(GraphModelFile, AGraphSavesAndLoadsAtTheRoot) {
  Graph<double> g = sample_graph();
  std::stringstream file;
  save_model(g, file);
  const std::string bytes = file.str();
  std::stringstream in(bytes);
  Graph<double> loaded = load_graph<double>(in);
  EXPECT_EQ(loaded.summary(3), g.summary(3));
  const Tensor3<double> x = random_tensor(2, 3, 5, 11), c = random_tensor(2, 5, 3, 12);
  const Mask mx = Mask::from_steps({{1, 0, 1}, {1, 1, 0}}), mc = Mask::from_lengths({5, 2});
  const Tensor3<double> y1 = g.forward({{&x, &mx}, {&c, &mc}});
  const Tensor3<double> y2 = loaded.forward({{&x, &mx}, {&c, &mc}});
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
  for (Index k = 0; k < 2; ++k)
    for (Index i = 0; i < g.output(k).size(); ++i) EXPECT_EQ(g.output(k).data()[i], loaded.output(k).data()[i]);
  std::stringstream as_sequential(bytes);
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_model<double>(as_sequential); }),
                  "expected a Sequential but got");
  Sequential<double> seq(3);
  seq.add<Dense<double>>(2);
  std::stringstream seq_file;
  save_model(seq, seq_file);
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_graph<double>(seq_file); }),
                  "load_graph(stream): architecture: 'model' expected a Graph but got");
}

TEST(GraphModelFile, BadEntriesNameTheNode) {
  Graph<double> g = sample_graph();
  const std::string text = layer_entry<double>(g).dump();
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const std::size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) t.replace(at, from.size(), to);
    return detail::model_format::from_json(nlohmann::ordered_json::parse(t));
  };
  EXPECT_CONTAINS(error_of<ConfigError>([&] { build_layer<double>(layer_entry<double>(g), 4); }),
                  "in_features expected 4");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { build_layer<double>(with("\"inputs\":[\"query\",\"context\"]", "\"inputs\":[\"query\",\"nowhere\"]"), 5); }),
                  "no node named 'nowhere'");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { build_layer<double>(with("\"shares\":\"query\"", "\"shares\":\"missing\""), 5); }),
                  "no node named 'missing'");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { build_layer<double>(with("\"outputs\":[\"head\",\"sum\"]", "\"outputs\":[]"), 5); }),
                  "'outputs' expected a non-empty array of node names");
}

}  // namespace
