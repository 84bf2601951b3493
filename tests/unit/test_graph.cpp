// Graph (model/graph.hpp): a chain equals Sequential bitwise; finite-difference gradients through fan-out, merges,
// cross-attention over a second input, a shared layer and nested models, with lengths and step masks; masks along
// the edges; several outputs; valid outputs independent of padded values; the build-time and run-time errors;
// summary(); copies and assignment.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_inputs_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::error_of;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

DenseOptions dense(std::uint64_t seed, Activation a = Activation::Linear) {
  return DenseOptions().seed(seed).activation(a).bias_init(Init::uniform(-0.5, 0.5));
}

// x (6) -> a = Dense(4, tanh), b = Dense(4) -> Add(a, b) -> LayerNorm -> SeqSelfAttention -> Dense(3)
Graph<double> fan_out_graph() {
  Graph<double> g({{"x", 6}});
  const GraphNode x = g.input("x");
  const GraphNode a = g.add<Dense<double>>("a", {x}, 4, dense(1, Activation::Tanh));
  const GraphNode b = g.add<Dense<double>>("b", {x}, 4, dense(2));
  const GraphNode s = g.merge("sum", MergeOp::Add, {a, b});
  const GraphNode n = g.add<LayerNorm<double>>("norm", {s});
  const GraphNode att = g.add<SeqSelfAttention<double>>("attention", {n}, SeqSelfAttentionOptions().units(3).seed(3));
  g.set_outputs({g.add<Dense<double>>("head", {att}, 3, dense(4))});
  return g;
}

TEST(Graph, AChainEqualsSequentialBitwise) {
  Sequential<double> seq(5);
  seq.add<Dense<double>>(4, dense(11, Activation::ReLU));
  seq.add<MultiHeadAttention<double>>(2, MultiHeadAttentionOptions().causal(true).seed(12));
  seq.add<Dense<double>>(2, dense(13));
  Graph<double> g({{"x", 5}});
  GraphNode node = g.input("x");
  for (Index i = 0; i < seq.size(); ++i) node = g.add("layer" + std::to_string(i), seq.layer(i).clone(), {node});
  g.set_outputs({node});
  const Tensor3<double> x = random_tensor(3, 6, 5, 1), dy = random_tensor(3, 6, 2, 2);
  const Mask mask = Mask::from_lengths({6, 3, 1});
  const Tensor3<double> y1 = seq.forward(x, mask, Mode::Train);
  const Tensor3<double> y2 = g.forward(x, mask, Mode::Train);
  ASSERT_EQ(y1.dimensions(), y2.dimensions());
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
  const Tensor3<double> dx1 = seq.backward(dy);
  const Tensor3<double> dx2 = g.backward(dy);
  for (Index i = 0; i < dx1.size(); ++i) EXPECT_EQ(dx1.data()[i], dx2.data()[i]);
  const ParamList<double> p1 = seq.params(), p2 = g.params();
  ASSERT_EQ(p1.size(), p2.size());
  for (std::size_t k = 0; k < p1.size(); ++k)
    for (Index i = 0; i < p1[k].size(); ++i) EXPECT_EQ(p1[k].grad[i], p2[k].grad[i]) << p2[k].name;
  EXPECT_EQ(p2[0].name, "layer0.W");
  EXPECT_EQ(g.output_mask(0), seq.output_mask());
}

TEST(Graph, FanOutGradientsMatchFiniteDifferences) {
  Graph<double> g = fan_out_graph();
  const auto plain = check_layer_gradients(g, random_tensor(2, 5, 6, 3));
  EXPECT_TRUE(plain.passed()) << plain.report();
  const auto lengths = check_layer_gradients(g, random_tensor(3, 5, 6, 4), Mask::from_lengths({5, 2, 3}));
  EXPECT_TRUE(lengths.passed()) << lengths.report();
  const auto holes = check_layer_gradients(g, random_tensor(3, 5, 6, 5), random_step_mask(3, 5, 6));
  EXPECT_TRUE(holes.passed()) << holes.report();
}

// series (6) and context (3, its own length): query projection, cross-attention over the context, Concatenate with
// the projection, Dense head; and a Multiply gate from the series.
Graph<double> two_input_graph() {
  Graph<double> g({{"series", 6}, {"context", 3}});
  const GraphNode series = g.input("series"), context = g.input("context");
  const GraphNode q = g.add<Dense<double>>("query", {series}, 4, dense(21));
  const GraphNode cross = g.add<MultiHeadAttention<double>>(
      "cross", {q, context}, 2, MultiHeadAttentionOptions().key_features(3).bias_init(Init::uniform(-0.3, 0.3)).seed(22));
  const GraphNode gate = g.add<Dense<double>>("gate", {series}, 4, dense(23, Activation::Sigmoid));
  const GraphNode gated = g.merge("gated", MergeOp::Multiply, {cross, gate});
  const GraphNode joined = g.concatenate("joined", {q, gated});
  g.set_outputs({g.add<Dense<double>>("head", {joined}, 2, dense(24))});
  return g;
}

TEST(Graph, TwoInputsWithCrossAttentionGradientsMatchFiniteDifferences) {
  Graph<double> g = two_input_graph();
  EXPECT_EQ(g.min_inputs(), 2);
  const Tensor3<double> series = random_tensor(3, 4, 6, 31), context = random_tensor(3, 7, 3, 32);
  const auto plain = check_inputs_gradients(g, {series, context});
  EXPECT_TRUE(plain.passed()) << plain.report();
  const auto masked =
      check_inputs_gradients(g, {series, context}, {Mask::from_lengths({4, 2, 3}), Mask::from_lengths({7, 1, 4})});
  EXPECT_TRUE(masked.passed()) << masked.report();
  const auto holes = check_inputs_gradients(g, {series, context}, {random_step_mask(3, 4, 33), random_step_mask(3, 7, 34)});
  EXPECT_TRUE(holes.passed()) << holes.report();
}

// Outputs at kept steps do not depend on the values at masked steps of either input (NaN there included); the
// output mask is the series' (cross-attention keeps the query's mask; the merges intersect).
TEST(Graph, ValidOutputsIgnoreMaskedValuesOfEveryInput) {
  Graph<double> g = two_input_graph();
  Tensor3<double> series = random_tensor(2, 5, 6, 41), context = random_tensor(2, 6, 3, 42);
  const Mask ms = Mask::from_steps({{1, 0, 1, 1, 0}, {0, 1, 1, 1, 1}}), mc = Mask::from_steps({{1, 1, 0, 1, 0, 0}, {1, 1, 1, 1, 1, 0}});
  const LayerInputs<double> in = {{&series, &ms}, {&context, &mc}};
  const Tensor3<double> y1 = g.forward(in);
  const Tensor3<double> y0 = g.forward({{&series, &ms}, {&context, &mc}});  // the brace form of docs/pages/graphs.md
  for (Index i = 0; i < y0.size(); ++i) EXPECT_EQ(y0.data()[i], y1.data()[i]);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (Index b = 0; b < 2; ++b) {
    for (Index t = 0; t < 5; ++t)
      if (!ms.valid(b, t, 5))
        for (Index f = 0; f < 6; ++f) series(b, t, f) = nan;
    for (Index t = 0; t < 6; ++t)
      if (!mc.valid(b, t, 6))
        for (Index f = 0; f < 3; ++f) context(b, t, f) = nan;
  }
  const Tensor3<double> y2 = g.forward(in);
  EXPECT_EQ(g.output_mask(0), ms);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 5; ++t)
      if (ms.valid(b, t, 5)) {
        for (Index f = 0; f < 2; ++f) EXPECT_EQ(y1(b, t, f), y2(b, t, f)) << b << "," << t;
      }
}

TEST(Graph, SharedLayerSumsItsGradientsIntoOneParameterSet) {
  Graph<double> g({{"x", 4}, {"y", 4}});
  const GraphNode enc = g.add<Dense<double>>("encode", {g.input("x")}, 3, dense(51, Activation::Tanh));
  const GraphNode enc_y = g.add_shared("encode_y", enc, {g.input("y")});
  const GraphNode diff = g.merge("difference", MergeOp::Subtract, {enc, enc_y});
  g.set_outputs({g.add<Dense<double>>("head", {diff}, 1, dense(52))});
  const ParamList<double> params = g.params();
  ASSERT_EQ(params.size(), 4u);  // encode.W, encode.b, head.W, head.b: the shared node adds none
  EXPECT_EQ(params[0].name, "encode.W");
  const auto result = check_inputs_gradients(g, {random_tensor(2, 3, 4, 53), random_tensor(2, 3, 4, 54)},
                                             {Mask::from_lengths({3, 2}), Mask()});
  EXPECT_TRUE(result.passed()) << result.report();
  // After an optimizer step the shared node reads the new weights: the same input on both sides gives 0 difference.
  Adam<double> adam(g.params(), AdamOptions().lr(0.1));
  const Tensor3<double> x = random_tensor(2, 3, 4, 55);
  const Mask none;
  const LayerInputs<double> same = {{&x, &none}, {&x, &none}};
  g.forward(same, Mode::Train);
  g.backward(same, random_tensor(2, 3, 1, 56));
  adam.step();
  g.forward(same);
  const Tensor3<double>& d = g.node_output(g.node("difference"));
  for (Index i = 0; i < d.size(); ++i) EXPECT_EQ(d.data()[i], 0.0);
  EXPECT_CONTAINS(g.summary(3), "encode_y (shares 'encode')");
}

// The shared node's views of the owner's tensors are taken again when an assignment moves them (the owner's
// generation changes): the copy reads the new weights and its gradients reach the owner's new storage.
TEST(Graph, SharedNodeFollowsTheOwnerWhenItsTensorsMove) {
  Graph<double> g({{"x", 4}, {"y", 4}});
  const GraphNode enc = g.add<Dense<double>>("encode", {g.input("x")}, 3, dense(51, Activation::Tanh));
  const GraphNode enc_y = g.add_shared("encode_y", enc, {g.input("y")});
  g.set_outputs({g.merge("sum", MergeOp::Add, {enc, enc_y})});
  const Tensor3<double> x = random_tensor(2, 3, 4, 57), dy = random_tensor(2, 3, 3, 58);
  const Mask none;
  const LayerInputs<double> same = {{&x, &none}, {&x, &none}};
  g.forward(same, Mode::Train);
  g.backward(same, dy);
  auto& owner = dynamic_cast<Dense<double>&>(*g.node_layer(enc));
  const double* old_kernel = owner.params()[0].value;
  owner = Dense<double>(4, 3, dense(61, Activation::Tanh));  // move assignment: the tensors of the temporary
  ASSERT_NE(owner.params()[0].value, old_kernel);
  Dense<double> expected(4, 3, dense(61, Activation::Tanh));
  const Tensor3<double> y_expected = expected.forward(x, none, Mode::Train);
  g.forward(same, Mode::Train);
  const Tensor3<double>& y_shared = g.node_output(enc_y);
  ASSERT_EQ(y_shared.dimensions(), y_expected.dimensions());
  for (Index i = 0; i < y_expected.size(); ++i) ASSERT_EQ(y_shared.data()[i], y_expected.data()[i]) << i;
  g.zero_grad();
  g.backward(same, dy);
  expected.zero_grad();
  expected.backward(x, none, dy);
  const ParamList<double> got = owner.params(), want = expected.params();
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k)  // both nodes' gradients: twice the layer's, as both see x and dy
    for (Index i = 0; i < got[k].size(); ++i)
      EXPECT_NEAR(got[k].grad[i], 2.0 * want[k].grad[i], 1e-12) << got[k].name << "[" << i << "]";
}

TEST(Graph, SeveralOutputsTakeOneGradientEach) {
  Graph<double> g({{"x", 3}});
  const GraphNode h = g.add<Dense<double>>("hidden", {g.input("x")}, 4, dense(61, Activation::Tanh));
  const GraphNode out1 = g.add<Dense<double>>("out1", {h}, 2, dense(62));
  const GraphNode out2 = g.add<Dense<double>>("out2", {h}, 1, dense(63));
  g.set_outputs({out1, out2});
  EXPECT_EQ(g.output_count(), 2);
  const Tensor3<double> x = random_tensor(2, 4, 3, 64), dy1 = random_tensor(2, 4, 2, 65), dy2 = random_tensor(2, 4, 1, 66);
  g.forward(x, Mask(), Mode::Train);
  EXPECT_EQ(g.output(1).dimension(2), 1);
  g.zero_grad();
  g.backward_outputs({&dy1, &dy2});
  const Tensor3<double> both = g.input_grad(0);
  std::vector<double> grads_both;
  for (const auto& p : g.params()) grads_both.insert(grads_both.end(), p.grad, p.grad + p.size());
  // the sum of two backward passes, one output each
  g.zero_grad();
  g.backward_outputs({&dy1, nullptr});
  const Tensor3<double> first = g.input_grad(0);
  const Tensor3<double> zero1 = dy1.constant(0.0);
  g.backward_outputs({&zero1, &dy2});
  const Tensor3<double> second = g.input_grad(0);
  std::vector<double> grads_sum;
  for (const auto& p : g.params()) grads_sum.insert(grads_sum.end(), p.grad, p.grad + p.size());
  for (Index i = 0; i < both.size(); ++i) EXPECT_NEAR(both.data()[i], first.data()[i] + second.data()[i], 1e-14);
  for (std::size_t i = 0; i < grads_both.size(); ++i) EXPECT_NEAR(grads_both[i], grads_sum[i], 1e-14);
  EXPECT_CONTAINS(error_of<ShapeError>([&] { g.backward_outputs({&dy1}); }), "expected 2 gradients but got 1");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { g.backward_outputs({&dy1, &dy1}); }),
                  "gradient of output 1 ('out2') expected (2, 4, 1) but got (2, 4, 2)");
}

TEST(Graph, NestsInSequentialAndHoldsSequential) {
  auto inner = std::make_unique<Graph<double>>(fan_out_graph());
  Sequential<double> model(6);
  model.add(std::move(inner));
  model.add<Dense<double>>(2, dense(71));
  const auto outer = check_layer_gradients(model, random_tensor(2, 4, 6, 72), Mask::from_lengths({4, 2}));
  EXPECT_TRUE(outer.passed()) << outer.report();
  EXPECT_EQ(model.params()[0].name, "0.graph.a.W");

  Graph<double> g({{"x", 3}});
  auto body = std::make_unique<Sequential<double>>(3);
  body->add<Dense<double>>(5, dense(73, Activation::ReLU));
  body->add<Dense<double>>(3, dense(74));
  const GraphNode enc = g.add("body", std::move(body), {g.input("x")});
  g.set_outputs({g.merge("residual", MergeOp::Add, {g.input("x"), enc})});
  EXPECT_EQ(g.params()[0].name, "body.0.dense.W");
  const auto result = check_layer_gradients(g, random_tensor(2, 4, 3, 75), random_step_mask(2, 4, 76));
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(Graph, BuildErrorsNameTheNodeAndTheShapes) {
  Graph<float> g({{"x", 4}, {"c", 3}});
  const GraphNode x = g.input("x"), c = g.input("c");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { g.add("bad", std::make_unique<Dense<float>>(5, 2), {x}); }),
                  "Graph: node 'bad' (Dense(units=2)) input 0 expected 5 features but node 'x' gives 4");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { g.merge("sum", MergeOp::Add, {x, c}); }),
                  "node 'sum' (Merge(add, inputs=2)) input 1 expected 4 features but node 'c' gives 3");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { g.add("two", std::make_unique<Dense<float>>(4, 2), {x, x}); }),
                  "node 'two' (Dense(units=2)) takes 1 input(s) but got 2");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.input("y"); }), "no input named 'y' (inputs: x, c)");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.add<Dense<float>>("x", {x}, 2); }), "a node named 'x' exists already");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.add<Dense<float>>("a.b", {x}, 2); }), "must be non-empty and contain no '.'");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.add<Dense<float>>("far", {GraphNode{9}}, 2); }),
                  "node 'far' reads node 9 which is not in this graph (2 nodes)");
  const GraphNode d = g.add<Dense<float>>("d", {x}, 2);
  const Tensor3<float> xs(2, 3, 4), cs(2, 3, 3);
  const Mask m;
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.forward(LayerInputs<float>{{&xs, &m}, {&cs, &m}}); }),
                  "no outputs (call set_outputs)");
  g.set_outputs({d});
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.forward(LayerInputs<float>{{&xs, &m}, {&cs, &m}}); }),
                  "Graph: reaching no output: input 'c' (outputs: d)");
  g.add<Dense<float>>("unused", {c}, 2);
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.check(); }), "reaching no output: input 'c', node 'unused'");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { g.forward(xs); }), "takes 2 or more inputs but got one");
  Graph<float> reg({{"x", 4}});
  const GraphNode r = reg.add<Dense<float>>("r", {reg.input("x")}, 4);
  reg.node_layer(r)->set_regularizer(ParamRole::Kernel, L1L2{0.0, 0.1});
  EXPECT_CONTAINS(error_of<ConfigError>([&] { reg.add_shared("r2", r, {r}); }),
                  "cannot share the layer of node 'r' (Dense(units=4)): its parameter W has a kernel regularizer");
}

TEST(Graph, SummaryListsNodesInputsAndShapes) {
  const Graph<double> g = two_input_graph();
  const std::string s = g.summary(4);
  EXPECT_CONTAINS(s, "Model: \"graph\" (outputs: head)");
  EXPECT_CONTAINS(s, "cross (MultiHeadAttention(heads=2");
  EXPECT_CONTAINS(s, "query, context");
  EXPECT_CONTAINS(s, "(None, 4, 8)");  // joined: 4 + 4 features
  EXPECT_CONTAINS(s, "Total params: ");
}

TEST(Graph, CopiesAreDeepAndAssignmentKeepsOptimizersValid) {
  Graph<double> g = fan_out_graph();
  Graph<double> copy = g;
  const Tensor3<double> x = random_tensor(2, 3, 6, 81);
  const Tensor3<double> y = g.forward(x);
  const Tensor3<double> yc = copy.forward(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], yc.data()[i]);
  copy.params()[0].values().setZero();
  EXPECT_NE(g.params()[0].values().cwiseAbs().sum(), 0.0);
  Adam<double> adam(g.params());
  g = copy;  // the same structure: copied in place
  g.forward(x, Mask(), Mode::Train);
  g.backward(random_tensor(2, 3, 3, 82));
  EXPECT_NO_THROW(adam.step());
  EXPECT_EQ(g.params()[0].values().cwiseAbs().sum(), adam.params()[0].values().cwiseAbs().sum());
}

}  // namespace
