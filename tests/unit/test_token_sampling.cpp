// TokenSampler (model/token_sampling.hpp): greedy picks the first maximum; top-k sampling never leaves the k largest
// logits and its frequencies follow softmax(logits / temperature) over them (20,000 draws, within 4 standard
// errors); the same seed gives the same tokens; errors. End to end: greedy decoding of a token decoder Graph
// (Embedding, TransformerDecoderBlock over a memory, Dense to logits) with a Stream gives exactly the tokens of
// greedy decoding by rerunning the forward over the prefix at every step.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/stream.hpp"
#include "seqattn/model/token_sampling.hpp"

using namespace seqattn;

namespace {

TEST(TokenSampler, GreedyPicksTheFirstMaximum) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  TokenSampler<float> greedy(TokenSamplingOptions().top_k(1));
  EXPECT_EQ(greedy.pick(logits.data(), 5), 1);
  TokenSampler<float> cold(TokenSamplingOptions().temperature(0.0));
  EXPECT_EQ(cold.pick(logits.data(), 5), 1);
  EXPECT_TRUE(cold.greedy());
  EXPECT_FALSE(TokenSampler<float>().greedy());
}

TEST(TokenSampler, TopKFrequenciesFollowTheTemperedSoftmax) {
  const std::vector<double> logits = {1.0, 0.2, 2.0, -0.5, 1.5, 0.0};
  for (const auto& [k, temperature] : std::vector<std::pair<Index, double>>{{3, 1.0}, {3, 0.5}, {0, 2.0}, {2, 1.0}}) {
    SCOPED_TRACE(::testing::Message() << "top_k " << k << " temperature " << temperature);
    TokenSampler<double> sampler(TokenSamplingOptions().top_k(k).temperature(temperature).seed(3));
    // the k largest: ids 2, 4, 0 (then 1, 5, 3)
    const std::vector<Index> by_size = {2, 4, 0, 1, 5, 3};
    const Index kk = k == 0 ? 6 : k;
    std::vector<double> expected(6, 0.0);
    double sum = 0;
    for (Index j = 0; j < kk; ++j) sum += std::exp(logits[static_cast<std::size_t>(by_size[j])] / temperature);
    for (Index j = 0; j < kk; ++j)
      expected[static_cast<std::size_t>(by_size[j])] = std::exp(logits[static_cast<std::size_t>(by_size[j])] / temperature) / sum;
    const int draws = 20000;
    std::vector<int> counts(6, 0);
    for (int i = 0; i < draws; ++i) ++counts[static_cast<std::size_t>(sampler.pick(logits.data(), 6))];
    for (std::size_t id = 0; id < 6; ++id) {
      const double p = expected[id], freq = double(counts[id]) / draws;
      if (p == 0) {
        EXPECT_EQ(counts[id], 0) << "token " << id << " is outside the top " << kk;
      } else {
        EXPECT_NEAR(freq, p, 4 * std::sqrt(p * (1 - p) / draws) + 1e-9) << "token " << id;
      }
    }
  }
}

TEST(TokenSampler, SameSeedSameTokensAndErrors) {
  const std::vector<float> logits = {0.1f, 0.3f, 0.2f, 0.25f};
  TokenSampler<float> a(TokenSamplingOptions().seed(9)), b(TokenSamplingOptions().seed(9)), c(TokenSamplingOptions().seed(10));
  std::vector<Index> sa, sb, sc;
  for (int i = 0; i < 64; ++i) {
    sa.push_back(a.pick(logits.data(), 4));
    sb.push_back(b.pick(logits.data(), 4));
    sc.push_back(c.pick(logits.data(), 4));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  const std::vector<float> bad = {0.0f, std::nanf(""), 1.0f};
  try {
    a.pick(bad.data(), 3);
    ADD_FAILURE() << "sampled a NaN logit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logit 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.pick(logits.data(), 0), ShapeError);
  EXPECT_THROW(TokenSampler<float>(TokenSamplingOptions().top_k(-1)), ConfigError);
  EXPECT_THROW(TokenSampler<float>(TokenSamplingOptions().temperature(-0.5)), ConfigError);
  Tensor3<float> y(2, 1, 4);
  y.setZero();
  std::vector<Index> ids;
  EXPECT_THROW(a.next(y, 1, ids), ShapeError);
}

// tokens (B, T, 1) -> Embedding(V, 16) -> positions -> pre-norm decoder(., memory) -> Dense(V) logits
Graph<double> token_decoder(Index V) {
  Graph<double> g({{"tokens", 1}, {"memory", 16}});
  const GraphNode e = g.add("embed", std::make_unique<Embedding<double>>(1, V, 16), {g.input("tokens")});
  const GraphNode p = g.add<SinusoidalPositionalEncoding<double>>("positions", {e});
  const GraphNode d = g.add<TransformerDecoderBlock<double>>("decoder", {p, g.input("memory")}, 2, 32,
                                                             TransformerDecoderOptions().norm_first(true).seed(4));
  g.set_outputs({g.add<Dense<double>>("logits", {d}, V)});
  Rng rng(8);
  for (auto& param : g.params())
    for (Index i = 0; i < param.size(); ++i) param.values()(i) = rng.uniform(-1.0, 1.0);
  return g;
}

TEST(TokenSampler, StreamedGreedyDecodingEqualsRerunDecoding) {
  const Index V = 11, B = 3, Tm = 5, steps = 12;
  Graph<double> g = token_decoder(V);
  Rng rng(2);
  Tensor3<double> memory(B, Tm, 16);
  for (Index i = 0; i < memory.size(); ++i) memory.data()[i] = rng.uniform(-1.0, 1.0);
  const Mask memory_mask({5, 3, 4});
  // with the stream: one token per step, fed back in
  TokenSampler<double> greedy(TokenSamplingOptions().top_k(1));
  Stream<double> stream = g.stream(B);
  stream.set_context(memory, memory_mask);
  Tensor3<double> x(B, 1, 1);
  for (Index b = 0; b < B; ++b) x(b, 0, 0) = double(1 + 3 * b);  // the start tokens
  std::vector<std::vector<Index>> streamed(static_cast<std::size_t>(B));
  std::vector<Index> ids;
  for (Index t = 0; t < steps; ++t) {
    greedy.next(stream.step(x), 0, ids);
    for (Index b = 0; b < B; ++b) {
      streamed[static_cast<std::size_t>(b)].push_back(ids[static_cast<std::size_t>(b)]);
      x(b, 0, 0) = double(ids[static_cast<std::size_t>(b)]);
    }
  }
  // by rerunning the forward over the prefix
  std::vector<std::vector<Index>> rerun;
  for (Index b = 0; b < B; ++b) rerun.push_back({1 + 3 * b});
  const Mask all;
  for (Index t = 0; t < steps; ++t) {
    Tensor3<double> prefix(B, t + 1, 1);
    for (Index b = 0; b < B; ++b)
      for (Index s = 0; s <= t; ++s) prefix(b, s, 0) = double(rerun[static_cast<std::size_t>(b)][static_cast<std::size_t>(s)]);
    const Tensor3<double>& y = g.forward({{&prefix, &all}, {&memory, &memory_mask}}, Mode::Infer);
    for (Index b = 0; b < B; ++b) rerun[static_cast<std::size_t>(b)].push_back(greedy.pick(&y(b, t, 0), V));
  }
  std::map<Index, int> distinct;
  for (Index b = 0; b < B; ++b) {
    const std::vector<Index> tail(rerun[static_cast<std::size_t>(b)].begin() + 1, rerun[static_cast<std::size_t>(b)].end());
    EXPECT_EQ(streamed[static_cast<std::size_t>(b)], tail) << "sequence " << b;
    for (Index id : tail) ++distinct[id];
  }
  EXPECT_GE(distinct.size(), 3u) << "the decoder should not emit one token only (a check that cannot fail otherwise)";
}

}  // namespace
