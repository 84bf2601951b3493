// An encoder-decoder Graph (model/graph.hpp): a history encoded by a TransformerEncoderBlock, a TransformerDecoderBlock
// node over (targets, encoder output) as its two inputs. The node equals the block's own
// forward(x, mx, memory, mm) / backward bitwise; finite-difference gradients of the whole graph for both inputs and
// every parameter, with padded and step-masked histories and targets; the decoder's causal self-attention: an
// output step does not change when later targets change.
#include <gtest/gtest.h>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_inputs_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

// history (3 features) -> Dense(4) -> encoder block = memory; targets (2) -> Dense(4) -> decoder(., memory) -> Dense(2)
Graph<double> encoder_decoder(bool pre_norm) {
  Graph<double> g({{"history", 3}, {"targets", 2}});
  const DenseOptions d = DenseOptions().bias_init(Init::uniform(-0.3, 0.3));
  const GraphNode h = g.add<Dense<double>>("embed_history", {g.input("history")}, 4, DenseOptions(d).seed(1));
  const GraphNode memory = g.add<TransformerEncoderBlock<double>>(
      "encoder", {h}, 2, 6, TransformerEncoderOptions().norm_first(pre_norm).seed(2));
  const GraphNode t = g.add<Dense<double>>("embed_targets", {g.input("targets")}, 4, DenseOptions(d).seed(3));
  const GraphNode dec = g.add<TransformerDecoderBlock<double>>(
      "decoder", {t, memory}, 2, 6, TransformerDecoderOptions().norm_first(pre_norm).seed(4));
  g.set_outputs({g.add<Dense<double>>("head", {dec}, 2, DenseOptions(d).seed(5))});
  return g;
}

TEST(GraphEncoderDecoder, DecoderNodeIsTheBlocksMemoryCall) {
  TransformerDecoderBlock<double> a(4, 2, 6, TransformerDecoderOptions().seed(9));
  TransformerDecoderBlock<double> b = a;
  const Tensor3<double> x = random_tensor(2, 5, 4, 1), memory = random_tensor(2, 6, 4, 2), dy = random_tensor(2, 5, 4, 3);
  const Mask mx = Mask::from_lengths({5, 3}), mm = random_step_mask(2, 6, 4);
  const Tensor3<double> y1 = a.forward(x, mx, memory, mm, Mode::Train);
  const Tensor3<double> dx1 = a.backward(x, mx, memory, mm, dy);
  const LayerInputs<double> in = {{&x, &mx}, {&memory, &mm}};
  const Tensor3<double> y2 = b.forward(in, Mode::Train);
  b.backward(in, dy);
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
  for (Index i = 0; i < dx1.size(); ++i) EXPECT_EQ(dx1.data()[i], b.input_grad(0).data()[i]);
  for (Index i = 0; i < a.memory_grad().size(); ++i) EXPECT_EQ(a.memory_grad().data()[i], b.input_grad(1).data()[i]);
  const auto result = check_inputs_gradients(b, {x, memory}, {mx, mm});
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(GraphEncoderDecoder, GradientsMatchFiniteDifferences) {
  for (bool pre : {false, true}) {
    SCOPED_TRACE(pre ? "pre-norm" : "post-norm");
    Graph<double> g = encoder_decoder(pre);
    const Tensor3<double> history = random_tensor(2, 6, 3, 11), targets = random_tensor(2, 4, 2, 12);
    const auto lengths = check_inputs_gradients(g, {history, targets}, {Mask::from_lengths({6, 2}), Mask::from_lengths({4, 3})});
    EXPECT_TRUE(lengths.passed()) << lengths.report();
    const auto holes = check_inputs_gradients(g, {history, targets}, {random_step_mask(2, 6, 13), random_step_mask(2, 4, 14)});
    EXPECT_TRUE(holes.passed()) << holes.report();
  }
}

TEST(GraphEncoderDecoder, OutputStepsDoNotSeeLaterTargets) {
  Graph<double> g = encoder_decoder(false);
  const Tensor3<double> history = random_tensor(2, 6, 3, 21);
  Tensor3<double> targets = random_tensor(2, 5, 2, 22);
  const Mask none;
  const Tensor3<double> y1 = g.forward({{&history, &none}, {&targets, &none}});
  for (Index b = 0; b < 2; ++b)
    for (Index f = 0; f < 2; ++f) targets(b, 3, f) += 1.0;  // step 3 changes
  const Tensor3<double> y2 = g.forward({{&history, &none}, {&targets, &none}});
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 2; ++f) {
        if (t < 3) {
          EXPECT_EQ(y1(b, t, f), y2(b, t, f)) << b << "," << t;
        } else {
          EXPECT_NE(y1(b, t, f), y2(b, t, f)) << b << "," << t;
        }
      }
  EXPECT_EQ(g.node_count(), 7);
}

}  // namespace
