// Property: causal and history-only models never read the future. kModels random models built only from
// layers whose output at step t may depend on input steps <= t (RandomModelOptions().causal(true): causal
// Conv1D, history_only SeqSelfAttention with and without a width, causal MultiHeadAttention and
// TransformerEncoderBlock, per-step layers, Residual and nested Sequentials of them), in Mode::Infer: changing
// every input value after a step t0 leaves every output at steps <= t0 bitwise unchanged, with and without a
// padding mask. A control changes one value at t0 itself and must change the output at t0 (the check can fail).
#include <gtest/gtest.h>

#include <cstring>

#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 120;

// Outputs at steps <= t0 of every sequence are bitwise equal.
::testing::AssertionResult same_prefix(const Tensor3<float>& a, const Tensor3<float>& b, Index t0) {
  for (Index s = 0; s < a.dimension(0); ++s)
    for (Index t = 0; t <= t0; ++t)
      for (Index f = 0; f < a.dimension(2); ++f)
        if (std::memcmp(&a(s, t, f), &b(s, t, f), sizeof(float)) != 0)
          return ::testing::AssertionFailure() << "output (" << s << ", " << t << ", " << f << ") changed: " << a(s, t, f)
                                               << " -> " << b(s, t, f) << " after changing steps > " << t0;
  return ::testing::AssertionSuccess();
}

TEST(PropertyCausal, RandomCausalModelsNeverReadTheFuture) {
  int influenced = 0;
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 4 + seed % 5, B = 3;
    RandomModel<float> m = random_model<float>(seed, RandomModelOptions().steps(T).causal(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << seed << ":" << m.recipe);
    ASSERT_EQ(m.model.out_time(T), T);
    const Tensor3<float> x = random_input(m, B, T, 5000 + seed);
    Rng rng(6000 + seed);
    const Index t0 = static_cast<Index>(rng.below(static_cast<std::uint64_t>(T - 1)));
    Tensor3<float> x2 = x;
    for (Index b = 0; b < B; ++b)
      for (Index t = t0 + 1; t < T; ++t)
        for (Index f = 0; f < x.dimension(2); ++f)
          x2(b, t, f) = m.vocab > 0 ? static_cast<float>(1 + rng.below(static_cast<std::uint64_t>(m.vocab - 1)))
                                    : static_cast<float>(rng.uniform(-3.0, 3.0));
    for (const Mask& mask : {Mask(), Mask::from_lengths({T, T - 1, 1 + t0})}) {
      const Tensor3<float> y = m.model.predict(x, mask);
      const Tensor3<float> y2 = m.model.predict(x2, mask);
      EXPECT_TRUE(same_prefix(y, y2, t0)) << (mask.empty() ? "no mask" : "masked");
    }
    // Control: a change at step t0 itself reaches the output at t0 (unless the model ignores its input there).
    Tensor3<float> x3 = x;
    for (Index f = 0; f < x.dimension(2); ++f) x3(0, t0, f) = m.vocab > 0 ? (x(0, t0, f) == 1 ? 2.0f : 1.0f) : x(0, t0, f) + 0.5f;
    const Tensor3<float> y = m.model.predict(x, Mask());
    if (!same_prefix(y, m.model.predict(x3, Mask()), t0)) ++influenced;
  }
  // Most models do pass information through step t0 (a few, e.g. a ReLU that zeroes everything, may not).
  EXPECT_GT(influenced, property_count(kModels) / 2);
}

}  // namespace
