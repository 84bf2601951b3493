// SeqSelfAttention: invalid options throw ConfigError naming the layer and the bad value; bad inputs throw
// ShapeError naming the layer, the expected and the received values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "seqattn/layers/seq_self_attention.hpp"

using namespace seqattn;

namespace {
template <class Error, class Fn>
void expect_error(Fn&& fn, const std::string& expected) {
  try {
    fn();
    FAIL() << "expected an error containing: " << expected;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}
using O = SeqSelfAttentionOptions;
}  // namespace

TEST(SeqSelfAttentionErrors, BadOptionsThrowConfigErrorNamingTheLayer) {
  expect_error<ConfigError>([] { SeqSelfAttention<float>(4, O().units(0)); },
                            "SeqSelfAttention(additive, units=0): units must be positive but got 0");
  expect_error<ConfigError>([] { SeqSelfAttention<float>(4, O().attention_width(0)); },
                            "SeqSelfAttention(additive, units=32, width=0): attention_width must be >= 1");
  expect_error<ConfigError>([] { SeqSelfAttention<float>(4, O().attention_width(-3)); }, "but got -3");
  expect_error<ConfigError>([] { SeqSelfAttention<float>(4, O().attention_activation(Activation::Softmax)); },
                            "attention_activation must be elementwise but got softmax");
  expect_error<ConfigError>([] { SeqSelfAttention<float>(4, O().attention_regularizer_weight(-0.5)); },
                            "SeqSelfAttention(additive, units=32): attention_regularizer_weight must be finite and "
                            ">= 0 but got -0.5");
  expect_error<ConfigError>(
      [] { SeqSelfAttention<float>(4, O().attention_regularizer_weight(std::numeric_limits<double>::quiet_NaN())); },
      "attention_regularizer_weight must be finite");
  expect_error<ConfigError>(
      [] {
        SeqSelfAttention<float>(4, O().kernel_regularizer({-1.0, 0.0}));
      },
      "regularizer l1 and l2 must be finite and >= 0 but got l1=-1 l2=0");
  expect_error<ConfigError>(
      [] {
        SeqSelfAttention<float>(4, O().attention_type(AttentionType::Multiplicative).bias_regularizer({0, -2}));
      },
      "SeqSelfAttention(multiplicative): regularizer");
  expect_error<ConfigError>([] { SeqSelfAttention<float>(0); }, "input features must be positive but got 0");
  // Multiplicative attention has no units: 0 is accepted there.
  EXPECT_NO_THROW(SeqSelfAttention<float>(4, O().attention_type(AttentionType::Multiplicative).units(0)));
}

TEST(SeqSelfAttentionErrors, WrongInputsThrowShapeErrorNamingTheLayer) {
  SeqSelfAttention<float> layer(8, O().attention_width(5));
  Tensor3<float> x(2, 3, 5);
  x.setZero();
  expect_error<ShapeError>([&] { layer.forward(x); },
                           "SeqSelfAttention(additive, units=32, width=5): input features expected 8 but got 5");
  Tensor3<float> good(2, 3, 8);
  good.setZero();
  expect_error<ShapeError>([&] { layer.forward(good, Mask::from_lengths({3})); },
                           "SeqSelfAttention(additive, units=32, width=5): mask has 1 lengths but the batch has 2");
  expect_error<ShapeError>(
      [&] {
        layer.forward(good, Mask::from_lengths({3, 4}));
      },
      "mask length of sequence 1 is 4 but the input has only 3 steps");
  expect_error<ShapeError>([&] { layer.backward(good, Mask(), good); }, "backward called before forward");
  layer.forward(good);
  Tensor3<float> dy(2, 4, 8);
  dy.setZero();
  expect_error<ShapeError>([&] { layer.backward(good, Mask(), dy); },
                           "output gradient expected (2, 3, 8) but got (2, 4, 8)");
}
