// Masking (layers/masking.hpp, Keras' Masking for right-padded batches): the lengths it derives from the data
// (trailing all-mask_value steps become padding, inside an input Mask too), the output (0 at padded steps),
// gradients in double against finite differences, the refusal of a masked step before a valid one, out_mask
// without a matching forward, config round trip and a Sequential passing its mask on.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/masking.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

// (B=4, T=5, F=3) random values, then: sample 1 ends with two all-`v` steps, sample 2 is all `v`, sample 3 has
// an all-`v` step 3 followed by garbage at step 4 (beyond its input Mask length 4), sample 0 has a step with
// SOME features equal to `v` (still valid).
Tensor3<double> padded_batch(double v) {
  Tensor3<double> x = random_tensor(4, 5, 3, 7);
  for (Index f = 0; f < 3; ++f) {
    x(1, 3, f) = x(1, 4, f) = v;
    for (Index t = 0; t < 5; ++t) x(2, t, f) = v;
    x(3, 3, f) = v;
  }
  x(0, 4, 0) = x(0, 4, 2) = v;
  return x;
}

std::string thrown(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no exception";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Masking, TrailingMaskValueStepsBecomePadding) {
  for (const double v : {0.0, -1.5}) {
    SCOPED_TRACE(v);
    Masking<double> layer(3, v);
    const Tensor3<double> x = padded_batch(v);
    const Mask in = Mask::from_lengths({5, 5, 5, 4});
    const Tensor3<double>& y = layer.forward(x, in);
    const std::vector<Index> want = {5, 3, 0, 3};
    EXPECT_EQ(layer.out_mask(in, 5).lengths(), want);
    for (Index b = 0; b < 4; ++b)
      for (Index t = 0; t < 5; ++t)
        for (Index f = 0; f < 3; ++f)
          EXPECT_EQ(y(b, t, f), t < want[static_cast<size_t>(b)] ? x(b, t, f) : 0.0) << b << " " << t << " " << f;
    // Without an input Mask, every step is read: sample 3's step 4 (random values) is valid, so step 3 inside
    // it is refused (next test); a batch without it gives the same lengths for samples 0..2.
    Tensor3<double> x3 = x;
    for (Index f = 0; f < 3; ++f) x3(3, 4, f) = v;
    layer.forward(x3, Mask());
    EXPECT_EQ(layer.out_mask(Mask(), 5).lengths(), (std::vector<Index>{5, 3, 0, 3}));
  }
}

TEST(Masking, MaskedStepBeforeAValidStepIsRefused) {
  Masking<double> layer(3, 0.0);
  Tensor3<double> x = padded_batch(0.0);  // sample 3: step 3 all 0, step 4 random
  const std::string m = thrown([&] { layer.forward(x, Mask()); });
  EXPECT_TRUE(contains(m, "Masking(mask_value=0)") && contains(m, "sequence 3") &&
              contains(m, "expected its mask_value steps only after its last valid step") &&
              contains(m, "but got step 3 all mask_value before the valid step 4"))
      << m;
  EXPECT_THROW(layer.forward(x, Mask()), ShapeError);
}

TEST(Masking, OutMaskMustFollowTheForwardOfTheSameBatch) {
  Masking<double> layer(3);
  EXPECT_THROW(layer.out_mask(Mask(), 5), ShapeError);  // no forward yet
  layer.forward(padded_batch(0.0), Mask::from_lengths({5, 5, 5, 4}));
  const std::string m = thrown([&] { layer.out_mask(Mask(), 6); });
  EXPECT_TRUE(contains(m, "Masking(mask_value=0)") && contains(m, "out_mask(T=6)") && contains(m, "4 sequences of 5"))
      << m;
  EXPECT_EQ(layer.out_mask(Mask(), -1).lengths().size(), 0u);  // unknown T (summary): the mask unchanged
}

TEST(Masking, GradientsMatchFiniteDifferences) {
  // Input-mask padding (sample 3, steps 3..4 hold random values) has gradient 0, valid steps pass dy through.
  // Data-derived padding is excluded here: a step that is exactly mask_value is not differentiable (any
  // perturbation makes it valid); its gradient is checked below.
  Masking<double> layer(3, 0.25);
  const Tensor3<double> x = random_tensor(4, 5, 3, 11);
  const auto result = check_layer_gradients(layer, x, Mask::from_lengths({5, 2, 0, 3}));
  EXPECT_TRUE(result.passed()) << result.report();

  const Tensor3<double> xp = padded_batch(0.25);
  layer.forward(xp, Mask::from_lengths({5, 5, 5, 4}));
  const Tensor3<double> dy = random_tensor(4, 5, 3, 12);
  const Tensor3<double>& dx = layer.backward(xp, Mask::from_lengths({5, 5, 5, 4}), dy);
  const std::vector<Index> len = {5, 3, 0, 3};
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 3; ++f)
        EXPECT_EQ(dx(b, t, f), t < len[static_cast<size_t>(b)] ? dy(b, t, f) : 0.0) << b << " " << t << " " << f;
}

TEST(Masking, SequentialPassesTheDerivedMaskOn) {
  // GlobalAvgPool after Masking averages the valid steps only: sample 1 over steps 0..2.
  Sequential<double> model(3);
  model.add<Masking<double>>(0.0);
  model.add<GlobalAvgPool<double>>();
  const Tensor3<double> x = padded_batch(0.0);
  const Tensor3<double>& y = model.forward(x, Mask::from_lengths({5, 5, 5, 4}));
  for (Index f = 0; f < 3; ++f) {
    EXPECT_NEAR(y(1, 0, f), (x(1, 0, f) + x(1, 1, f) + x(1, 2, f)) / 3.0, 1e-15);
    EXPECT_EQ(y(2, 0, f), 0.0);
  }
}

TEST(Masking, ConfigRoundTripAndErrors) {
  const Masking<float> layer(4, -2.5);
  EXPECT_EQ(layer.class_name(), "Masking");
  const auto rebuilt = build_layer<double>(layer_entry(layer), 4);
  EXPECT_EQ(rebuilt->describe(), layer.describe());
  EXPECT_EQ(static_cast<const Masking<double>&>(*rebuilt).mask_value(), -2.5);
  Config bad = layer.config();
  bad.set("mask_valeu", 1.0);
  EXPECT_TRUE(contains(thrown([&] { Masking<float>::from_config(4, bad); }), "Masking config: unknown option"));
  EXPECT_THROW(Masking<float>(4, std::nan("")), ConfigError);
  EXPECT_THROW(layer.open_stream(1, StreamOptions()), ConfigError);
}
