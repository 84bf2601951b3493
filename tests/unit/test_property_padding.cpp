// Property: in random models (tests/support/random_model.hpp: random stacks of every layer type with random
// options, nested Sequentials and Residual blocks), valid outputs do not depend on padding. For each of
// kModels seeded models, in Mode::Infer, a masked batch (lengths including 0 and 1) gives bitwise the same
// valid output steps (by the model's output mask) when the padding grows by 1 to 4 steps and every padded
// value is replaced by garbage (finite values up to 1e3, then NaN and Inf at padded steps of the input).
#include <gtest/gtest.h>

#include <limits>

#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 150;

TEST(PropertyPadding, ValidOutputsOfRandomModelsIgnorePaddingBitwise) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 4;
    RandomModel<float> m = random_model<float>(seed, RandomModelOptions().steps(T));
    SCOPED_TRACE(::testing::Message() << "model seed " << seed << ":" << m.recipe);
    const std::vector<Index> lengths = random_lengths(B, T, 1000 + seed, 1);
    const Mask mask = Mask::from_lengths(lengths);
    const Tensor3<float> x = random_input(m, B, T, 2000 + seed);
    const Tensor3<float> y = m.model.predict(x, mask);
    const Mask my = m.model.output_mask();
    ASSERT_EQ(first_non_finite(y), "");

    Rng rng(3000 + seed);
    const Index T2 = T + 1 + static_cast<Index>(rng.below(4));
    const Tensor3<float> x2 = with_padding(x, lengths, T2, [&](Index) { return static_cast<float>(rng.uniform(-1e3, 1e3)); });
    const Tensor3<float> y2 = m.model.predict(x2, mask);
    EXPECT_TRUE(same_valid_steps(y, my, y2, m.model.output_mask())) << "T " << T << " -> " << T2;
  }
}

// Padded values are never read as numbers that reach a valid output, even NaN and Inf (same T).
TEST(PropertyPadding, NonFinitePaddedValuesNeverReachValidOutputs) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  int checked = 0;
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 4;
    RandomModel<float> m = random_model<float>(seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << seed << ":" << m.recipe);
    const std::vector<Index> lengths = random_lengths(B, T, 1000 + seed, 1);
    const Mask mask = Mask::from_lengths(lengths);
    const Tensor3<float> x = random_input(m, B, T, 2000 + seed);
    const Tensor3<float> y = m.model.predict(x, mask);
    const Mask my = m.model.output_mask();
    const Tensor3<float> x2 = with_padding(x, lengths, T, [&](Index i) { return i % 3 == 0 ? inf : i % 3 == 1 ? nan : -inf; });
    const Tensor3<float> y2 = m.model.predict(x2, mask);
    EXPECT_TRUE(same_valid_steps(y, my, y2, m.model.output_mask()));
    ++checked;
  }
  EXPECT_EQ(checked, property_count(kModels));
}

}  // namespace
