// MultiHead (keras-multi-head's wrapper): finite-difference gradients (layer_num 1 and 3, hidden_dim on and off,
// length and step masks, Dense, SeqSelfAttention and MultiHeadAttention copies), the output against each copy run
// alone and concatenated (Keras' stacked index [.., f, i] = ours [.., i*Fc + f]), fresh weights per copy (seed + i),
// the orthogonality regularizer by hand and its gradient, model-file round trip, streams, step-mask refusal, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/io/model_file.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

using seqattn::testing::error_of;

// A layer that keeps the default (refuses step masks): y = x.
class Identity final : public Layer<double> {
 public:
  explicit Identity(Index in) : Layer<double>(in) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "identity"; }
  std::string describe() const override { return "Identity()"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<Identity>(*this); }

 protected:
  void do_forward(const Tensor3<double>& x, const Mask&, Mode, Tensor3<double>& y) override { y = x; }
  void do_backward(const Tensor3<double>&, const Mask&, const Tensor3<double>& dy, Tensor3<double>& dx) override {
    dx = dy;
  }
};

std::unique_ptr<Layer<double>> make_child(int kind, Index in, std::uint64_t seed) {
  switch (kind) {
    case 0: return std::make_unique<Dense<double>>(in, 3, DenseOptions().activation(Activation::Tanh).seed(seed));
    case 1:
      return std::make_unique<SeqSelfAttention<double>>(
          in, SeqSelfAttentionOptions().units(3).bias_init(Init::uniform(-.5, .5)).seed(seed));
    default: return std::make_unique<MultiHeadAttention<double>>(in, 2, MultiHeadAttentionOptions().seed(seed));
  }
}

TEST(MultiHead, GradientsMatchFiniteDifferences) {
  const Index B = 4, T = 5, F = 4;
  const std::vector<Mask> masks = {Mask::from_lengths({5, 2, 0, 1}), random_step_mask(B, T, 11)};
  for (int kind : {0, 1, 2})
    for (Index num : {1, 3})
      for (bool hidden : {false, true})
        for (size_t m = 0; m < masks.size(); ++m) {
          SCOPED_TRACE("kind " + std::to_string(kind) + " layer_num " + std::to_string(num) + " hidden " +
                       std::to_string(hidden) + " mask " + std::to_string(m));
          const Index child_in = hidden ? 2 : F;
          auto child = make_child(kind, child_in, 7);
          MultiHeadOptions o = MultiHeadOptions().layer_num(num).seed(3).bias_init(Init::uniform(-.5, .5));
          if (hidden) o.hidden_dim(2).kernel_init(Init::uniform(-1, 1));
          MultiHead<double> mh(F, *child, o);
          const auto r = check_layer_gradients(mh, random_tensor(B, T, F, 5), masks[m]);
          std::vector<std::string> allowed;  // SeqSelfAttention's ba shifts every score alike (softmax ignores it)
          for (Index i = 0; i < num; ++i) allowed.push_back(std::to_string(i) + ".seq_self_attention.ba");
          EXPECT_TRUE(r.passed(allowed)) << r.report();
        }
}

// Each copy run alone (a clone, before the wrapper's forward) and concatenated by hand.
TEST(MultiHead, OutputIsTheCopiesConcatenated) {
  const Index B = 3, T = 6, F = 4, h = 2, L = 3;
  const Tensor3<double> x = random_tensor(B, T, F, 9);
  const Mask mask = random_step_mask(B, T, 4);
  for (bool hidden : {false, true}) {
    SeqSelfAttention<double> child(hidden ? h : F, SeqSelfAttentionOptions().units(3).seed(2));
    MultiHeadOptions o = MultiHeadOptions().layer_num(L).bias_init(Init::uniform(-.5, .5));
    if (hidden) o.hidden_dim(h);
    MultiHead<double> mh(F, child, o);
    std::vector<std::unique_ptr<Layer<double>>> alone;
    for (Index i = 0; i < L; ++i) alone.push_back(mh.layer(i).clone());
    const Tensor3<double> y = mh.forward(x, mask);
    const Index Fc = hidden ? h : F;  // SeqSelfAttention keeps its input features
    ASSERT_EQ(y.dimension(2), L * Fc);
    ParamList<double> params = mh.params();
    const double* W = nullptr;
    const double* b = nullptr;
    for (const auto& p : params) {
      if (p.name == "W") W = p.value;
      if (p.name == "b") b = p.value;
    }
    ASSERT_EQ(hidden, W != nullptr);
    for (Index i = 0; i < L; ++i) {
      Tensor3<double> xi(B, T, hidden ? h : F);
      for (Index bb = 0; bb < B; ++bb)
        for (Index t = 0; t < T; ++t)
          for (Index k = 0; k < xi.dimension(2); ++k) {
            if (!hidden) {
              xi(bb, t, k) = x(bb, t, k);
              continue;
            }
            double s = b[i * h + k];
            for (Index f = 0; f < F; ++f) s += x(bb, t, f) * W[f * (h * L) + i * h + k];
            xi(bb, t, k) = s;
          }
      const Tensor3<double> yi = alone[size_t(i)]->forward(xi, mask);
      for (Index bb = 0; bb < B; ++bb)
        for (Index t = 0; t < T; ++t)
          for (Index f = 0; f < Fc; ++f) EXPECT_NEAR(y(bb, t, i * Fc + f), yi(bb, t, f), 1e-12) << i << " " << t;
    }
  }
}

// Copy i of a layer with seed s is the layer built with seed s + i; copy 0 is the given layer.
TEST(MultiHead, CopiesHaveTheirOwnWeights) {
  Dense<double> child(3, 2, DenseOptions().seed(40));
  MultiHead<double> mh(3, child, MultiHeadOptions().layer_num(3));
  for (Index i = 0; i < 3; ++i) {
    Dense<double> same(3, 2, DenseOptions().seed(40 + std::uint64_t(i)));
    auto& copy = static_cast<Dense<double>&>(mh.layer(i));
    EXPECT_EQ(copy.kernel(), same.kernel()) << i;
  }
  EXPECT_NE(static_cast<Dense<double>&>(mh.layer(0)).kernel(), static_cast<Dense<double>&>(mh.layer(1)).kernel());
  const ParamList<double> params = mh.params();
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(params[0].name, "0.dense.W");
  EXPECT_EQ(params[5].name, "2.dense.b");
  MultiHead<double> projected(3, Dense<double>(2, 2), MultiHeadOptions().layer_num(2).hidden_dim(2));
  const ParamList<double> p2 = projected.params();
  ASSERT_EQ(p2.size(), 6u);
  EXPECT_EQ(p2[4].name, "W");
  EXPECT_EQ(p2[4].shape, (std::vector<Index>{3, 4}));
  EXPECT_EQ(p2[5].name, "b");
}

// Two Dense(2 -> 2, no bias) copies, regularizer on W[0:1, 0:2] (the first rows):
// R = [[1, 2], [3, 4]], R R^T - I = [[4, 11], [11, 24]], loss = f (16 + 121 + 121 + 576) = 834 f.
TEST(MultiHead, OrthogonalityRegularizerByHand) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  for (int i = 0; i < 2; ++i) layers.push_back(std::make_unique<Dense<double>>(2, 2, DenseOptions().use_bias(false)));
  MultiHeadRegularizer reg;
  reg.index = 0;
  reg.slice = {{0, 1}, {0, 2}};
  reg.factor = 0.5;
  MultiHead<double> mh(2, std::move(layers), MultiHeadOptions().regularizers({reg}));
  static_cast<Dense<double>&>(mh.layer(0)).kernel() << 1, 2, 5, 6;
  static_cast<Dense<double>&>(mh.layer(1)).kernel() << 3, 4, 7, 8;
  EXPECT_DOUBLE_EQ(mh.regularization_loss(), 0.5 * 834);
  // Gradient with dy = 0: 4 f (R R^T - I) R = 2 [[4*1 + 11*3, 4*2 + 11*4], [11*1 + 24*3, 11*2 + 24*4]].
  const Tensor3<double> x = random_tensor(1, 2, 2, 1);
  mh.forward(x);
  Tensor3<double> dy(1, 2, 4);
  dy.setZero();
  mh.zero_grad();
  mh.backward(x, Mask(), dy);
  const ParamList<double> p = mh.params();
  EXPECT_DOUBLE_EQ(p[0].grad[0], 2 * 37);
  EXPECT_DOUBLE_EQ(p[0].grad[1], 2 * 52);
  EXPECT_DOUBLE_EQ(p[0].grad[2], 0);  // outside the slice
  EXPECT_DOUBLE_EQ(p[1].grad[0], 2 * 83);
  EXPECT_DOUBLE_EQ(p[1].grad[1], 2 * 118);
  // The whole parameter, and finite differences of the loss with the regularizer (random weights).
  MultiHeadRegularizer whole;
  whole.factor = 0.3;
  MultiHeadRegularizer column;
  column.slice = {{1, 3}, {1, 2}};
  column.factor = 0.7;
  Dense<double> child(3, 2, DenseOptions().seed(8));
  MultiHead<double> big(3, child, MultiHeadOptions().layer_num(3).regularizers({whole, column}));
  EXPECT_GT(big.regularization_loss(), 0.0);
  const auto r = check_layer_gradients(big, random_tensor(2, 3, 3, 4), random_step_mask(2, 3, 5));
  EXPECT_TRUE(r.passed()) << r.report();
}

TEST(MultiHead, ModelFileRoundTripPredictsBitwise) {
  Sequential<double> model(4);
  MultiHeadRegularizer reg;
  reg.index = 0;
  reg.slice = {{0, 2}};
  reg.factor = 0.01;
  model.add<MultiHead<double>>(SeqSelfAttention<double>(2, SeqSelfAttentionOptions().units(3).seed(1)),
                               MultiHeadOptions().layer_num(3).hidden_dim(2).regularizers({reg}));
  std::vector<std::unique_ptr<Layer<double>>> list;
  list.push_back(std::make_unique<Dense<double>>(6, 2));
  list.push_back(std::make_unique<Dense<double>>(6, 2, Activation::ReLU));
  model.add<MultiHead<double>>(std::move(list));
  std::stringstream file;
  save_model(model, file);
  Sequential<double> loaded = load_model<double>(file);
  EXPECT_EQ(loaded.summary(6), model.summary(6));
  EXPECT_EQ(loaded.layer(0).describe(), model.layer(0).describe());
  EXPECT_EQ(layer_entry(loaded.layer(0)), layer_entry(model.layer(0)));
  const Tensor3<double> x = random_tensor(2, 6, 4, 3);
  const Mask mask = random_step_mask(2, 6, 2);
  const Tensor3<double> a = model.predict(x, mask);
  const Tensor3<double> b = loaded.predict(x, mask);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(double) * size_t(a.size())));
  EXPECT_EQ(loaded.regularization_loss(), model.regularization_loss());
}

TEST(MultiHead, StreamsAsTheForward) {
  SeqSelfAttention<double> child(2, SeqSelfAttentionOptions().units(3).history_only(true).seed(3));
  MultiHead<double> mh(3, child, MultiHeadOptions().layer_num(2).hidden_dim(2));
  const Tensor3<double> x = random_tensor(2, 5, 3, 8);
  const Tensor3<double> y = mh.forward(x);
  auto stream = mh.open_stream(2, StreamOptions());
  ASSERT_EQ(mh.out_features(), 4);
  Tensor3<double> xs(2, 1, 3), ys(2, 1, 4);
  for (Index t = 0; t < 5; ++t) {
    for (Index b = 0; b < 2; ++b)
      for (Index f = 0; f < 3; ++f) xs(b, 0, f) = x(b, t, f);
    stream->step(xs, {t, t}, ys);
    for (Index b = 0; b < 2; ++b)
      for (Index f = 0; f < 4; ++f) EXPECT_NEAR(ys(b, 0, f), y(b, t, f), 1e-12) << t;
  }
  SeqSelfAttention<double> global(3, SeqSelfAttentionOptions().units(3));
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, global).open_stream(1, StreamOptions()); }),
                  "cannot be streamed: its layer 0 refuses");
}

// Kept outputs are bitwise independent of the values at masked steps (finite garbage, NaN, Inf).
TEST(MultiHead, KeptOutputsIgnoreMaskedValues) {
  const Index B = 4, T = 6, F = 3;
  const Tensor3<double> x = random_tensor(B, T, F, 21);
  const Mask mask = random_step_mask(B, T, 8);
  for (bool hidden : {false, true}) {
    SeqSelfAttention<double> child(hidden ? 2 : F, SeqSelfAttentionOptions().units(3).seed(4));
    MultiHeadOptions o = MultiHeadOptions().layer_num(3);
    if (hidden) o.hidden_dim(2);
    MultiHead<double> mh(F, child, o);
    const Tensor3<double> y = mh.forward(x, mask);
    const Mask out = mh.out_mask(mask, T);
    for (double g : {1e3, std::nan(""), HUGE_VAL}) {
      const Tensor3<double> yg =
          mh.forward(with_masked_values(x, mask, [&](Index i) { return g * (i % 2 ? 1 : -1); }), mask);
      EXPECT_TRUE(same_kept_steps(y, out, yg, out)) << "hidden " << hidden << " garbage " << g;
    }
  }
}

TEST(MultiHead, StepMasksNeedEveryCopy) {
  std::vector<std::unique_ptr<Layer<double>>> list;
  list.push_back(std::make_unique<Dense<double>>(3, 3));
  list.push_back(std::make_unique<Identity>(3));
  MultiHead<double> mh(3, std::move(list));
  EXPECT_FALSE(mh.supports_step_masks());
  EXPECT_CONTAINS(error_of<ConfigError>([&] { mh.forward(random_tensor(2, 4, 3, 1), random_step_mask(2, 4, 3)); }),
                  "its layer 1 (Identity()) refuses it");
}

TEST(MultiHead, ErrorsNameTheLayerAndValues) {
  Dense<double> d(3, 2);
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, d, MultiHeadOptions().layer_num(0)); }),
                  "MultiHead(Dense(units=2)): layer_num must be positive but got 0");
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, d, MultiHeadOptions().hidden_dim(0)); }),
                  "MultiHead: hidden_dim must be positive but got 0");
  EXPECT_CONTAINS(error_of<ShapeError>([&] { MultiHead<double>(3, d, MultiHeadOptions().hidden_dim(4)); }),
                  "layer 0 (Dense(units=2)) expects 3 input features but gets 4 (hidden_dim)");
  std::vector<std::unique_ptr<Layer<double>>> list;
  list.push_back(std::make_unique<Dense<double>>(3, 2));
  list.push_back(std::make_unique<Dense<double>>(3, 4));
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, std::move(list)); }),
                  "layer 1 (Dense(units=4)) gives 4 features, 7 steps for 7, and layer 0 (Dense(units=2)) 2 features");
  MultiHeadRegularizer reg;
  reg.index = 2;
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, d, MultiHeadOptions().regularizers({reg})); }),
                  "reg_index expected an index into the 2 parameters of layer 0 (Dense(units=2)) but got 2");
  reg.index = 0;
  reg.slice = {{0, 4}};
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, d, MultiHeadOptions().regularizers({reg})); }),
                  "dimension 0 expected 0 <= start < stop <= 3 but got (0, 4)");
  Identity unsaved(3);
  EXPECT_CONTAINS(error_of<ConfigError>([&] { MultiHead<double>(3, unsaved, MultiHeadOptions().layer_num(2)); }),
                  "MultiHead: cannot make 2 copies of Identity()");
}

}  // namespace
