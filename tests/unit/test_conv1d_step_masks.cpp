// Conv1D with step masks (holes, left padding; core/mask.hpp), in double, every padding, stride and dilation:
// the output mask (hand cases; the aligned-step rule reduces to the lengths mapping), finite-difference
// gradients, kept outputs bitwise independent of the values at masked steps (garbage, NaN, Inf) with dx exactly 0
// there, the naive reference (masked steps set to 0, the extents as lengths: same kept outputs, masked outputs
// 0), and the error for a step mask of another T.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "seqattn/detail/conv1d_reference.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

struct Geometry {
  Padding padding;
  Index stride, dilation;
};

std::vector<Geometry> geometries() {
  std::vector<Geometry> all;
  for (Padding padding : {Padding::Valid, Padding::Same, Padding::Causal})
    for (Index stride : {1, 2, 3})
      for (Index dilation : {1, 2}) all.push_back({padding, stride, dilation});
  return all;
}

Conv1D<double> make(const Geometry& g, Index kernel_size = 3, Activation act = Activation::Tanh) {
  Conv1D<double> conv(3, 4, kernel_size,
                      Conv1DOptions()
                          .padding(g.padding)
                          .stride(g.stride)
                          .dilation(g.dilation)
                          .activation(act)
                          .bias_init(Init::uniform(-.5, .5))
                          .seed(3));
  return conv;
}

TEST(Conv1DStepMasks, OutputMaskKeepsTheStepsWhoseAlignedInputIsKept) {
  const Mask m = Mask::from_steps({{0, 1, 1, 0, 1, 1, 0}, {1, 1, 1, 1, 1, 1, 1}});
  ASSERT_TRUE(m.has_holes());
  // same / causal, stride 1: the input mask
  for (Padding p : {Padding::Same, Padding::Causal}) {
    Conv1D<float> conv(2, 3, 3, Conv1DOptions().padding(p));
    EXPECT_TRUE(conv.supports_step_masks());
    EXPECT_EQ(conv.out_mask(m, 7), m);
  }
  // causal, stride 2: outputs aligned with inputs 0, 2, 4, 6
  Conv1D<float> causal2(2, 3, 3, Conv1DOptions().padding(Padding::Causal).stride(2));
  EXPECT_EQ(causal2.out_mask(m, 7), Mask::from_steps({{0, 1, 1, 0}, {1, 1, 1, 1}}));
  // same, stride 3: inputs 0, 3, 6 -> nothing kept in row 0
  Conv1D<float> same3(2, 3, 3, Conv1DOptions().padding(Padding::Same).stride(3));
  EXPECT_EQ(same3.out_mask(m, 7), Mask::from_lengths({0, 3}));
  // valid, kernel 3: output t aligned with the window's last step t + 2
  Conv1D<float> valid(2, 3, 3);
  EXPECT_EQ(valid.out_mask(m, 7), Mask::from_steps({{1, 0, 1, 1, 0}, {1, 1, 1, 1, 1}}));
  // valid, kernel 2, dilation 2, stride 2 (receptive field 3): outputs aligned with inputs 2, 4, 6
  Conv1D<float> valid_s2(2, 3, 2, Conv1DOptions().dilation(2).stride(2));
  EXPECT_EQ(valid_s2.out_mask(m, 7), Mask::from_steps({{1, 1, 0}, {1, 1, 1}}));
}

// The rule "output t is kept when its aligned input step is kept" gives each sample's output length for a length
// mask, so step masks and lengths agree wherever both apply.
TEST(Conv1DStepMasks, AlignedStepRuleReducesToTheLengthsMapping) {
  for (const Geometry& g : geometries())
    for (Index k : {1, 2, 3}) {
      Conv1D<float> conv(2, 3, k, Conv1DOptions().padding(g.padding).stride(g.stride).dilation(g.dilation));
      const WindowGeometry& w = conv.geometry();
      const Index T = 11;
      for (Index L = 0; L <= T; ++L)
        for (Index t = 0; t < w.out_length(T); ++t)
          EXPECT_EQ(w.aligned_step(t) < L, t < w.out_length(L)) << conv.describe() << " L=" << L << " t=" << t;
      // a step mask with one row of holes: the other rows (prefixes) map as their lengths do
      const Mask m = Mask::from_steps({{1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                                       {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
                                       {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                                       {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}});
      if (w.out_length(T) == 0) continue;
      const Mask out = conv.out_mask(m, T);
      for (Index b = 1; b < 4; ++b)
        for (Index t = 0; t < w.out_length(T); ++t)
          EXPECT_EQ(out.valid(b, t, w.out_length(T)), t < w.out_length(m.length(b, T))) << conv.describe();
    }
}

TEST(Conv1DStepMasks, GradientsMatchFiniteDifferences) {
  for (const Geometry& g : geometries()) {
    Conv1D<double> conv = make(g);
    SCOPED_TRACE(conv.describe());
    const Mask mask = random_step_mask(5, 9, 11);
    ASSERT_TRUE(mask.has_holes());
    const auto r = check_layer_gradients(conv, random_tensor(5, 9, 3, 12), mask);
    EXPECT_TRUE(r.passed()) << r.report();
  }
}

TEST(Conv1DStepMasks, KeptOutputsIgnoreMaskedValues) {
  for (const Geometry& g : geometries())
    for (Activation act : {Activation::Linear, Activation::Tanh}) {
      Conv1D<double> conv = make(g, 3, act);
      SCOPED_TRACE(conv.describe());
      seqattn::testing::expect_masked_values_ignored(conv, random_tensor(6, 10, 3, 21), random_step_mask(6, 10, 21),
                                                     22);
    }
}

// Naive reference: every masked input step set to 0, each sample convolved with its extent as its length
// (detail::conv1d_forward_reference, the lengths loops); the layer gives the same outputs at kept output steps and
// 0 at masked ones. The step-mask reference loops agree too.
TEST(Conv1DStepMasks, MatchesTheZeroFilledReference) {
  for (const Geometry& g : geometries())
    for (Index k : {1, 3, 4}) {
      Conv1D<double> conv = make(g, k);
      SCOPED_TRACE(conv.describe());
      const Index B = 6, T = 13;
      const Mask mask = random_step_mask(B, T, 31 + std::uint64_t(k));
      const Tensor3<double> x = random_tensor(B, T, 3, 32);
      const Tensor3<double> ym = conv.forward(
          seqattn::testing::with_masked_values(x, mask, [](Index) { return std::numeric_limits<double>::quiet_NaN(); }),
          mask);
      const Tensor3<double> zero_filled = seqattn::testing::with_masked_values(x, mask, [](Index) { return 0.0; });
      std::vector<Index> extents;
      for (Index b = 0; b < B; ++b) extents.push_back(mask.length(b, T));
      const Tensor3<double> ref = detail::conv1d_forward_reference(zero_filled, extents, conv.kernel(), conv.bias(),
                                                                   conv.geometry(), Activation::Tanh);
      const Tensor3<double> ref_mask = detail::conv1d_step_mask_forward_reference(x, mask, conv.kernel(), conv.bias(),
                                                                                  conv.geometry(), Activation::Tanh);
      const Index T_out = ym.dimension(1);
      const Mask out = conv.out_mask(mask, T);
      Index kept = 0;
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < T_out; ++t)
          for (Index f = 0; f < 4; ++f) {
            if (out.valid(b, t, T_out)) {
              ++kept;
              ASSERT_NEAR(ym(b, t, f), ref(b, t, f), 1e-12) << b << "," << t;
            } else {
              ASSERT_EQ(ym(b, t, f), 0.0) << "masked output " << b << "," << t;
            }
            ASSERT_NEAR(ym(b, t, f), ref_mask(b, t, f), 1e-12) << b << "," << t;
          }
      EXPECT_GT(kept, 0);
    }
}

// In a model: a strided Conv1D hands its mapped step mask to a GRU (gradients, masked values ignored).
TEST(Conv1DStepMasks, StridedConvThenGRUInASequential) {
  for (Padding padding : {Padding::Valid, Padding::Causal}) {
    Sequential<double> model(3);
    model.add(std::make_unique<Conv1D<double>>(3, 4, 2, Conv1DOptions().padding(padding).stride(2).seed(1)));
    model.add(std::make_unique<GRU<double>>(4, 3, GRUOptions().return_sequences(true).seed(2)));
    SCOPED_TRACE(to_string(padding));
    EXPECT_TRUE(model.supports_step_masks());
    const Mask mask = random_step_mask(5, 11, 41);
    const auto r = check_layer_gradients(model, random_tensor(5, 11, 3, 42), mask);
    EXPECT_TRUE(r.passed()) << r.report();
    ASSERT_TRUE(model.out_mask(mask, 11).has_holes());
    seqattn::testing::expect_masked_values_ignored(model, random_tensor(5, 11, 3, 43), mask, 44);
  }
}

TEST(Conv1DStepMasks, StepMaskOfAnotherLengthIsRefused) {
  for (const Geometry& g : geometries()) {
    Conv1D<double> conv = make(g);
    seqattn::testing::expect_step_mask_of_other_T_refused(conv, random_tensor(3, 7, 3, 2));
  }
}

}  // namespace
