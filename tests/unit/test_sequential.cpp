// Sequential: parameter names (nested too), summary table, shape checks at add(), empty model, layer access,
// deep copies (copy constructor, clone) independent of the original, backward(dy) == backward(x, mask, dy),
// and masks chained through the layers (pooling shortens them, Embedding mask_zero derives them from the data).
#include <gtest/gtest.h>

#include <functional>
#include <sstream>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

std::vector<std::string> names(const ParamList<double>& list) {
  std::vector<std::string> out;
  for (const auto& p : list) out.push_back(p.name);
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The summary row starting with `start` (after its layer column), as "shape|count"; "" when there is none.
std::string row(const std::string& summary, const std::string& start) {
  std::istringstream in(summary);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, start.size(), start) != 0) continue;
    const size_t shape = line.find("   (None");
    const size_t count = line.find_last_of(' ');
    if (shape == std::string::npos) return "";
    return line.substr(shape + 3, line.find(')', shape) - shape - 2) + "|" + line.substr(count + 1);
  }
  return "";
}

template <class E>
void expect_error(const std::function<void()>& f, const std::string& message) {
  try {
    f();
    FAIL() << "expected an error with: " << message;
  } catch (const E& e) {
    EXPECT_TRUE(contains(e.what(), message)) << e.what();
  }
}

Sequential<double> small_model() {
  Sequential<double> model(5);
  model.add<Dense<double>>(6, Activation::Tanh);
  Sequential<double> inner(6);
  inner.add<Dense<double>>(4);
  inner.add<ActivationLayer<double>>(Activation::GELU);
  model.add(std::make_unique<Sequential<double>>(inner));
  model.add<BatchNorm<double>>();
  model.add<Dense<double>>(3, DenseOptions().use_bias(false));
  return model;
}

TEST(Sequential, NamesParametersAndBuffersByIndexAndLayerName) {
  Sequential<double> model = small_model();
  EXPECT_EQ(model.size(), 4);
  EXPECT_EQ(names(model.params()),
            (std::vector<std::string>{"0.dense.W", "0.dense.b", "1.sequential.0.dense.W", "1.sequential.0.dense.b",
                                      "2.batch_norm.gamma", "2.batch_norm.beta", "3.dense.W"}));
  EXPECT_EQ(names(model.buffers()),
            (std::vector<std::string>{"2.batch_norm.running_mean", "2.batch_norm.running_var"}));
  EXPECT_EQ(model.param_count(), 5 * 6 + 6 + 6 * 4 + 4 + 4 + 4 + 4 * 3);
  // The views point into the layers themselves.
  EXPECT_EQ(model.params()[0].value, model.layer_as<Dense<double>>(0).kernel().data());
  EXPECT_EQ(model.out_features(), 3);
  EXPECT_EQ(model.name(), "sequential");
  EXPECT_EQ(model.describe(), "Sequential(layers=4)");
}

TEST(Sequential, SummaryListsEveryLayerWithShapeAndCount) {
  Sequential<float> model(4);
  model.add<Dense<float>>(8, Activation::ReLU);
  model.add<BatchNorm<float>>();
  model.add<MaxPool1D<float>>(2);
  model.add<Dense<float>>(3);
  model.add<GlobalAvgPool<float>>();
  const std::string unknown = model.summary();
  // Each row: " index name (describe)", padding, the output shape, padding, the count; in layer order.
  EXPECT_EQ(row(unknown, " 0 dense (Dense(units=8, activation=relu))"), "(None, None, 8)|40");
  EXPECT_EQ(row(unknown, " 1 batch_norm (BatchNorm(momentum=0.1, eps=1e-05))"), "(None, None, 8)|32");  // 16 + 16
  EXPECT_EQ(row(unknown, " 2 max_pool1d (MaxPool1D(size=2, stride=2))"), "(None, None, 8)|0");
  EXPECT_EQ(row(unknown, " 3 dense (Dense(units=3))"), "(None, None, 3)|27");
  EXPECT_EQ(row(unknown, " 4 global_avg_pool (GlobalAvgPool())"), "(None, 1, 3)|0");
  EXPECT_LT(unknown.find(" 0 dense"), unknown.find(" 1 batch_norm"));
  EXPECT_LT(unknown.find(" 3 dense"), unknown.find(" 4 global_avg_pool"));
  EXPECT_TRUE(contains(unknown, " Layer (type) ")) << unknown;
  // Keras' totals: trainable = params(), non-trainable = buffers() (batch-norm running statistics).
  EXPECT_TRUE(contains(unknown, "Total params: 99\nTrainable params: 83\nNon-trainable params: 16\n")) << unknown;
  // With a known number of steps the time dimension is computed through every layer.
  const std::string known = model.summary(10);
  EXPECT_EQ(row(known, " 1 batch_norm"), "(None, 10, 8)|32");
  EXPECT_EQ(row(known, " 2 max_pool1d"), "(None, 5, 8)|0");
  EXPECT_EQ(row(known, " 3 dense"), "(None, 5, 3)|27");
  EXPECT_TRUE(contains(Sequential<float>(3).summary(), "Total params: 0\n"));
}

TEST(Sequential, AddRejectsAMismatchedLayerNamingBothSizes) {
  Sequential<float> model(16);
  model.add<Dense<float>>(32);
  model.add<Dense<float>>(16);
  expect_error<ShapeError>([&] { model.add(std::make_unique<Dense<float>>(32, 8)); },
                           "Sequential: layer 2 Dense(units=8) expects 32 input features but the previous layer "
                           "outputs 16");
  expect_error<ShapeError>([] { Sequential<float>(7).add(std::make_unique<Dense<float>>(5, 2)); },
                           "Sequential: layer 0 Dense(units=2) expects 5 input features but the model input has 7");
  EXPECT_EQ(model.size(), 2);  // the rejected layer was not added
  model.add(std::make_unique<Dense<float>>(16, 8));
  EXPECT_EQ(model.out_features(), 8);
}

TEST(Sequential, EmptyModelAndBadIndexGiveClearErrors) {
  Sequential<double> model(3);
  EXPECT_EQ(model.out_features(), 3);
  expect_error<ConfigError>([&] { model.forward(random_tensor(2, 2, 3, 1)); },
                            "Sequential: forward called on a model with no layers");
  expect_error<ShapeError>([&] { model.layer(0); }, "Sequential: layer index 0 out of range (the model has 0 layers)");
  model.add<Dense<double>>(2);
  expect_error<ConfigError>([&] { model.layer_as<ActivationLayer<double>>(0); }, "layer 0 is Dense(units=2)");
  expect_error<ShapeError>([&] { model.forward(random_tensor(2, 2, 4, 1)); },
                           "Sequential(layers=1): input features expected 3 but got 4");
}

TEST(Sequential, CopiesAreDeepAndIndependent) {
  Sequential<double> model = small_model();
  const auto x = random_tensor(3, 4, 5, 2);
  const Mask mask = Mask::from_lengths({4, 2, 1});
  const Tensor3<double> y0 = model.forward(x, mask, Mode::Infer);

  Sequential<double> copy(model);
  std::unique_ptr<Layer<double>> cloned = model.clone();
  Sequential<double> assigned(2);
  assigned = model;
  for (Layer<double>* m : {static_cast<Layer<double>*>(&copy), cloned.get(), static_cast<Layer<double>*>(&assigned)}) {
    const Tensor3<double>& y = m->forward(x, mask, Mode::Infer);
    for (Index i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], y0.data()[i]);
    for (const auto& p : m->params()) {  // no parameter shared with the original
      for (const auto& q : model.params()) EXPECT_NE(p.value, q.value) << p.name;
      p.values().array() += 0.5;  // changing the copy...
    }
  }
  const Tensor3<double>& y1 = model.forward(x, mask, Mode::Infer);  // ...leaves the original unchanged
  for (Index i = 0; i < y1.size(); ++i) ASSERT_EQ(y1.data()[i], y0.data()[i]);
  EXPECT_NE(copy.forward(x, mask, Mode::Infer)(0, 0, 0), y0(0, 0, 0));
}

TEST(Sequential, BackwardWithStoredInputEqualsBackwardWithExplicitInput) {
  Sequential<double> a = small_model();
  Sequential<double> b(a);
  const auto x = random_tensor(3, 4, 5, 3);
  const auto dy = random_tensor(3, 4, 3, 4);
  const Mask mask = Mask::from_lengths({4, 0, 3});
  a.forward(x, mask, Mode::Train);
  b.forward(x, mask, Mode::Train);
  a.zero_grad();
  b.zero_grad();
  const Tensor3<double> dx_a = a.backward(dy);
  const Tensor3<double> dx_b = b.backward(x, mask, dy);
  for (Index i = 0; i < dx_a.size(); ++i) ASSERT_EQ(dx_a.data()[i], dx_b.data()[i]);
  const auto pa = a.params(), pb = b.params();
  for (size_t k = 0; k < pa.size(); ++k) {
    EXPECT_EQ(pa[k].grads(), pb[k].grads()) << pa[k].name;
    EXPECT_GT(pa[k].grads().cwiseAbs().maxCoeff(), 0.0) << pa[k].name;
  }
  expect_error<ShapeError>([] { small_model().backward(random_tensor(1, 1, 3, 1)); }, "backward called before forward");
}

TEST(Sequential, ChainsMasksThroughTheLayers) {
  Sequential<double> model(3);
  model.add<Dense<double>>(4);
  model.add<MaxPool1D<double>>(2);
  model.add<Dense<double>>(2);
  const Mask mask = Mask::from_lengths({6, 3, 1, 0});
  const auto& y = model.forward(random_tensor(4, 6, 3, 5), mask, Mode::Train);
  EXPECT_EQ(y.dimension(1), 3);
  ASSERT_EQ(model.masks().size(), 4u);
  EXPECT_EQ(model.masks()[0], mask);
  EXPECT_EQ(model.masks()[1], mask);
  EXPECT_EQ(model.masks()[2], Mask::from_lengths({3, 1, 0, 0}));
  EXPECT_EQ(model.output_mask(), Mask::from_lengths({3, 1, 0, 0}));
  EXPECT_EQ(model.out_mask(mask, 6), model.output_mask());
  EXPECT_EQ(model.out_time(6), 3);
  EXPECT_EQ(model.out_time(-1), -1);
}

TEST(Sequential, OutputMaskMayComeFromTheDataOfTheForward) {
  Sequential<double> model(1);
  model.add<Embedding<double>>(10, 4, EmbeddingOptions().mask_zero(true));
  model.add<Dense<double>>(2);
  Tensor3<double> ids(3, 5, 1);
  ids.setValues({{{3}, {1}, {0}, {0}, {0}}, {{2}, {0}, {4}, {5}, {6}}, {{0}, {0}, {0}, {0}, {0}}});
  model.forward(ids, Mask(), Mode::Infer);
  // the zero inside sequence 1 is masked on its own (a step mask, issue 22)
  const Mask want = Mask::from_steps({{1, 1, 0, 0, 0}, {1, 0, 1, 1, 1}, {0, 0, 0, 0, 0}});
  EXPECT_EQ(model.masks()[1], want);
  EXPECT_EQ(model.output_mask(), want);
  // The incoming mask still limits the lengths.
  model.forward(ids, Mask::from_lengths({1, 3, 5}), Mode::Infer);
  EXPECT_EQ(model.output_mask(), Mask::from_steps({{1, 0, 0, 0, 0}, {1, 0, 1, 0, 0}, {0, 0, 0, 0, 0}}));
  // trailing zeros only: lengths
  model.forward(ids, Mask::from_lengths({5, 1, 5}), Mode::Infer);
  EXPECT_EQ(model.output_mask(), Mask::from_lengths({2, 1, 0}));
}

}  // namespace
