// LSTM and GRU with step masks (holes, left padding; core/mask.hpp), in double, for every option (return_sequences
// both ways, activations, without bias, a batch of one): finite-difference gradients, kept outputs bitwise
// independent of the values at masked steps (garbage, NaN, Inf), the compaction equivalence (the kept steps run
// as a length mask give the same kept outputs, final state and gradients; masked outputs are 0, the state is
// carried across masked steps), and the error for a step mask of another T.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

struct Case {
  std::string name;
  std::function<std::unique_ptr<Layer<double>>(Index F, Index U, bool seq)> make;
};

// Every layer and option, non-zero biases so every gate is away from its zero-input point.
std::vector<Case> cases() {
  const Init bias = Init::uniform(-0.5, 0.5);
  return {
      {"LSTM",
       [bias](Index F, Index U, bool seq) {
         return std::make_unique<LSTM<double>>(F, U, LSTMOptions().return_sequences(seq).bias_init(bias).seed(3));
       }},
      {"LSTM linear/sigmoid, no bias",
       [](Index F, Index U, bool seq) {
         return std::make_unique<LSTM<double>>(
             F, U, LSTMOptions().return_sequences(seq).activation(Activation::Linear).use_bias(false).seed(4));
       }},
      {"LSTM tanh/relu",
       [](Index F, Index U, bool seq) {  // positive biases: most relu gates open
         return std::make_unique<LSTM<double>>(F, U,
                                               LSTMOptions()
                                                   .return_sequences(seq)
                                                   .recurrent_activation(Activation::ReLU)
                                                   .bias_init(Init::uniform(0.2, 0.8))
                                                   .seed(5));
       }},
      {"GRU",
       [bias](Index F, Index U, bool seq) {
         return std::make_unique<GRU<double>>(F, U, GRUOptions().return_sequences(seq).bias_init(bias).seed(6));
       }},
      {"GRU sigmoid/tanh, no bias",
       [](Index F, Index U, bool seq) {
         return std::make_unique<GRU<double>>(F, U,
                                              GRUOptions()
                                                  .return_sequences(seq)
                                                  .activation(Activation::Sigmoid)
                                                  .recurrent_activation(Activation::Tanh)
                                                  .use_bias(false)
                                                  .seed(7));
       }},
      {"GRU reset_after=false",
       [bias](Index F, Index U, bool seq) {
         return std::make_unique<GRU<double>>(
             F, U, GRUOptions().return_sequences(seq).reset_after(false).bias_init(bias).seed(8));
       }},
      {"GRU reset_after=false, tanh/relu, no bias",
       [](Index F, Index U, bool seq) {
         return std::make_unique<GRU<double>>(F, U,
                                              GRUOptions()
                                                  .return_sequences(seq)
                                                  .reset_after(false)
                                                  .recurrent_activation(Activation::ReLU)
                                                  .use_bias(false)
                                                  .seed(9));
       }},
      {"Bidirectional GRU reset_after=false",
       [bias](Index F, Index U, bool seq) {
         return std::make_unique<Bidirectional<double>>(
             F, U, GRUOptions().return_sequences(seq).reset_after(false).bias_init(bias).seed(10));
       }},
  };
}

template <class F>
void for_every_case(F&& f) {
  for (bool seq : {true, false})
    for (const Case& c : cases()) {
      SCOPED_TRACE(c.name + (seq ? ", return_sequences" : ", last state"));
      f(c, seq);
    }
}

TEST(RecurrentStepMasks, SupportsStepMasks) {
  EXPECT_TRUE(LSTM<float>(2, 3).supports_step_masks());
  EXPECT_TRUE(GRU<float>(2, 3).supports_step_masks());
}

TEST(RecurrentStepMasks, GradientsMatchFiniteDifferences) {
  for_every_case([](const Case& c, bool seq) {
    for (std::uint64_t seed : {11u, 12u}) {
      const Mask mask = random_step_mask(5, 7, seed);
      ASSERT_TRUE(mask.has_holes());
      auto layer = c.make(3, 4, seq);
      const auto r = check_layer_gradients(*layer, random_tensor(5, 7, 3, seed), mask);
      EXPECT_TRUE(r.passed()) << r.report();
    }
    // a batch of one (the GEMV path): left padding, holes, right padding
    auto one = c.make(2, 3, seq);
    const auto r = check_layer_gradients(*one, random_tensor(1, 7, 2, 13), Mask::from_steps({{0, 1, 1, 0, 0, 1, 0}}));
    EXPECT_TRUE(r.passed()) << r.report();
  });
}

TEST(RecurrentStepMasks, KeptOutputsIgnoreMaskedValues) {
  for_every_case([](const Case& c, bool seq) {
    auto layer = c.make(3, 4, seq);
    seqattn::testing::expect_masked_values_ignored(*layer, random_tensor(6, 8, 3, 21), random_step_mask(6, 8, 21), 22);
    auto one = c.make(3, 4, seq);
    seqattn::testing::expect_masked_values_ignored(*one, random_tensor(1, 6, 3, 23),
                                                   Mask::from_steps({{0, 0, 1, 0, 1, 0}}), 24);
  });
}

TEST(RecurrentStepMasks, SameAsTheCompactedSequence) {
  for_every_case([](const Case& c, bool seq) {
    for (std::uint64_t seed : {31u, 32u, 33u}) {
      SCOPED_TRACE("seed " + std::to_string(seed));
      auto layer = c.make(3, 5, seq);
      seqattn::testing::expect_compaction_equivalent(*layer, random_tensor(6, 9, 3, seed), random_step_mask(6, 9, seed),
                                                     seed + 100);
    }
    SCOPED_TRACE("batch of one");
    auto one = c.make(2, 3, seq);
    seqattn::testing::expect_compaction_equivalent(*one, random_tensor(1, 6, 2, 36),
                                                   Mask::from_steps({{0, 1, 0, 0, 1, 1}}), 35);
  });
}

// A hand case: the state after step 0 is carried across the masked steps 1 and 2 (whatever they hold), so step 3
// sees the same state as step 1 of the sequence without them.
TEST(RecurrentStepMasks, StateCarriedAcrossMaskedSteps) {
  for (bool lstm : {true, false}) {
    SCOPED_TRACE(lstm ? "LSTM" : "GRU");
    std::unique_ptr<Layer<double>> layer;
    if (lstm)
      layer = std::make_unique<LSTM<double>>(2, 3, LSTMOptions().return_sequences(true).seed(1));
    else
      layer = std::make_unique<GRU<double>>(2, 3, GRUOptions().return_sequences(true).seed(1));
    Tensor3<double> x = random_tensor(1, 4, 2, 41);
    const Tensor3<double> y = layer->forward(x, Mask::from_steps({{1, 0, 0, 1}}));
    Tensor3<double> x2(1, 2, 2);
    for (Index f = 0; f < 2; ++f) {
      x2(0, 0, f) = x(0, 0, f);
      x2(0, 1, f) = x(0, 3, f);
    }
    const Tensor3<double> y2 = layer->forward(x2);
    for (Index u = 0; u < 3; ++u) {
      EXPECT_EQ(y(0, 0, u), y2(0, 0, u));
      EXPECT_EQ(y(0, 1, u), 0.0);
      EXPECT_EQ(y(0, 2, u), 0.0);
      EXPECT_EQ(y(0, 3, u), y2(0, 1, u));
      EXPECT_NE(y(0, 3, u), 0.0);
    }
  }
}

// The step-mask paths keep the no-allocation promise of a steady loop (Eigen's malloc check).
TEST(RecurrentStepMasks, SteadyLoopAllocatesNothing) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(std::make_unique<LSTM<double>>(4, 8, LSTMOptions().return_sequences(true)));
  layers.push_back(std::make_unique<GRU<double>>(4, 8, GRUOptions().return_sequences(true)));
  layers.push_back(std::make_unique<GRU<double>>(4, 8, GRUOptions().return_sequences(true).reset_after(false)));
  layers.push_back(std::make_unique<Bidirectional<double>>(4, 8, LSTMOptions().return_sequences(true)));
  layers.push_back(std::make_unique<LSTM<double>>(4, 40));  // products through Eigen's GEMM kernel
  for (Index B : {1, 4}) {
    const Tensor3<double> x = random_tensor(B, 6, 4, 1);
    const Mask mask = B == 1 ? Mask::from_steps({{0, 1, 0, 1, 1, 0}}) : random_step_mask(B, 6, 2);
    ASSERT_TRUE(mask.has_holes());
    for (auto& layer : layers) {
      const Tensor3<double> dy = random_tensor(B, layer->out_time(6), layer->out_features(), 2);
      layer->forward(x, mask, Mode::Train);
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(false);
      layer->forward(x, mask, Mode::Train);
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(true);
    }
  }
  SUCCEED();
}

TEST(RecurrentStepMasks, StepMaskOfAnotherLengthIsRefused) {
  for_every_case([](const Case& c, bool seq) {
    auto layer = c.make(3, 4, seq);
    seqattn::testing::expect_step_mask_of_other_T_refused(*layer, random_tensor(3, 5, 3, 51));
  });
}

}  // namespace
