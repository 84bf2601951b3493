// Streams with a context (core/stream.hpp, "Several inputs"): cross-attention (MultiHeadAttention with 2 and 3
// inputs), TransformerDecoderBlock and Graph streams, whose input 0 steps while the other inputs (the memory) are
// fixed. Every output row of a stream fed in random chunks is compared with the layer's forward (Mode::Infer) over
// the whole target sequence with the same memory: padded memories (lengths and step masks), causal cross-attention
// with windows, separate values, output activations, pre- and post-norm decoders, encoder-decoder graphs with merges
// and shared layers; a second sequence after reset and set_context with a new memory; the refusals (no context,
// wrong shapes, a layer that cannot stream, a graph node reading the stream at input 1); state names; steady steps
// that allocate nothing.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/model/stream.hpp"

using namespace seqattn;

namespace {

template <class S>
Tensor3<S> random_tensor(Index B, Index T, Index F, Rng& rng) {
  Tensor3<S> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  return x;
}

template <class S>
void randomize(Layer<S>& layer, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& p : layer.params())
    for (Index i = 0; i < p.size(); ++i) p.values()(i) = static_cast<S>(rng.uniform(-0.6, 0.6));
}

template <class S>
double tolerance() {
  return std::is_same<S, double>::value ? 1e-12 : 2e-5;
}

// The context of a check: the memory inputs (inputs 1 ..) of the model and their masks.
template <class S>
struct Context {
  std::vector<Tensor3<S>> x;
  std::vector<Mask> masks;
  LayerInputs<S> inputs() const {
    LayerInputs<S> in;
    for (std::size_t i = 0; i < x.size(); ++i) in.push_back({&x[i], &masks[i]});
    return in;
  }
};

// Feeds B streams T target steps in random chunks of 1..max_chunk steps and compares every output row with the
// model's forward over the whole targets and the context; then resets, sets `next` as the context and does it again.
template <class S>
::testing::AssertionResult context_stream_matches(Layer<S>& model, Index inputs, const Context<S>& first,
                                                  const Context<S>& next, Index T, std::uint64_t seed,
                                                  Index max_chunk = 3) {
  Rng rng(seed);
  const Index B = first.x[0].dimension(0), F = model.in_features(), out = model.out_features();
  Stream<S> stream(model, B, StreamOptions(), inputs);
  double worst = 0;
  for (const Context<S>* ctx : {&first, &next}) {
    stream.reset();
    stream.set_context(ctx->inputs());
    const Tensor3<S> x = random_tensor<S>(B, T, F, rng);
    const Mask none;
    LayerInputs<S> call = {{&x, &none}};
    for (const LayerInput<S>& c : ctx->inputs()) call.push_back(c);
    const Tensor3<S> expected = model.forward(call, Mode::Infer);
    for (Index t = 0; t < T;) {
      const Index n = std::min<Index>(T - t, 1 + Index(rng.uniform(0.0, double(max_chunk) - 1e-9)));
      Tensor3<S> chunk(B, n, F);
      for (Index b = 0; b < B; ++b)
        for (Index i = 0; i < n; ++i)
          for (Index f = 0; f < F; ++f) chunk(b, i, f) = x(b, t + i, f);
      const Tensor3<S>& y = stream.step(chunk);
      for (Index b = 0; b < B; ++b)
        for (Index i = 0; i < n; ++i)
          for (Index f = 0; f < out; ++f) {
            const double e = double(expected(b, t + i, f)), got = double(y(b, i, f));
            const double err = std::abs(got - e) / (1 + std::abs(e));
            worst = std::max(worst, err);
            if (!(err <= tolerance<S>()))
              return ::testing::AssertionFailure() << model.describe() << ": stream " << b << " step " << t + i
                                                   << " feature " << f << ": stream " << got << " forward " << e;
          }
      t += n;
    }
  }
  return ::testing::AssertionSuccess() << "worst relative difference " << worst;
}

template <class S>
Context<S> memory_context(Index B, Index Tm, Index F, Mask mask, Rng& rng) {
  Context<S> c;
  c.x.push_back(random_tensor<S>(B, Tm, F, rng));
  c.masks.push_back(std::move(mask));
  return c;
}

// Step masks: stream 0 keeps everything, stream 1 has holes, stream 2 keeps its last two steps only.
Mask holes_mask(Index B, Index Tm) {
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(B * Tm), 1);
  for (Index t = 0; t < Tm; t += 2) keep[static_cast<std::size_t>(Tm + t)] = 0;
  for (Index t = 0; t + 2 < Tm; ++t) keep[static_cast<std::size_t>(2 * Tm + t)] = 0;
  return Mask::from_steps(B, Tm, keep);
}

template <class S>
class StreamContextTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(StreamContextTest, Scalars);

TYPED_TEST(StreamContextTest, CrossAttentionMatchesForward) {
  using S = TypeParam;
  Rng rng(5);
  const Index B = 3, Tm = 6, T = 9;
  struct Case {
    const char* what;
    MultiHeadAttentionOptions options;
    Index inputs;
  };
  const std::vector<Case> cases = {
      {"plain", MultiHeadAttentionOptions().key_features(5), 2},
      {"causal", MultiHeadAttentionOptions().key_features(5).causal(true), 2},
      {"causal window 2", MultiHeadAttentionOptions().key_features(5).causal(true).attention_window(2), 2},
      {"separate values", MultiHeadAttentionOptions().key_features(5).value_features(3), 3},
      {"tanh projections", MultiHeadAttentionOptions().key_features(5).activation(Activation::Tanh).output_activation(
                               Activation::Tanh), 2},
      {"no bias, 1 head of 8", MultiHeadAttentionOptions().key_features(5).use_bias(false), 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    MultiHeadAttention<S> mha(8, c.inputs == 2 && std::string(c.what).find("1 head") != std::string::npos ? 1 : 2,
                              c.options);
    randomize<S>(mha, 11);
    for (const Mask& mask : {Mask(), Mask({6, 3, 1}), holes_mask(B, Tm)}) {
      Context<S> first = memory_context<S>(B, Tm, 5, mask, rng), next = memory_context<S>(B, Tm - 2, 5, Mask({4, 0, 2}), rng);
      if (c.inputs == 3) {
        first.x.push_back(random_tensor<S>(B, Tm, 3, rng));
        first.masks.push_back(first.masks[0]);
        next.x.push_back(random_tensor<S>(B, Tm - 2, 3, rng));
        next.masks.push_back(next.masks[0]);
      }
      EXPECT_TRUE(context_stream_matches<S>(mha, c.inputs, first, next, T, 3));
    }
  }
}

TYPED_TEST(StreamContextTest, DecoderBlockMatchesForward) {
  using S = TypeParam;
  Rng rng(7);
  const Index B = 3, Tm = 7, T = 10;
  for (bool pre : {false, true})
    for (int variant = 0; variant < 3; ++variant) {
      SCOPED_TRACE(::testing::Message() << (pre ? "pre-norm" : "post-norm") << " variant " << variant);
      TransformerDecoderOptions o = TransformerDecoderOptions().norm_first(pre).memory_features(6).seed(3);
      if (variant == 1) o.attention_window(3).activation(Activation::ReLU);
      if (variant == 2) o.use_bias(false).dropout(0.3).attention_dropout(0.2);  // dropout: identity when streaming
      TransformerDecoderBlock<S> block(8, 2, 12, o);
      randomize<S>(block, 13);
      const Context<S> first = memory_context<S>(B, Tm, 6, variant == 1 ? holes_mask(B, Tm) : Mask({7, 4, 2}), rng);
      const Context<S> next = memory_context<S>(B, 3, 6, Mask(), rng);
      EXPECT_TRUE(context_stream_matches<S>(block, 2, first, next, T, 9));
    }
}

// targets (3) -> Dense(8) -> PositionEmbedding-free sinusoidal encoding -> decoder(., encoder(memory)) -> add the
// projected targets -> Dense(2); the memory (4) -> Dense(8) -> TransformerEncoderBlock (not causal) -> shared Dense.
template <class S>
Graph<S> encoder_decoder() {
  Graph<S> g({{"targets", 3}, {"memory", 4}});
  const GraphNode tgt = g.input("targets"), mem = g.input("memory");
  const GraphNode m1 = g.template add<Dense<S>>("mem_proj", {mem}, 8);
  const GraphNode enc = g.template add<TransformerEncoderBlock<S>>("encoder", {m1}, 2, 16);
  const GraphNode t1 = g.template add<Dense<S>>("tgt_proj", {tgt}, 8);
  const GraphNode t2 = g.template add<SinusoidalPositionalEncoding<S>>("positions", {t1});
  const GraphNode dec = g.template add<TransformerDecoderBlock<S>>("decoder", {t2, enc}, 2, 16);
  const GraphNode mix = g.add("mix", std::make_unique<Dense<S>>(8, 8), {dec});
  const GraphNode again = g.add_shared("mix_again", mix, {t1});
  const GraphNode sum = g.merge("sum", MergeOp::Add, {mix, again});
  const GraphNode both = g.concatenate("both", {sum, t1});
  const GraphNode head = g.template add<Dense<S>>("head", {both}, 2);
  g.set_outputs({head});
  randomize<S>(g, 17);
  return g;
}

TYPED_TEST(StreamContextTest, EncoderDecoderGraphMatchesForward) {
  using S = TypeParam;
  Rng rng(9);
  Graph<S> g = encoder_decoder<S>();
  const Context<S> first = memory_context<S>(3, 8, 4, Mask({8, 5, 2}), rng);
  const Context<S> next = memory_context<S>(3, 4, 4, holes_mask(3, 4), rng);
  EXPECT_TRUE(context_stream_matches<S>(g, 2, first, next, 11, 21, 4));
  Stream<S> stream = g.stream(3);
  std::vector<std::string> names;
  for (const auto& t : stream.state()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"decoder.self_mha.keys", "decoder.self_mha.values"}));
}

// Row b of x (B, T, F), its first `steps` steps: (1, steps, F).
Tensor3<double> row_of(const Tensor3<double>& x, Index b, Index steps) {
  Tensor3<double> out(1, steps, x.dimension(2));
  for (Index t = 0; t < steps; ++t)
    for (Index f = 0; f < x.dimension(2); ++f) out(0, t, f) = x(b, t, f);
  return out;
}

// Per-stream contexts: set_context(b, ...) with each stream's memory cut to its length equals set_context of the
// padded batch; then stream 1 alone starts over with a new memory of another length while streams 0 and 2 go on,
// and matches a one-stream Stream given that memory, while the others still match the first stream.
TEST(StreamContext, PerStreamContextsMatchTheBatchContext) {
  Rng rng(4);
  Graph<double> g = encoder_decoder<double>();
  const Index B = 3, Tm = 8;
  const Tensor3<double> memory = random_tensor<double>(B, Tm, 4, rng);
  const std::vector<Index> lengths = {8, 5, 2};
  Stream<double> batch_stream(g, B), per_stream(g, B), fresh(g, 1);
  batch_stream.set_context(memory, Mask(lengths));
  for (Index b = 0; b < B; ++b) per_stream.set_context(b, row_of(memory, b, lengths[static_cast<std::size_t>(b)]));
  const auto compare = [](const Tensor3<double>& a, Index ba, const Tensor3<double>& b, Index bb, const char* what) {
    double worst = 0;
    for (Index f = 0; f < a.dimension(2); ++f) worst = std::max(worst, std::abs(a(ba, 0, f) - b(bb, 0, f)));
    EXPECT_LE(worst, 1e-12) << what;
  };
  for (int t = 0; t < 6; ++t) {
    const Tensor3<double> x = random_tensor<double>(B, 1, 3, rng);
    const Tensor3<double> a = batch_stream.step(x);
    const Tensor3<double>& p = per_stream.step(x);
    for (Index b = 0; b < B; ++b) compare(a, b, p, b, "per-stream contexts against the batch context");
  }
  const Tensor3<double> memory1 = random_tensor<double>(1, 11, 4, rng);  // longer than any memory before
  per_stream.reset(1);
  per_stream.set_context(1, memory1);
  fresh.set_context(memory1);
  for (int t = 0; t < 6; ++t) {
    const Tensor3<double> x = random_tensor<double>(B, 1, 3, rng);
    const Tensor3<double> a = batch_stream.step(x);
    const Tensor3<double> p = per_stream.step(x);
    const Tensor3<double>& one = fresh.step(row_of(x, 1, 1));
    compare(a, 0, p, 0, "stream 0 goes on");
    compare(a, 2, p, 2, "stream 2 goes on");
    compare(one, 0, p, 1, "stream 1 starts over with its new memory");
  }
  Stream<double> partial(g, B);
  partial.set_context(0, row_of(memory, 0, 3));
  EXPECT_THROW(partial.step(random_tensor<double>(B, 1, 3, rng)), UsageError);  // streams 1 and 2 have none
}

TEST(StreamContext, RefusalsNameTheProblem) {
  Rng rng(1);
  Graph<double> g = encoder_decoder<double>();
  Stream<double> stream(g, 2);
  const Tensor3<double> x = random_tensor<double>(2, 1, 3, rng);
  try {
    stream.step(x);
    ADD_FAILURE() << "stepped without a context";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("set_context"), std::string::npos) << e.what();
  }
  const Tensor3<double> wrong = random_tensor<double>(2, 5, 3, rng);
  try {
    stream.set_context(wrong);
    ADD_FAILURE() << "a memory of the wrong width";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(2, steps >= 1, 4)"), std::string::npos) << e.what();
  }
  // a decoder that is not causal
  TransformerDecoderBlock<double> acausal(8, 2, 8, TransformerDecoderOptions().causal(false));
  try {
    Stream<double> s(acausal, 2);
    ADD_FAILURE() << "streamed a decoder without causal";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("set causal"), std::string::npos) << e.what();
  }
  // a node whose input 1 changes with the stream: cross-attention from the memory to the targets
  Graph<double> bad({{"targets", 8}, {"memory", 8}});
  const GraphNode q = bad.add("attend", std::make_unique<MultiHeadAttention<double>>(8, 2),
                              {bad.input("memory"), bad.input("targets")});
  bad.set_outputs({q});
  try {
    Stream<double> s(bad, 2);
    ADD_FAILURE() << "streamed a node reading the stream at input 1";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("node 'attend'"), std::string::npos) << e.what();
  }
  // output 0 reads only the context
  Graph<double> still({{"targets", 3}, {"memory", 4}});
  const GraphNode a = still.template add<Dense<double>>("a", {still.input("targets")}, 4);
  const GraphNode m = still.template add<Dense<double>>("m", {still.input("memory")}, 4);
  still.set_outputs({m, a});
  try {
    Stream<double> s(still, 2);
    ADD_FAILURE() << "streamed an output that does not read input 0";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("output 0 (node 'm')"), std::string::npos) << e.what();
  }
  // a merge of a stream node and a context node
  Graph<double> mixed({{"targets", 4}, {"memory", 4}});
  const GraphNode s1 = mixed.merge("add", MergeOp::Add, {mixed.input("targets"), mixed.input("memory")});
  mixed.set_outputs({s1});
  try {
    Stream<double> s(mixed, 2);
    ADD_FAILURE() << "streamed a merge of the stream and the context";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("node 'add'"), std::string::npos) << e.what();
  }
}

TEST(StreamContext, SteadyDecodeStepsAllocateNothing) {
  Rng rng(2);
  Graph<float> g = encoder_decoder<float>();
  Stream<float> stream(g, 2, StreamOptions().max_history(64));
  const Tensor3<float> memory = random_tensor<float>(2, 6, 4, rng);
  stream.set_context(memory, Mask({6, 4}));
  const Tensor3<float> x = random_tensor<float>(2, 1, 3, rng);
  for (int i = 0; i < 20; ++i) stream.step(x);  // the key/value cache grows to 32 rows
  Eigen::internal::set_is_malloc_allowed(false);
  for (int i = 0; i < 8; ++i) stream.step(x);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(stream.steps(0), 28);
}

}  // namespace
