// The exactness property of streams (model/stream.hpp) over seeded random causal models of every streamable
// layer and option (tests/support/random_model.hpp, causal + pooled_tail): B streams of different lengths,
// reset at different times, fed in chunks of 1..5 steps, give at every step the model's predict over the
// stream's sequence so far (tests/support/stream_checks.hpp): in double to 1e-12, in float to 2e-4.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "seqattn/seqattn.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"
#include "support/stream_checks.hpp"

namespace {

using namespace seqattn;
using seqattn::testing::RandomModelOptions;

template <class S>
void check_random_models(int models, double tol) {
  Index rows = 0;
  for (int seed = 0; seed < models; seed += seqattn::testing::property_stride()) {
    const auto options = RandomModelOptions().causal(true).pooled_tail(true).steps(10).max_layers(4);
    auto m = seqattn::testing::random_model<S>(static_cast<std::uint64_t>(seed), options);
    seqattn::testing::StreamCheck check;
    check.streams = 1 + seed % 3;
    check.steps = 30;
    check.max_sequence = 10;
    check.max_chunk = 1 + seed % 5;
    check.vocab = m.vocab;
    check.seed = static_cast<std::uint64_t>(seed);
    check.rows_checked = &rows;
    ASSERT_TRUE(seqattn::testing::stream_matches_predict(m.model, check, tol,
                                                         "\nmodel " + std::to_string(seed) + ":" + m.recipe));
  }
  std::printf("[ stream  ] %d random models, %ld output rows compared\n", seqattn::testing::property_count(models),
              static_cast<long>(rows));
}

TEST(StreamProperty, RandomCausalModelsMatchPredictInDouble) { check_random_models<double>(1000, 1e-12); }

TEST(StreamProperty, RandomCausalModelsMatchPredictInFloat) { check_random_models<float>(300, 2e-4); }

}  // namespace
