// Masking (layers/masking.hpp, Keras' Masking for right-padded batches): the lengths it derives from the data
// (trailing all-mask_value steps become padding, inside an input Mask too), the output (0 at padded steps),
// gradients in double against finite differences, the refusal of a masked step before a valid one, out_mask
// without a matching forward, config round trip and a Sequential passing its mask on.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/io/model_file.hpp"
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

// Issue 22: a mask_value step inside a sequence is masked on its own (Keras), a step mask; it used to be refused.
TEST(Masking, MaskValueStepInsideASequenceGivesAStepMask) {
  Masking<double> layer(3, 0.0);
  Tensor3<double> x = padded_batch(0.0);  // sample 3: step 3 all 0, step 4 random
  for (Index f = 0; f < 3; ++f) x(1, 0, f) = 0.0;  // sample 1: its first step too (left padding)
  const Tensor3<double> y = layer.forward(x, Mask());
  const Mask out = layer.out_mask(Mask(), 5);
  EXPECT_TRUE(out.has_holes());
  EXPECT_EQ(out, Mask::from_steps({{1, 1, 1, 1, 1}, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}, {1, 1, 1, 0, 1}}));
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 3; ++f) EXPECT_EQ(y(b, t, f), out.valid(b, t, 5) ? x(b, t, f) : 0.0) << b << " " << t;
  // an input step mask stays: its masked steps are not read and stay masked
  const Mask in = Mask::from_steps({{1, 0, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 0}});
  Tensor3<double> xg = x;
  for (Index f = 0; f < 3; ++f) xg(0, 1, f) = std::nan("");
  const Tensor3<double> yg = layer.forward(xg, in);
  EXPECT_EQ(layer.out_mask(in, 5),
            Mask::from_steps({{1, 0, 1, 1, 1}, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}, {1, 1, 1, 0, 0}}));
  EXPECT_EQ(yg(0, 1, 0), 0.0);
  // dx: dy at the kept steps, 0 at the masked ones
  const Tensor3<double> dy = random_tensor(4, 5, 3, 3);
  const Tensor3<double>& dx = layer.backward(xg, in, dy);
  const Mask kept = layer.out_mask(in, 5);
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 3; ++f) EXPECT_EQ(dx(b, t, f), kept.valid(b, t, 5) ? dy(b, t, f) : 0.0) << b << " " << t;
}

// mask_value = NaN: a step with any NaN feature is masked (Mask::from_missing) and outputs 0, so no NaN flows on.
TEST(Masking, NaNMaskValueMasksStepsWithAMissingFeature) {
  Masking<double> layer(3, std::nan(""));
  EXPECT_EQ(layer.describe(), "Masking(mask_value=NaN)");
  Tensor3<double> x = random_tensor(3, 4, 3, 5);
  x(0, 1, 2) = std::nan("");  // one feature missing: masked (a finite mask_value needs every feature)
  x(1, 3, 0) = x(1, 3, 1) = x(1, 3, 2) = std::nan("");
  x(2, 0, 1) = std::nan("");
  const Tensor3<double> y = layer.forward(x, Mask());
  const Mask out = layer.out_mask(Mask(), 4);
  EXPECT_EQ(out, Mask::from_missing(x));
  EXPECT_EQ(out, Mask::from_steps({{1, 0, 1, 1}, {1, 1, 1, 0}, {0, 1, 1, 1}}));
  for (Index i = 0; i < y.size(); ++i) EXPECT_FALSE(std::isnan(y.data()[i])) << i;
  EXPECT_EQ(y(0, 1, 0), 0.0);
  EXPECT_EQ(y(0, 2, 0), x(0, 2, 0));
  // a Sequential passes the step mask on: GlobalAvgPool averages the observed steps
  Sequential<double> model(3);
  model.add<Masking<double>>(std::nan(""));
  model.add<GlobalAvgPool<double>>();
  const Tensor3<double>& yp = model.forward(x, Mask());
  for (Index f = 0; f < 3; ++f) EXPECT_NEAR(yp(0, 0, f), (x(0, 0, f) + x(0, 2, f) + x(0, 3, f)) / 3.0, 1e-15);
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

// NaN (JSON has none) is stored as the string "NaN": a model file round trip keeps it.
TEST(Masking, NaNMaskValueRoundTripsThroughAModelFile) {
  Sequential<float> model(2);
  model.add<Masking<float>>(std::nan(""));
  model.add<Dense<float>>(3, DenseOptions().seed(1));
  const std::string json = layer_entry(model.layer(0)).dump();
  EXPECT_NE(json.find("\"NaN\""), std::string::npos) << json;
  std::stringstream file;
  save_model(model, file);
  Sequential<float> loaded = load_model<float>(file);
  EXPECT_EQ(loaded.layer(0).describe(), "Masking(mask_value=NaN)");
  EXPECT_TRUE(std::isnan(static_cast<const Masking<float>&>(loaded.layer(0)).mask_value()));
  Tensor3<float> x(1, 3, 2);
  x.setValues({{{1, 2}, {std::nanf(""), 0}, {3, 4}}});
  const Tensor3<float> want = model.predict(x, Mask());
  const Tensor3<float>& got = loaded.predict(x, Mask());
  for (Index i = 0; i < want.size(); ++i) EXPECT_EQ(got.data()[i], want.data()[i]) << i;
  EXPECT_FALSE(std::isnan(got(0, 1, 0)));
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
  EXPECT_THROW(Masking<float>(4, std::numeric_limits<double>::infinity()), ConfigError);
  bad = layer.config();
  bad.set("mask_value", std::string("nan"));
  EXPECT_TRUE(
      contains(thrown([&] { Masking<float>::from_config(4, bad); }), "'mask_value' expected a number or \"NaN\""));
  EXPECT_THROW(layer.open_stream(1, StreamOptions()), ConfigError);
}
