// Property: in random models (tests/support/random_model.hpp) that honor step masks (model.supports_step_masks()),
// kept outputs do not depend on the values at masked steps. For each seeded model, in Mode::Infer, a batch with a
// random step mask (holes, left padding, a single kept step, no kept step, full rows: random_step_mask) gives
// bitwise the same kept output steps (by the model's output mask) when every value at a masked input step is
// replaced by garbage: finite values up to 1e3, then NaN and Inf. Models with a layer that refuses step masks are
// skipped (they throw ConfigError, checked here); at least kMinChecked models must be checked, so the test cannot
// pass vacuously as layers are converted or the random stacks change.
#include <gtest/gtest.h>

#include <limits>

#include "support/property_stride.hpp"
#include "support/random_model.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 400;

TEST(PropertyStepMasks, KeptOutputsOfRandomModelsIgnoreMaskedValuesBitwise) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  int checked = 0, with_holes_out = 0;
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 5;
    // short stacks half of the time: more of them consist of converted layers only
    RandomModelOptions options = RandomModelOptions().steps(T);
    if (seed % 2 == 0) options.max_layers(2);
    RandomModel<float> m = random_model<float>(seed, options);
    SCOPED_TRACE(::testing::Message() << "model seed " << seed << ":" << m.recipe);
    const Mask mask = random_step_mask(B, T, 1000 + seed);
    ASSERT_TRUE(mask.has_holes());
    const Tensor3<float> x = random_input(m, B, T, 2000 + seed);
    if (!m.model.supports_step_masks()) {
      EXPECT_THROW(m.model.predict(x, mask), ConfigError);
      continue;
    }
    const Tensor3<float> y = m.model.predict(x, mask);
    const Mask my = m.model.output_mask();
    with_holes_out += my.has_holes();

    Rng rng(3000 + seed);
    const Tensor3<float> finite =
        with_masked_values(x, mask, [&](Index) { return static_cast<float>(rng.uniform(-1e3, 1e3)); });
    const Tensor3<float> y2 = m.model.predict(finite, mask);
    EXPECT_TRUE(same_kept_steps(y, my, y2, m.model.output_mask())) << "finite garbage";
    const Tensor3<float> nonfinite =
        with_masked_values(x, mask, [&](Index i) { return i % 3 == 0 ? nan : i % 3 == 1 ? inf : -inf; });
    const Tensor3<float> y3 = m.model.predict(nonfinite, mask);
    EXPECT_TRUE(same_kept_steps(y, my, y3, m.model.output_mask())) << "NaN and Inf";
    ++checked;
  }
  std::printf("checked %d of %d random models (%d with a step mask at the output)\n", checked, property_count(kModels),
              with_holes_out);
  // every layer of the random stacks takes step masks: 400 of 400 today
  EXPECT_GE(checked, property_count(kModels) * 9 / 10);
  EXPECT_GT(with_holes_out, 0);
}

}  // namespace
