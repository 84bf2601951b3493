// GRU (reset_after): finite-difference gradients in double, return_sequences both ways, masked batches with
// lengths 0 and 1, activations, without bias, batch of one (the GEMV path); the same for reset_after=false.
#include <gtest/gtest.h>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

GRUOptions opts(bool seq) {
  // non-zero biases, different for the input and recurrent rows (the reset gate multiplies only the second)
  return GRUOptions().return_sequences(seq).bias_init(Init::uniform(-0.5, 0.5)).seed(11);
}

TEST(GRUGradients, ReturnSequencesMasked) {
  GRU<double> gru(3, 4, opts(true));
  const auto r = check_layer_gradients(gru, random_tensor(4, 6, 3, 1), Mask::from_lengths({6, 3, 0, 1}));
  EXPECT_TRUE(r.passed()) << r.report();
}

TEST(GRUGradients, LastStateMasked) {
  GRU<double> gru(3, 4, opts(false));
  const auto r = check_layer_gradients(gru, random_tensor(4, 6, 3, 2), Mask::from_lengths({2, 6, 1, 0}));
  EXPECT_TRUE(r.passed()) << r.report();
}

TEST(GRUGradients, Unmasked) {
  for (bool seq : {true, false}) {
    GRU<double> gru(2, 3, opts(seq));
    const auto r = check_layer_gradients(gru, random_tensor(3, 5, 2, 3));
    EXPECT_TRUE(r.passed()) << "return_sequences " << seq << ": " << r.report();
  }
}

TEST(GRUGradients, ActivationsAndNoBias) {
  const Activation acts[][2] = {{Activation::Sigmoid, Activation::Tanh},
                                {Activation::Linear, Activation::Sigmoid},
                                {Activation::Tanh, Activation::ReLU}};
  for (const auto& a : acts) {
    GRU<double> gru(3, 3, opts(true).activation(a[0]).recurrent_activation(a[1]).use_bias(false));
    const auto r = check_layer_gradients(gru, random_tensor(2, 4, 3, 4), Mask::from_lengths({4, 2}));
    EXPECT_TRUE(r.passed()) << to_string(a[0]) << "/" << to_string(a[1]) << ": " << r.report();
  }
}

TEST(GRUGradients, BatchOfOneAndLargerUnits) {
  GRU<double> one(3, 5, opts(true));
  const auto r1 = check_layer_gradients(one, random_tensor(1, 5, 3, 5), Mask::from_lengths({4}));
  EXPECT_TRUE(r1.passed()) << r1.report();
  GRU<double> wide(4, 12, opts(false));  // products large enough for Eigen's GEMM kernel
  const auto r2 = check_layer_gradients(wide, random_tensor(5, 4, 4, 6), Mask::from_lengths({4, 1, 3, 0, 2}));
  EXPECT_TRUE(r2.passed()) << r2.report();
}

// reset_after=false: reset gate before the recurrent product, one bias (1, 3U).
TEST(GRUGradients, ResetBeforeEveryInputAndParameter) {
  for (bool seq : {true, false}) {
    SCOPED_TRACE(seq ? "return_sequences" : "last state");
    GRU<double> gru(3, 4, opts(seq).reset_after(false));
    EXPECT_EQ(gru.bias().rows(), 1);
    EXPECT_EQ(gru.bias().cols(), 12);
    const auto r = check_layer_gradients(gru, random_tensor(4, 6, 3, 7), Mask::from_lengths({6, 3, 0, 1}));
    EXPECT_TRUE(r.passed()) << r.report();
    GRU<double> one(3, 5, opts(seq).reset_after(false));  // the GEMV path
    const auto r1 = check_layer_gradients(one, random_tensor(1, 5, 3, 8), Mask::from_lengths({4}));
    EXPECT_TRUE(r1.passed()) << r1.report();
    GRU<double> wide(4, 12, opts(seq).reset_after(false));  // products through Eigen's GEMM kernel
    const auto r2 = check_layer_gradients(wide, random_tensor(5, 4, 4, 9), Mask::from_lengths({4, 1, 3, 0, 2}));
    EXPECT_TRUE(r2.passed()) << r2.report();
    const Activation acts[][2] = {{Activation::Sigmoid, Activation::Tanh}, {Activation::Linear, Activation::Sigmoid}};
    for (const auto& a : acts) {
      GRU<double> g(3, 3, opts(seq).reset_after(false).activation(a[0]).recurrent_activation(a[1]).use_bias(false));
      const auto ra = check_layer_gradients(g, random_tensor(2, 4, 3, 10), Mask::from_lengths({4, 2}));
      EXPECT_TRUE(ra.passed()) << to_string(a[0]) << "/" << to_string(a[1]) << ": " << ra.report();
    }
    Bidirectional<double> bi(3, 3, opts(seq).reset_after(false));
    const auto rb = check_layer_gradients(bi, random_tensor(3, 5, 3, 11), Mask::from_lengths({5, 2, 1}));
    EXPECT_TRUE(rb.passed()) << rb.report();
  }
}

TEST(GRUGradients, ResetBeforeConfigRoundTrip) {
  GRU<double> gru(3, 4, opts(true).reset_after(false));
  EXPECT_NE(gru.describe().find("reset_after=false"), std::string::npos) << gru.describe();
  const auto back = GRU<double>::from_config(3, gru.config());
  EXPECT_EQ(back->describe(), gru.describe());
  EXPECT_EQ(static_cast<const GRU<double>&>(*back).options().reset_after(), false);
  EXPECT_EQ(GRU<double>(3, 4).describe().find("reset_after"), std::string::npos);
}

}  // namespace
