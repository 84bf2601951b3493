// Autoregressive decoding with a transformer decoder (model/graph_stream.hpp): a decode step with the key/value
// cache (Stream over a Graph whose memory is its context: the self-attention keeps the past keys and values, the
// cross-attention projects the memory once) against what a user without streams must do: rerun the decoder over
// the whole prefix for every new step. Float, one thread.
// Model: targets (8 features) -> Dense 64 -> sinusoidal positions -> 2 TransformerDecoderBlocks (d 64, 4 heads,
// ff 256, pre-norm) over an encoded memory of 96 steps (64 features) -> Dense 8. One iteration decodes `steps` new
// steps of B sequences from the start (a rollout); items/s = decoded steps per second per sequence batch, so the
// time per step is 1 / items_per_second. Compare rows of one run:
//   BM_Decode_Cached/steps:S/B:b   against   BM_Decode_Rerun/steps:S/B:b
// The cached rollout costs O(S) per step (O(S^2) in all); the rerun O(S^2) per step (O(S^3) attention in all).
#include <memory>
#include <vector>

#include "bench_common.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/model/graph.hpp"

namespace {

using namespace seqattn_bench;
using seqattn::Graph;
using seqattn::GraphNode;
using seqattn::LayerInputs;
using seqattn::Stream;

constexpr Index kFeatures = 8, kModel = 64, kMemory = 96;

Graph<float> decoder() {
  using namespace seqattn;
  Graph<float> g({{"targets", kFeatures}, {"memory", kModel}});
  const TransformerDecoderOptions options = TransformerDecoderOptions().norm_first(true).seed(1);
  const GraphNode proj = g.add<Dense<float>>("proj", {g.input("targets")}, kModel);
  const GraphNode pos = g.add<SinusoidalPositionalEncoding<float>>("positions", {proj});
  const GraphNode d1 = g.add<TransformerDecoderBlock<float>>("decoder1", {pos, g.input("memory")}, 4, 256, options);
  const GraphNode d2 = g.add<TransformerDecoderBlock<float>>("decoder2", {d1, g.input("memory")}, 4, 256,
                                                             TransformerDecoderOptions(options).seed(2));
  const GraphNode head = g.add<Dense<float>>("head", {d2}, kFeatures);
  g.set_outputs({head});
  return g;
}

void set_steps(benchmark::State& state, Index steps) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * steps);
}

// A rollout of `steps` steps with the stream: one step per new target.
void BM_Decode_Cached(benchmark::State& state) {
  const Index steps = state.range(0), B = state.range(1);
  Graph<float> g = decoder();
  const Tensor3<float> memory = random_input(B, kMemory, kModel, 1);
  const Tensor3<float> targets = random_input(B, steps, kFeatures, 2);
  Stream<float> stream = g.stream(B);
  Tensor3<float> x(B, 1, kFeatures);
  for (auto _ : state) {
    stream.reset();
    stream.set_context(memory);
    for (Index t = 0; t < steps; ++t) {
      for (Index b = 0; b < B; ++b)
        for (Index f = 0; f < kFeatures; ++f) x(b, 0, f) = targets(b, t, f);
      benchmark::DoNotOptimize(stream.step(x).data());
    }
  }
  set_steps(state, steps);
}
BENCHMARK(BM_Decode_Cached)
    ->ArgNames({"steps", "B"})
    ->Args({32, 1})
    ->Args({128, 1})
    ->Args({512, 1})
    ->Args({128, 16})
    ->Unit(benchmark::kMillisecond);

// The same rollout by rerunning the decoder over the prefix [0, t] for every step t.
void BM_Decode_Rerun(benchmark::State& state) {
  const Index steps = state.range(0), B = state.range(1);
  Graph<float> g = decoder();
  const Tensor3<float> memory = random_input(B, kMemory, kModel, 1);
  const Tensor3<float> targets = random_input(B, steps, kFeatures, 2);
  std::vector<Tensor3<float>> prefixes;
  for (Index t = 1; t <= steps; ++t) {
    Tensor3<float> p(B, t, kFeatures);
    for (Index b = 0; b < B; ++b)
      for (Index s = 0; s < t; ++s)
        for (Index f = 0; f < kFeatures; ++f) p(b, s, f) = targets(b, s, f);
    prefixes.push_back(std::move(p));
  }
  const Mask all;
  for (auto _ : state)
    for (Index t = 0; t < steps; ++t) {
      const LayerInputs<float> in = {{&prefixes[static_cast<std::size_t>(t)], &all}, {&memory, &all}};
      benchmark::DoNotOptimize(g.forward(in, Mode::Infer).data());
    }
  set_steps(state, steps);
}
BENCHMARK(BM_Decode_Rerun)
    ->ArgNames({"steps", "B"})
    ->Args({32, 1})
    ->Args({128, 1})
    ->Args({512, 1})
    ->Args({128, 16})
    ->Unit(benchmark::kMillisecond);

}  // namespace
