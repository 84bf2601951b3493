// Property: random causal graphs (tests/support/random_graph.hpp with causal stacks: merges, concatenations, shared
// projections, nested Sequential and Residual stacks of every causal layer, cross-attention to a second input) stream
// exactly. For each graph, B = 3 streams are fed T steps in random chunks of 1..4 steps, with a context of random
// length and padding when the graph has a second input, and every output row is compared with the graph's forward
// over the whole sequence (Mode::Infer): 1e-10 relative in double, 2e-4 in float. Prints the graphs and rows checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "seqattn/core/random.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/stream.hpp"
#include "support/random_graph.hpp"

using namespace seqattn;
using seqattn::testing::random_graph;
using seqattn::testing::RandomGraph;

namespace {

template <class S>
Tensor3<S> uniform_tensor(Index B, Index T, Index F, Rng& rng) {
  Tensor3<S> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  return x;
}

// Streams one random causal graph; adds the compared rows to `rows`.
template <class S>
::testing::AssertionResult graph_streams_exactly(std::uint64_t seed, double tol, Index& rows) {
  const Index B = 3, T = 10;
  RandomGraph<S> rg = random_graph<S>(seed, T, true);
  Graph<S>& g = *rg.graph;
  Rng rng(seed + 99);
  const Tensor3<S> x = uniform_tensor<S>(B, T, g.input_features(0, g.min_inputs()), rng);
  const Mask all;
  LayerInputs<S> call = {{&x, &all}};
  Tensor3<S> context;
  Mask context_mask;
  if (rg.two_inputs) {
    const Index Tc = 2 + Index(rng.below(6));
    context = uniform_tensor<S>(B, Tc, g.input_features(1, 2), rng);
    context_mask = Mask({Tc, 1 + Index(rng.below(std::uint64_t(Tc))), Index(rng.below(std::uint64_t(Tc + 1)))});
    call.push_back({&context, &context_mask});
  }
  const Tensor3<S> expected = g.forward(call, Mode::Infer);
  Stream<S> stream = g.stream(B);
  if (rg.two_inputs) stream.set_context(context, context_mask);
  const Index out = g.out_features();
  for (Index t = 0; t < T;) {
    const Index n = std::min<Index>(T - t, 1 + Index(rng.below(4)));
    Tensor3<S> chunk(B, n, x.dimension(2));
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i)
        for (Index f = 0; f < x.dimension(2); ++f) chunk(b, i, f) = x(b, t + i, f);
    const Tensor3<S>& y = stream.step(chunk);
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i) {
        for (Index f = 0; f < out; ++f) {
          const double e = double(expected(b, t + i, f)), got = double(y(b, i, f));
          if (!(std::abs(got - e) <= tol * (1 + std::abs(e))))
            return ::testing::AssertionFailure() << "graph " << seed << " stream " << b << " step " << t + i
                                                 << " feature " << f << ": stream " << got << " forward " << e
                                                 << "\n" << rg.recipe;
        }
        ++rows;
      }
    t += n;
  }
  return ::testing::AssertionSuccess();
}

TEST(PropertyGraphStreams, RandomCausalGraphsStreamExactlyDouble) {
  Index rows = 0, graphs = 0, with_context = 0;
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    EXPECT_TRUE(graph_streams_exactly<double>(seed, 1e-10, rows));
    ++graphs;
    with_context += random_graph<double>(seed, 10, true).two_inputs ? 1 : 0;
  }
  std::printf("random causal graphs streamed (double): %ld graphs (%ld with a context), %ld output rows\n", long(graphs),
              long(with_context), long(rows));
}

TEST(PropertyGraphStreams, RandomCausalGraphsStreamExactlyFloat) {
  Index rows = 0;
  for (std::uint64_t seed = 1000; seed < 1100; ++seed) EXPECT_TRUE(graph_streams_exactly<float>(seed, 2e-4, rows));
  std::printf("random causal graphs streamed (float): 100 graphs, %ld output rows\n", long(rows));
}

}  // namespace
