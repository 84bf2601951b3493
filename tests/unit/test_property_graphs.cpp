// Properties of random graphs (tests/support/random_graph.hpp: fan-out, merges, concatenations, cross-attention to a
// second input with its own lengths, shared layers, random stacks of every layer type as nodes):
//   - padding: valid outputs are bitwise the same when the padding of every input grows and holds garbage (finite
//     values up to 1e3, then NaN and Inf), in Mode::Infer;
//   - a training step (Mode::Train, masked MSE, backward) gives finite outputs and gradients, input gradients exactly
//     0 at padded steps, and parameter gradients bitwise independent of the padded values;
//   - finite-difference gradients in double of every input and parameter (Mode::Infer, lengths on every input).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_graph.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kGraphs = 60;          // padding and training steps (the coverage test: always all 60)
constexpr int kGradientGraphs = 24;  // finite differences

struct Batch {
  std::vector<Tensor3<float>> xs;
  std::vector<Mask> masks;
  std::vector<std::vector<Index>> lengths;
  LayerInputs<float> inputs() const {
    LayerInputs<float> in;
    for (std::size_t i = 0; i < xs.size(); ++i) in.push_back({&xs[i], &masks[i]});
    return in;
  }
};

Batch random_batch(const RandomGraph<float>& rg, Index B, Index T, std::uint64_t seed) {
  Batch batch;
  for (Index i = 0; i < rg.graph->min_inputs(); ++i) {
    const Index Ti = i == 0 ? T : T + 2;  // the context has other steps
    Tensor3<float> x(B, Ti, rg.graph->input_features(i, rg.graph->min_inputs()));
    Rng rng(seed + std::uint64_t(i));
    for (Index k = 0; k < x.size(); ++k) x.data()[k] = static_cast<float>(rng.uniform(-1.0, 1.0));
    batch.xs.push_back(x);
    batch.lengths.push_back(random_lengths(B, Ti, seed + 100 + std::uint64_t(i), 1));
    batch.masks.push_back(Mask::from_lengths(batch.lengths.back()));
  }
  return batch;
}

// The generator draws every kind of node often enough for the properties to mean something.
TEST(PropertyGraphs, RandomGraphsDrawEveryKindOfNode) {
  std::map<std::string, int> kinds;
  for (int seed = 1; seed <= kGraphs; ++seed) {
    const std::string recipe = random_graph<float>(seed, 4).recipe;
    for (const char* kind : {"stack", "cross", "shared", "concat", "add", "multiply", "average", "maximum", "minimum",
                             "subtract"})
      if (recipe.find(std::string("\n  ") + kind) != std::string::npos) ++kinds[kind];
  }
  for (const char* kind : {"stack", "cross", "shared", "concat"}) EXPECT_GE(kinds[kind], 8) << kind;
  int merges = 0;
  for (const char* op : {"add", "multiply", "average", "maximum", "minimum", "subtract"}) {
    EXPECT_GE(kinds[op], 1) << op;
    merges += kinds[op];
  }
  EXPECT_GE(merges, 15);
  std::printf("node kinds over %d random graphs:", kGraphs);
  for (const auto& [kind, n] : kinds) std::printf(" %s %d", kind.c_str(), n);
  std::printf("\n");
}

TEST(PropertyGraphs, ValidOutputsOfRandomGraphsIgnorePaddingBitwise) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int seed = 1; seed <= kGraphs; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 4;
    RandomGraph<float> rg = random_graph<float>(seed, T);
    SCOPED_TRACE(::testing::Message() << "graph seed " << seed << ":" << rg.recipe);
    Graph<float>& g = *rg.graph;
    const Batch a = random_batch(rg, B, T, 1000 + seed);
    const Tensor3<float> y = g.forward(a.inputs());
    const Mask my = g.output_mask(0);
    ASSERT_EQ(first_non_finite(y), "");
    for (int garbage = 0; garbage < 2; ++garbage) {
      Batch b = a;
      Rng rng(3000 + seed);
      for (std::size_t i = 0; i < b.xs.size(); ++i) {
        const Index T2 = b.xs[i].dimension(1) + 1 + static_cast<Index>(rng.below(3));
        b.xs[i] = with_padding(a.xs[i], a.lengths[i], T2, [&](Index k) {
          return garbage == 0 ? static_cast<float>(rng.uniform(-1e3, 1e3)) : k % 2 ? nan : inf;
        });
      }
      const Tensor3<float> y2 = g.forward(b.inputs());
      EXPECT_TRUE(same_valid_steps(y, my, y2, g.output_mask(0))) << (garbage ? "NaN and Inf" : "finite garbage");
    }
  }
}

TEST(PropertyGraphs, TrainingStepsOfRandomGraphsAreFiniteAndIgnorePadding) {
  for (int seed = 1; seed <= kGraphs; seed += property_stride()) {
    const Index T = 3 + seed % 4, B = 4;
    RandomGraph<float> rg = random_graph<float>(seed + 500, T);
    SCOPED_TRACE(::testing::Message() << "graph seed " << seed + 500 << ":" << rg.recipe);
    const Batch a = random_batch(rg, B, T, 5000 + seed);
    Batch b = a;
    Rng rng(6000 + seed);
    for (std::size_t i = 0; i < b.xs.size(); ++i)
      b.xs[i] = with_padding(a.xs[i], a.lengths[i], a.xs[i].dimension(1),
                             [&](Index) { return static_cast<float>(rng.uniform(-1e3, 1e3)); });
    std::vector<std::vector<float>> grads[2];
    std::vector<Tensor3<float>> dxs[2];
    Tensor3<float> ys[2];
    Mask masks[2];
    for (int run = 0; run < 2; ++run) {
      Graph<float> g = *rg.graph;  // the same weights and dropout seeds in both runs
      const Batch& batch = run == 0 ? a : b;
      g.zero_grad();
      ys[run] = g.forward(batch.inputs(), Mode::Train);
      masks[run] = g.output_mask(0);
      Tensor3<float> target(ys[run].dimension(0), ys[run].dimension(1), ys[run].dimension(2));
      Rng t(seed);
      for (Index k = 0; k < target.size(); ++k) target.data()[k] = static_cast<float>(t.uniform(-1.0, 1.0));
      MeanSquaredError<float> loss;
      loss.forward(ys[run], target, masks[run]);
      g.backward(batch.inputs(), loss.grad());
      for (Index i = 0; i < g.min_inputs(); ++i) dxs[run].push_back(g.input_grad(i));
      for (const auto& p : g.params()) grads[run].emplace_back(p.grad, p.grad + p.size());
    }
    ASSERT_EQ(first_non_finite(ys[0]), "");
    EXPECT_TRUE(same_valid_steps(ys[0], masks[0], ys[1], masks[1]));
    for (std::size_t i = 0; i < dxs[0].size(); ++i) {
      ASSERT_EQ(first_non_finite(dxs[0][i]), "") << "input " << i;
      EXPECT_EQ(padded_nonzero(dxs[0][i], a.lengths[i]), "") << "input " << i;
      EXPECT_TRUE(same_valid_steps(dxs[0][i], a.masks[i], dxs[1][i], a.masks[i])) << "input gradient " << i;
    }
    for (std::size_t k = 0; k < grads[0].size(); ++k) {
      EXPECT_EQ(first_non_finite(grads[0][k].data(), Index(grads[0][k].size())), "");
      EXPECT_EQ(std::memcmp(grads[0][k].data(), grads[1][k].data(), grads[0][k].size() * sizeof(float)), 0)
          << "parameter " << k << " depends on padded values";
    }
  }
}

TEST(PropertyGraphs, GradientsOfRandomGraphsMatchFiniteDifferences) {
  int checked = 0;
  for (int seed = 1; seed <= kGradientGraphs; seed += property_stride()) {
    const Index T = 3 + seed % 3, B = 2;
    RandomGraph<double> rg = random_graph<double>(seed + 900, T);
    SCOPED_TRACE(::testing::Message() << "graph seed " << seed + 900 << ":" << rg.recipe);
    std::vector<Tensor3<double>> xs;
    std::vector<Mask> masks;
    for (Index i = 0; i < rg.graph->min_inputs(); ++i) {
      const Index Ti = i == 0 ? T : T + 1;
      xs.push_back(random_tensor(B, Ti, rg.graph->input_features(i, rg.graph->min_inputs()), 40 + std::uint64_t(seed + i)));
      masks.push_back(Mask::from_lengths({Ti, Ti - 1}));
    }
    GradCheckOptions options;
    options.mode = Mode::Infer;
    options.max_coords = 40;
    const GradCheckResult result = check_inputs_gradients(*rg.graph, xs, masks, options);
    EXPECT_TRUE(result.ok && result.contract_failures.empty()) << result.report();
    checked += int(result.checked);
  }
  EXPECT_GT(checked, 1000 * property_count(kGradientGraphs) / kGradientGraphs);  // 40 per target and graph, 24: 6,132
  std::printf("finite differences: %d coordinates over %d random graphs\n", checked, property_count(kGradientGraphs));
}

}  // namespace
