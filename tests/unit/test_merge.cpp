// Merge layers (layers/merge.hpp) and the several-input layer contract (core/layer.hpp): every op's values against
// a direct computation, finite-difference gradients of every op and of Concatenate with lengths and step masks,
// the output mask (the steps every input keeps) and masked steps (0, no gradient, NaN never read), errors that
// name the layer, the model-file round trip, and MultiHeadAttention as a several-input layer (the same numbers
// as its cross-attention calls).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/core/tensor_builders.hpp"
#include "seqattn/layers/merge.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_inputs_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

double reference_op(MergeOp op, const std::vector<double>& v) {
  double r = v[0];
  for (std::size_t i = 1; i < v.size(); ++i) {
    switch (op) {
      case MergeOp::Add:
      case MergeOp::Average: r += v[i]; break;
      case MergeOp::Subtract: r -= v[i]; break;
      case MergeOp::Multiply: r *= v[i]; break;
      case MergeOp::Maximum: r = std::max(r, v[i]); break;
      case MergeOp::Minimum: r = std::min(r, v[i]); break;
    }
  }
  return op == MergeOp::Average ? r / double(v.size()) : r;
}

const std::vector<MergeOp> kOps = {MergeOp::Add,     MergeOp::Subtract, MergeOp::Multiply,
                                   MergeOp::Average, MergeOp::Maximum,  MergeOp::Minimum};

TEST(Merge, ValuesMatchADirectComputation) {
  for (MergeOp op : kOps) {
    SCOPED_TRACE(to_string(op));
    const Index n = op == MergeOp::Subtract ? 2 : 3;
    Merge<double> merge(4, op, n);
    std::vector<Tensor3<double>> xs;
    std::vector<Mask> masks(static_cast<std::size_t>(n));
    LayerInputs<double> in;
    for (Index i = 0; i < n; ++i) xs.push_back(random_tensor(2, 3, 4, 10 + std::uint64_t(i)));
    for (Index i = 0; i < n; ++i) in.push_back({&xs[std::size_t(i)], &masks[std::size_t(i)]});
    const Tensor3<double>& y = merge.forward(in);
    for (Index k = 0; k < y.size(); ++k) {
      std::vector<double> v;
      for (const auto& x : xs) v.push_back(x.data()[k]);
      EXPECT_DOUBLE_EQ(y.data()[k], reference_op(op, v));
    }
  }
}

TEST(Merge, GradientsMatchFiniteDifferencesWithMasks) {
  for (MergeOp op : kOps) {
    SCOPED_TRACE(to_string(op));
    const Index n = op == MergeOp::Subtract ? 2 : 3;
    Merge<double> merge(3, op, n);
    std::vector<Tensor3<double>> xs;
    for (Index i = 0; i < n; ++i) xs.push_back(random_tensor(3, 5, 3, 20 + std::uint64_t(i)));
    const auto plain = check_inputs_gradients(merge, xs);
    EXPECT_TRUE(plain.passed()) << plain.report();
    std::vector<Mask> masks = {Mask::from_lengths({5, 2, 4}), random_step_mask(3, 5, 7)};
    masks.resize(std::size_t(n));
    const auto masked = check_inputs_gradients(merge, xs, masks);
    EXPECT_TRUE(masked.passed()) << masked.report();
  }
}

TEST(Concatenate, JoinsFeaturesInOrderWithGradients) {
  Concatenate<double> cat({2, 3, 1});
  EXPECT_EQ(cat.out_features(), 6);
  const std::vector<Tensor3<double>> xs = {random_tensor(2, 4, 2, 1), random_tensor(2, 4, 3, 2),
                                           random_tensor(2, 4, 1, 3)};
  const std::vector<Mask> masks(3);
  const LayerInputs<double> in = {{&xs[0], &masks[0]}, {&xs[1], &masks[1]}, {&xs[2], &masks[2]}};
  const Tensor3<double>& y = cat.forward(in);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 4; ++t) {
      EXPECT_EQ(y(b, t, 0), xs[0](b, t, 0));
      EXPECT_EQ(y(b, t, 1), xs[0](b, t, 1));
      for (Index f = 0; f < 3; ++f) EXPECT_EQ(y(b, t, 2 + f), xs[1](b, t, f));
      EXPECT_EQ(y(b, t, 5), xs[2](b, t, 0));
    }
  const auto result = check_inputs_gradients(cat, xs, {Mask::from_lengths({4, 1}), Mask(), random_step_mask(2, 4, 5)});
  EXPECT_TRUE(result.passed()) << result.report();
}

// The output keeps the steps every input keeps; other steps are 0 whatever the inputs hold there (NaN included)
// and pass no gradient.
TEST(Merge, OutputMaskIsTheIntersectionAndMaskedStepsAreZero) {
  Merge<double> merge(2, MergeOp::Multiply, 2);
  Tensor3<double> a = random_tensor(2, 4, 2, 31), b = random_tensor(2, 4, 2, 32);
  const Mask ma = Mask::from_lengths({3, 4});
  const Mask mb = Mask::from_steps({{1, 0, 1, 1}, {1, 1, 1, 0}});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (Index f = 0; f < 2; ++f) {
    a(0, 3, f) = nan;  // padded in a
    b(0, 1, f) = nan;  // masked in b
    b(1, 3, f) = nan;
  }
  const LayerInputs<double> in = {{&a, &ma}, {&b, &mb}};
  const Tensor3<double>& y = merge.forward(in, Mode::Train);
  const Mask out = merge.out_mask_of(in, 4);
  const std::vector<std::vector<int>> expected = {{1, 0, 1, 0}, {1, 1, 1, 0}};
  for (Index s = 0; s < 2; ++s)
    for (Index t = 0; t < 4; ++t) {
      EXPECT_EQ(out.valid(s, t, 4), expected[std::size_t(s)][std::size_t(t)] == 1) << s << "," << t;
      for (Index f = 0; f < 2; ++f) {
        if (expected[std::size_t(s)][std::size_t(t)]) {
          EXPECT_EQ(y(s, t, f), a(s, t, f) * b(s, t, f));
        } else {
          EXPECT_EQ(y(s, t, f), 0.0);
        }
      }
    }
  merge.backward(in, random_tensor(2, 4, 2, 33));
  for (Index i = 0; i < 2; ++i)
    for (Index f = 0; f < 2; ++f) {
      EXPECT_EQ(merge.input_grad(i)(0, 1, f), 0.0);
      EXPECT_EQ(merge.input_grad(i)(0, 3, f), 0.0);
      EXPECT_EQ(merge.input_grad(i)(1, 3, f), 0.0);
      EXPECT_TRUE(std::isfinite(merge.input_grad(i)(0, 0, f)));
    }
}

TEST(Merge, MaximumSendsTheGradientToTheFirstMaximum) {
  Merge<double> merge(1, MergeOp::Maximum, 3);
  const Tensor3<double> a = tensor3<double>({{{1.0}, {5.0}}}), b = tensor3<double>({{{3.0}, {5.0}}}),
                        c = tensor3<double>({{{3.0}, {2.0}}});
  const Mask m;
  const LayerInputs<double> in = {{&a, &m}, {&b, &m}, {&c, &m}};
  merge.forward(in);
  merge.backward(in, tensor3<double>({{{1.0}, {1.0}}}));
  EXPECT_EQ(merge.input_grad(0)(0, 0, 0), 0.0);
  EXPECT_EQ(merge.input_grad(1)(0, 0, 0), 1.0);  // ties b == c: the first
  EXPECT_EQ(merge.input_grad(2)(0, 0, 0), 0.0);
  EXPECT_EQ(merge.input_grad(0)(0, 1, 0), 1.0);  // ties a == b: the first
  EXPECT_EQ(merge.input_grad(1)(0, 1, 0), 0.0);
}

TEST(Merge, ErrorsNameTheLayerAndTheShapes) {
  using seqattn::testing::error_of;
  Merge<float> add(3, MergeOp::Add, 2);
  const Tensor3<float> x(2, 4, 3), shorter(2, 3, 3), wide(2, 4, 5), other_batch(3, 4, 3);
  const Mask m;
  EXPECT_CONTAINS(error_of<ConfigError>([&] { add.forward(x); }), "Merge(add, inputs=2): takes 2 or more inputs");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { add.forward(LayerInputs<float>{{&x, &m}, {&shorter, &m}}); }),
                  "every input needs the same steps but input 1 has shape (2, 3, 3) and input 0 (2, 4, 3)");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { add.forward(LayerInputs<float>{{&x, &m}, {&wide, &m}}); }),
                  "input 1 features expected 3 but got 5");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { add.forward(LayerInputs<float>{{&x, &m}, {&other_batch, &m}}); }),
                  "input 1 has 3 sequences but input 0 has 2");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { add.forward(LayerInputs<float>{{&x, &m}, {&x, &m}, {&x, &m}}); }),
                  "expected 2 input(s) but got 3");
  EXPECT_CONTAINS(error_of<ConfigError>([] { Merge<float>(3, MergeOp::Subtract, 3); }),
                  "subtract takes exactly 2 inputs but got 3");
  EXPECT_CONTAINS(error_of<ConfigError>([] { Concatenate<float>({4}); }), "Concatenate: needs at least 2 inputs");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { add.backward(LayerInputs<float>{{&x, &m}, {&x, &m}}, x); }),
                  "backward called before forward");
}

TEST(Merge, ConfigRoundTripRebuildsTheSameLayer) {
  Merge<double> average(3, MergeOp::Average, 4);
  const auto rebuilt = build_layer<double>(layer_entry<double>(average), 3);
  EXPECT_EQ(rebuilt->describe(), "Merge(average, inputs=4)");
  EXPECT_EQ(rebuilt->min_inputs(), 4);
  Concatenate<double> cat({3, 2});
  const auto cat2 = build_layer<double>(layer_entry<double>(cat), 3);
  EXPECT_EQ(cat2->describe(), "Concatenate(widths=[3, 2])");
  EXPECT_EQ(cat2->out_features(), 5);
}

// MultiHeadAttention with 2 and 3 inputs is its cross-attention: the same outputs and gradients, bitwise.
TEST(MultiHeadAttentionInputs, SeveralInputCallsAreTheCrossAttention) {
  MultiHeadAttention<double> a(4, 2, MultiHeadAttentionOptions().key_features(3).seed(5));
  MultiHeadAttention<double> b = a;
  const Tensor3<double> xq = random_tensor(2, 4, 4, 1), xkv = random_tensor(2, 6, 3, 2), dy = random_tensor(2, 4, 4, 3);
  const Mask mq = Mask::from_lengths({4, 2}), mkv = random_step_mask(2, 6, 4);
  const Tensor3<double> y1 = a.forward(xq, mq, xkv, mkv, Mode::Train);
  const Tensor3<double> dxq1 = a.backward_cross(xq, mq, xkv, mkv, dy);
  const Tensor3<double> dkv1 = a.key_input_grad();
  const LayerInputs<double> in = {{&xq, &mq}, {&xkv, &mkv}};
  const Tensor3<double> y2 = b.forward(in, Mode::Train);
  b.backward(in, dy);
  for (Index i = 0; i < y1.size(); ++i) EXPECT_EQ(y1.data()[i], y2.data()[i]);
  for (Index i = 0; i < dxq1.size(); ++i) EXPECT_EQ(dxq1.data()[i], b.input_grad(0).data()[i]);
  for (Index i = 0; i < dkv1.size(); ++i) EXPECT_EQ(dkv1.data()[i], b.input_grad(1).data()[i]);
  EXPECT_EQ(b.out_mask_of(in, 4), mq);
  const auto result = check_inputs_gradients(b, {xq, xkv}, {mq, mkv});
  EXPECT_TRUE(result.passed()) << result.report();

  MultiHeadAttention<double> split(4, 2, MultiHeadAttentionOptions().key_features(3).value_features(5).seed(6));
  const auto three = check_inputs_gradients(split, {xq, xkv, random_tensor(2, 6, 5, 7)}, {mq, mkv, mkv});
  EXPECT_TRUE(three.passed()) << three.report();
  const Tensor3<double> xv = random_tensor(2, 6, 5, 7);
  const Mask other;
  EXPECT_CONTAINS(seqattn::testing::error_of<ShapeError>(
                      [&] { split.forward(LayerInputs<double>{{&xq, &mq}, {&xkv, &mkv}, {&xv, &other}}); }),
                  "keys and values share one mask");
}

}  // namespace
