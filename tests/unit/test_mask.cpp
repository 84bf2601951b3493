// Mask (core/mask.hpp): the lengths and step forms, their builders, and the layer contract's refusal of step masks
// by layers that do not handle them (Layer::supports_step_masks).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
namespace {

TEST(Mask, StepPatternsThatArePrefixesBecomeLengths) {
  const Mask m = Mask::from_steps({{1, 1, 0, 0}, {1, 1, 1, 1}, {0, 0, 0, 0}});
  EXPECT_FALSE(m.has_holes());
  EXPECT_EQ(m, Mask({2, 4, 0}));
  EXPECT_EQ(m.steps(), 0);
  EXPECT_TRUE(m.fits(3, 7));  // lengths fit any longer batch
}

TEST(Mask, HolesAndLeftPaddingKeepTheStepForm) {
  const Mask m = Mask::from_steps({{1, 0, 1, 0}, {0, 0, 1, 1}, {0, 0, 0, 0}});
  ASSERT_TRUE(m.has_holes());
  EXPECT_EQ(m.steps(), 4);
  EXPECT_EQ(m.lengths(), (std::vector<Index>{3, 4, 0}));  // extents
  EXPECT_EQ(m.length(0, 4), 3);
  EXPECT_EQ(m.first(0, 4), 0);
  EXPECT_EQ(m.first(1, 4), 2);
  EXPECT_EQ(m.first(2, 4), 0);  // none kept: first == extent
  EXPECT_EQ(m.count(0, 4), 2);
  EXPECT_EQ(m.count(1, 4), 2);
  EXPECT_EQ(m.count(2, 4), 0);
  const int expected[3][4] = {{1, 0, 1, 0}, {0, 0, 1, 1}, {0, 0, 0, 0}};
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < 4; ++t) EXPECT_EQ(m.valid(b, t, 4), expected[b][t] != 0) << b << "," << t;
  EXPECT_TRUE(m.has_padding(4));
  EXPECT_TRUE(m.fits(3, 4));
  EXPECT_FALSE(m.fits(3, 5));  // a step mask is tied to its T
  EXPECT_FALSE(m.fits(2, 4));
}

TEST(Mask, ChecksNameTheCallerAndTheShapes) {
  const Mask m = Mask::from_steps({{1, 0, 1}});
  try {
    m.check(1, 5, "MyLayer");
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("MyLayer: step mask has 3 steps but the input has 5"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(m.check(2, 3, "MyLayer"), ShapeError);
  EXPECT_NO_THROW(m.check(1, 3, "MyLayer"));
  EXPECT_THROW(Mask::from_steps(2, 3, std::vector<std::uint8_t>(5, 1)), ShapeError);
  EXPECT_THROW(Mask::from_steps({{1, 0}, {1}}), ShapeError);
  EXPECT_THROW(Mask::from_steps(0, 3, {}), ShapeError);
}

TEST(Mask, FromValueFollowsKerasMasking) {
  Tensor3<float> x(2, 3, 2);
  x.setConstant(1.0f);
  x(0, 1, 0) = 0.0f;  // one feature of the step: kept
  x(0, 2, 0) = 0.0f;
  x(0, 2, 1) = 0.0f;  // every feature: masked (trailing: a length)
  x(1, 0, 0) = 0.0f;
  x(1, 0, 1) = 0.0f;  // leading: step form
  EXPECT_EQ(Mask::from_value(x, 0.0), Mask::from_steps({{1, 1, 0}, {0, 1, 1}}));
  Tensor3<float> y = x;
  y(1, 0, 0) = 1.0f;
  EXPECT_EQ(Mask::from_value(y, 0.0), Mask({2, 3}));
  EXPECT_THROW(Mask::from_value(x, std::nan("")), ConfigError);
}

TEST(Mask, FromMissingMasksStepsWithANaN) {
  Tensor3<double> x(1, 4, 3);
  x.setConstant(0.5);
  x(0, 1, 2) = std::numeric_limits<double>::quiet_NaN();
  const Mask m = Mask::from_missing(x);
  EXPECT_EQ(m, Mask::from_steps({{1, 0, 1, 1}}));
  x(0, 1, 2) = std::numeric_limits<double>::infinity();  // not missing
  EXPECT_TRUE(Mask::from_missing(x) == Mask({4}));
}

TEST(Mask, IntersectKeepsTheStepsBothKeep) {
  const Mask a({3, 2}), b = Mask::from_steps({{0, 1, 1, 1}, {1, 0, 1, 1}});
  EXPECT_EQ(Mask::intersect(a, b, 2, 4), Mask::from_steps({{0, 1, 1, 0}, {1, 0, 0, 0}}));
  EXPECT_EQ(Mask::intersect(a, Mask({4, 1}), 2, 4), Mask({3, 1}));
  EXPECT_EQ(Mask::intersect(Mask(), b, 2, 4), b);
  EXPECT_THROW(Mask::intersect(a, b, 2, 5), ShapeError);
}

// A layer that does not declare step-mask support: the contract refuses step masks before any work.
class LengthsOnly final : public Layer<double> {
 public:
  explicit LengthsOnly(Index f) : Layer<double>(f) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "lengths_only"; }
  std::string describe() const override { return "LengthsOnly()"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<LengthsOnly>(*this); }
  int forwards = 0;

 protected:
  void do_forward(const Tensor3<double>& x, const Mask&, Mode, Tensor3<double>& y) override {
    ++forwards;
    y = x;
  }
  void do_backward(const Tensor3<double>&, const Mask&, const Tensor3<double>& dy, Tensor3<double>& dx) override {
    dx = dy;
  }
};

class StepAware final : public Layer<double> {
 public:
  explicit StepAware(Index f) : Layer<double>(f) {}
  bool supports_step_masks() const override { return true; }
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "step_aware"; }
  std::string describe() const override { return "StepAware()"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<StepAware>(*this); }

 protected:
  void do_forward(const Tensor3<double>& x, const Mask&, Mode, Tensor3<double>& y) override { y = x; }
  void do_backward(const Tensor3<double>&, const Mask&, const Tensor3<double>& dy, Tensor3<double>& dx) override {
    dx = dy;
  }
};

TEST(Mask, LayersThatHandleOnlyLengthsRefuseStepMasks) {
  Tensor3<double> x(2, 3, 2);
  x.setRandom();
  const Mask holes = Mask::from_steps({{1, 0, 1}, {1, 1, 1}});
  LengthsOnly layer(2);
  try {
    layer.forward(x, holes);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LengthsOnly(): got a step mask"), std::string::npos) << e.what();
  }
  EXPECT_EQ(layer.forwards, 0);
  EXPECT_NO_THROW(layer.forward(x, Mask({1, 3})));
  EXPECT_THROW(layer.backward(x, holes, x), ConfigError);

  StepAware aware(2);
  EXPECT_NO_THROW(aware.forward(x, holes));
  EXPECT_NO_THROW(aware.backward(x, holes, x));

  // Containers answer for their children.
  Sequential<double> both(2);
  both.add(std::make_unique<StepAware>(2));
  EXPECT_TRUE(both.supports_step_masks());
  both.add(std::make_unique<LengthsOnly>(2));
  EXPECT_FALSE(both.supports_step_masks());
  try {
    both.forward(x, holes);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1 (LengthsOnly())"), std::string::npos) << e.what();
  }
}

TEST(Mask, RandomStepMasksHaveHolesAndEveryKind) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    const Index B = 6, T = 3 + static_cast<Index>(seed % 6);
    const Mask m = seqattn::testing::random_step_mask(B, T, seed);
    ASSERT_TRUE(m.has_holes()) << seed;
    EXPECT_GT(m.first(1, T), 0) << "sequence 1 is left-padded";
    for (Index b = 0; b < B; ++b) EXPECT_LE(m.count(b, T), m.length(b, T));
  }
  Tensor3<float> x(2, 3, 1);
  x.setConstant(1.0f);
  const Mask m = Mask::from_steps({{1, 0, 1}, {0, 1, 1}});
  const Tensor3<float> g = seqattn::testing::with_masked_values(x, m, [](Index) { return 7.0f; });
  EXPECT_EQ(g(0, 1, 0), 7.0f);
  EXPECT_EQ(g(1, 0, 0), 7.0f);
  EXPECT_EQ(g(0, 0, 0), 1.0f);
  EXPECT_TRUE(seqattn::testing::same_kept_steps(x, m, g, m));
  EXPECT_FALSE(seqattn::testing::same_kept_steps(x, Mask(), g, Mask()));
  EXPECT_NE(seqattn::testing::masked_nonzero(g, m), "");
}

}  // namespace
