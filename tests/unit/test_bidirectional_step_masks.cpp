// Bidirectional with step masks (holes, left padding; core/mask.hpp), in double, LSTM and GRU, every merge mode,
// return_sequences both ways: finite-difference gradients, kept outputs bitwise independent of the values at
// masked steps, the compaction equivalence (the kept steps run as a length mask give the same kept outputs, final
// states and gradients: the backward direction runs over the kept steps from last to first), a hand-reversed
// check, the refusal when an inner layer does not honor step masks, and the error for a step mask of another T.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

std::unique_ptr<Bidirectional<double>> make(bool lstm, bool seq, MergeMode merge, Index F, Index U) {
  const BidirectionalOptions o = BidirectionalOptions().merge_mode(merge);
  if (lstm)
    return std::make_unique<Bidirectional<double>>(
        F, U, LSTMOptions().return_sequences(seq).bias_init(Init::uniform(-.5, .5)).seed(1), o);
  return std::make_unique<Bidirectional<double>>(
      F, U, GRUOptions().return_sequences(seq).bias_init(Init::uniform(-.5, .5)).seed(2), o);
}

template <class F>
void for_every_case(F&& f) {
  for (bool lstm : {true, false})
    for (bool seq : {true, false})
      for (MergeMode merge : {MergeMode::Concat, MergeMode::Sum, MergeMode::Ave, MergeMode::Mul}) {
        SCOPED_TRACE(std::string(lstm ? "LSTM" : "GRU") + (seq ? ", return_sequences, " : ", last state, ") +
                     to_string(merge));
        f(lstm, seq, merge);
      }
}

TEST(BidirectionalStepMasks, GradientsMatchFiniteDifferences) {
  for_every_case([](bool lstm, bool seq, MergeMode merge) {
    const Mask mask = random_step_mask(4, 6, 3);
    ASSERT_TRUE(mask.has_holes());
    auto bi = make(lstm, seq, merge, 3, 3);
    EXPECT_TRUE(bi->supports_step_masks());
    const auto r = check_layer_gradients(*bi, random_tensor(4, 6, 3, 4), mask);
    EXPECT_TRUE(r.passed()) << r.report();
  });
}

TEST(BidirectionalStepMasks, KeptOutputsIgnoreMaskedValues) {
  for_every_case([](bool lstm, bool seq, MergeMode merge) {
    auto bi = make(lstm, seq, merge, 3, 3);
    seqattn::testing::expect_masked_values_ignored(*bi, random_tensor(6, 7, 3, 5), random_step_mask(6, 7, 5), 6);
  });
}

TEST(BidirectionalStepMasks, SameAsTheCompactedSequence) {
  for_every_case([](bool lstm, bool seq, MergeMode merge) {
    for (std::uint64_t seed : {7u, 8u}) {
      auto bi = make(lstm, seq, merge, 3, 4);
      seqattn::testing::expect_compaction_equivalent(*bi, random_tensor(6, 8, 3, seed), random_step_mask(6, 8, seed),
                                                     seed + 50);
    }
  });
}

// The backward direction, run alone on the kept steps in reverse order, gives the second half of concat's output
// at the kept steps (reversed back), or its final state.
TEST(BidirectionalStepMasks, BackwardDirectionReadsTheKeptStepsFromLastToFirst) {
  for (bool seq : {true, false}) {
    Bidirectional<double> bi(2, 3, GRUOptions().return_sequences(seq).seed(9));
    const Mask mask = Mask::from_steps({{0, 1, 1, 0, 1, 0}, {1, 0, 0, 1, 1, 1}});
    const Tensor3<double> x = random_tensor(2, 6, 2, 10);
    const Tensor3<double> y = bi.forward(x, mask);
    for (Index b = 0; b < 2; ++b) {
      const std::vector<Index> kept = seqattn::testing::kept_steps(mask, b, 6);
      const Index n = Index(kept.size());
      Tensor3<double> xr(1, n, 2);
      for (Index k = 0; k < n; ++k)
        for (Index f = 0; f < 2; ++f) xr(0, k, f) = x(b, kept[size_t(n - 1 - k)], f);
      const Tensor3<double> yr = bi.backward_layer().forward(xr);
      for (Index u = 0; u < 3; ++u) {
        if (seq) {
          for (Index k = 0; k < n; ++k) EXPECT_EQ(y(b, kept[size_t(k)], 3 + u), yr(0, n - 1 - k, u)) << b << "," << k;
        } else {
          EXPECT_EQ(y(b, 0, 3 + u), yr(0, 0, u)) << b;
        }
      }
    }
  }
}

// A layer that handles only length masks (the default of Layer): Bidirectional refuses step masks through it.
class LengthsOnly final : public Layer<double> {
 public:
  explicit LengthsOnly(Index F) : Layer<double>(F) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "lengths_only"; }
  std::string describe() const override { return "LengthsOnly()"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<LengthsOnly>(*this); }

 protected:
  void do_forward(const Tensor3<double>& x, const Mask&, Mode, Tensor3<double>& y) override { y = x; }
  void do_backward(const Tensor3<double>&, const Mask&, const Tensor3<double>& dy, Tensor3<double>& dx) override {
    dx = dy;
  }
};

TEST(BidirectionalStepMasks, RefusedWhenAnInnerLayerHandlesOnlyLengths) {
  Bidirectional<double> bi(2, std::make_unique<LSTM<double>>(2, 2, LSTMOptions().return_sequences(true)),
                           std::make_unique<LengthsOnly>(2));
  EXPECT_FALSE(bi.supports_step_masks());
  bi.forward(random_tensor(2, 4, 2, 1), Mask::from_lengths({4, 2}));  // lengths work
  try {
    bi.forward(random_tensor(2, 4, 2, 1), Mask::from_steps({{0, 1, 1, 1}, {1, 0, 1, 0}}));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("its backward layer (LengthsOnly()) refuses it"), std::string::npos)
        << e.what();
  }
}

TEST(BidirectionalStepMasks, StepMaskOfAnotherLengthIsRefused) {
  auto bi = make(true, true, MergeMode::Concat, 3, 2);
  seqattn::testing::expect_step_mask_of_other_T_refused(*bi, random_tensor(3, 5, 3, 2));
}

}  // namespace
