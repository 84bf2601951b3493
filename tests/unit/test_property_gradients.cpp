// Properties of a training step over random models (tests/support/random_model.hpp), kModels seeded models:
//   - a Mode::Train forward, a masked MSE loss and backward give finite outputs, input gradients and parameter
//     gradients, and (in at least 90% of the models) a non-zero parameter gradient;
//   - the input gradient is exactly 0 at padded steps (the loss gives them dy = 0);
//   - two copies of the model on batches that differ only in their padded values (finite garbage up to 1e3)
//     give bitwise the same valid outputs, input gradients and parameter gradients: padding never reaches the
//     parameters. (Dropout draws the same masks in both copies: same shapes, same seeds.)
#include <gtest/gtest.h>

#include <cstring>

#include "seqattn/loss/mean_squared_error.hpp"
#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 150;

struct Step {
  Tensor3<float> y, dx;
  Mask out_mask;
  std::vector<std::vector<float>> grads;
  std::vector<std::string> names;
};

Step train_step(Sequential<float> model, const Tensor3<float>& x, const Mask& mask, std::uint64_t seed) {
  Step s;
  model.zero_grad();
  s.y = model.forward(x, mask, Mode::Train);
  s.out_mask = model.output_mask();
  Tensor3<float> target(s.y.dimension(0), s.y.dimension(1), s.y.dimension(2));
  Rng rng(seed);
  for (Index i = 0; i < target.size(); ++i) target.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  MeanSquaredError<float> loss;
  loss.forward(s.y, target, s.out_mask);
  s.dx = model.backward(loss.grad());
  for (const auto& p : model.params()) {
    s.names.push_back(p.name);
    s.grads.emplace_back(p.grad, p.grad + p.size());
  }
  return s;
}

TEST(PropertyGradients, TrainingStepsOfRandomModelsAreFiniteAndIgnorePadding) {
  int with_gradient = 0;
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 4;
    RandomModel<float> m = random_model<float>(seed + 10000, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << seed + 10000 << ":" << m.recipe);
    const std::vector<Index> lengths = random_lengths(B, T, 7000 + seed);
    const Mask mask = Mask::from_lengths(lengths);
    const Tensor3<float> x = random_input(m, B, T, 8000 + seed);
    Rng rng(9000 + seed);
    const Tensor3<float> x2 = with_padding(x, lengths, T, [&](Index) { return static_cast<float>(rng.uniform(-1e3, 1e3)); });

    Step a, b;
    try {
      a = train_step(m.model, x, mask, seed);
      b = train_step(m.model, x2, mask, seed);
    } catch (const Error& e) {
      FAIL() << e.what();
    }
    ASSERT_EQ(first_non_finite(a.y), "");
    ASSERT_EQ(first_non_finite(a.dx), "");
    EXPECT_EQ(padded_nonzero(a.dx, lengths), "");
    EXPECT_EQ(padded_nonzero(b.dx, lengths), "");
    EXPECT_TRUE(same_valid_steps(a.y, a.out_mask, b.y, b.out_mask));
    EXPECT_TRUE(same_valid_steps(a.dx, mask, b.dx, mask)) << "input gradient";
    bool any = false;
    ASSERT_EQ(a.names, b.names);
    for (size_t k = 0; k < a.grads.size(); ++k) {
      EXPECT_EQ(first_non_finite(a.grads[k].data(), static_cast<Index>(a.grads[k].size())), "") << a.names[k];
      EXPECT_EQ(std::memcmp(a.grads[k].data(), b.grads[k].data(), a.grads[k].size() * sizeof(float)), 0)
          << "the gradient of " << a.names[k] << " depends on padded values";
      for (float g : a.grads[k]) any = any || g != 0.0f;
    }
    if (any || a.grads.empty()) ++with_gradient;
  }
  // A few models legitimately get only zero gradients (attention over a single step after pooling, a softmax
  // over one key); most do not, so a backward that stopped writing gradients fails here.
  EXPECT_GE(with_gradient, property_count(kModels) * 9 / 10) << "too many models with parameters got only zero gradients";
}

}  // namespace
