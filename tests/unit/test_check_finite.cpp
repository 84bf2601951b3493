// Sequential's finite-check mode (set_check_finite): the first layer producing a NaN or Inf, in forward or in
// backward, is named in a seqattn::Error with its index and describe(); non-finite model inputs and output
// gradients are reported as such; padded steps are not checked; the mode is off by default (NaN then flows
// through silently), is copied with the model, and a model that threw stays usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/model/sequential.hpp"

using namespace seqattn;

namespace {

Sequential<float> model3() {
  Sequential<float> m(4);
  m.add<Dense<float>>(4, DenseOptions().seed(1));
  m.add<Dense<float>>(4, DenseOptions().activation(Activation::ReLU).seed(2));
  m.add<LayerNorm<float>>();
  return m;
}

Tensor3<float> ones(Index B, Index T, Index F, float v = 1.0f) {
  Tensor3<float> x(B, T, F);
  x.setConstant(v);
  return x;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(CheckFinite, OffByDefaultSoANaNFlowsThroughSilently) {
  Sequential<float> m = model3();
  EXPECT_FALSE(m.check_finite());
  m.layer_as<Dense<float>>(1).kernel().setConstant(3e38f);  // layer 1 overflows to Inf, LayerNorm makes NaN
  const Tensor3<float>& y = m.predict(ones(2, 3, 4));
  EXPECT_TRUE(std::isnan(y(0, 0, 0)));
}

TEST(CheckFinite, NamesTheFirstLayerProducingInfInForward) {
  Sequential<float> m = model3();
  m.set_check_finite(true);
  m.layer_as<Dense<float>>(1).kernel().setConstant(3e38f);
  m.layer_as<Dense<float>>(0).kernel().setConstant(1.0f);  // layer 0 outputs 4 + b > 0 everywhere
  const std::string e = error_of([&] { m.predict(ones(2, 3, 4)); });
  EXPECT_TRUE(has(e, "Sequential: check_finite: layer 1 Dense(units=4, activation=relu) produced Inf in its forward "
                     "output at (sequence 0, step 0, feature 0) (its input was finite)"))
      << e;
}

TEST(CheckFinite, NamesTheLayerTurningInfIntoNaN) {
  Sequential<float> m(4);
  m.add<LayerNorm<float>>();  // Inf - Inf = NaN
  m.set_check_finite(true);
  Tensor3<float> x = ones(1, 2, 4);
  x(0, 1, 2) = std::numeric_limits<float>::infinity();
  const std::string e = error_of([&] { m.predict(x); });
  EXPECT_TRUE(has(e, "the model input has Inf at (sequence 0, step 1, feature 2)")) << e;
  // Padded steps are not checked, in the input or in outputs.
  EXPECT_EQ(error_of([&] { m.predict(x, Mask::from_lengths({1})); }), "(no error)");
}

TEST(CheckFinite, ReportsANaNInputAndStaysUsable) {
  Sequential<float> m = model3();
  m.set_check_finite(true);
  Tensor3<float> x = ones(2, 3, 4);
  x(1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(has(error_of([&] { m.predict(x); }), "the model input has NaN at (sequence 1, step 2, feature 3)"));
  EXPECT_EQ(error_of([&] { m.predict(x, Mask::from_lengths({3, 2})); }), "(no error)");
  x(1, 2, 3) = 1.0f;
  const Tensor3<float> y = m.forward(x, Mask(), Mode::Train);
  Sequential<float> reference = model3();
  EXPECT_EQ(std::memcmp(y.data(), reference.predict(x).data(), y.size() * sizeof(float)), 0);
  EXPECT_NO_THROW(m.backward(ones(2, 3, 4)));
}

TEST(CheckFinite, NamesTheLayerWhoseInputGradientOverflows) {
  Sequential<float> m(4);
  m.add<Dense<float>>(4, DenseOptions().seed(1));
  m.add<Dense<float>>(4, DenseOptions().seed(2));
  m.layer_as<Dense<float>>(1).kernel().setConstant(1e10f);
  m.layer_as<Dense<float>>(1).bias().setZero();
  m.set_check_finite(true);
  m.forward(ones(1, 2, 4, 1e-12f), Mask(), Mode::Train);  // outputs stay finite
  const std::string e = error_of([&] { m.backward(ones(1, 2, 4, 1e30f)); });
  EXPECT_TRUE(has(e, "layer 1 Dense(units=4) produced Inf in its input gradient (backward) at (sequence 0, step 0, "
                     "feature 0) (its output gradient was finite)"))
      << e;
  m.forward(ones(1, 2, 4), Mask(), Mode::Train);
  EXPECT_TRUE(has(error_of([&] { m.backward(ones(1, 2, 4, std::numeric_limits<float>::infinity())); }),
                  "the output gradient dy has Inf at (sequence 0, step 0, feature 0)"));
}

TEST(CheckFinite, NamesTheLayerWhoseParameterGradientOverflows) {
  Sequential<float> m(4);
  m.add<Dense<float>>(4, DenseOptions().seed(1));
  m.add<Dense<float>>(4, DenseOptions().seed(2));
  Sequential<float> copy = m;
  copy.set_check_finite(true);
  Sequential<float> checked = copy;  // the mode is copied
  EXPECT_TRUE(checked.check_finite());
  checked.zero_grad();
  checked.forward(ones(1, 2, 4, 1e20f), Mask(), Mode::Train);  // y0 ~ 1e20, finite
  const std::string e = error_of([&] { checked.backward(ones(1, 2, 4, 1e20f)); });  // dW1 = y0^T dy ~ 1e40
  EXPECT_TRUE(has(e, "layer 1 Dense(units=4) produced Inf in the gradient of its parameter 'W' at index")) << e;
}

}  // namespace
