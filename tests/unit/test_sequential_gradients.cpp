// Sequential: finite-difference gradient checks in double of whole models (the chain rule through the layers,
// the masks handed from layer to layer, nested models), with masked batches including lengths 0 and 1.
#include <gtest/gtest.h>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

TEST(SequentialGradient, NestedDenseActivationDenseMasked) {
  Sequential<double> inner(4);
  inner.add<Dense<double>>(6, DenseOptions().seed(1));
  inner.add<ActivationLayer<double>>(Activation::Tanh);
  inner.add<Dense<double>>(3, DenseOptions().seed(2));
  Sequential<double> model(5);
  model.add<Dense<double>>(4, DenseOptions().activation(Activation::GELU).seed(3));
  model.add(inner.clone());
  model.add<ActivationLayer<double>>(Activation::Sigmoid);
  const auto result = check_layer_gradients(model, random_tensor(4, 5, 5, 10), Mask::from_lengths({5, 1, 0, 3}));
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(model.params().size(), 6u);
}

TEST(SequentialGradient, UnmaskedSingleNestedModel) {
  Sequential<double> inner(3);
  inner.add<Dense<double>>(4, DenseOptions().seed(4));
  inner.add<ActivationLayer<double>>(Activation::Softmax);
  inner.add<Dense<double>>(2, DenseOptions().seed(5));
  Sequential<double> model(3);
  model.add(inner.clone());
  const auto result = check_layer_gradients(model, random_tensor(2, 3, 3, 11));
  EXPECT_TRUE(result.passed()) << result.report();
}

// Pooling shortens the sequences and their mask; the layers after it must get the new mask.
TEST(SequentialGradient, MasksChangedByALayerReachTheNextLayers) {
  Sequential<double> model(3);
  model.add<Dense<double>>(4, DenseOptions().activation(Activation::Tanh).seed(6));
  model.add<AvgPool1D<double>>(2);
  model.add<Dense<double>>(4, DenseOptions().seed(7));
  model.add<GlobalMaxPool<double>>();  // over the pooled valid steps only
  model.add<Dense<double>>(2, DenseOptions().seed(8));
  const Mask mask = Mask::from_lengths({6, 1, 0, 4, 3});
  const auto x = random_tensor(5, 6, 3, 12);
  const auto result = check_layer_gradients(model, x, mask);
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(model.masks()[3], Mask::from_lengths({3, 0, 0, 2, 1}));
  // Padded input steps get no gradient.
  model.forward(x, mask, Mode::Train);
  const auto& dx = model.backward(random_tensor(5, 1, 2, 13));
  for (Index b = 0; b < 5; ++b)
    for (Index t = 0; t < 6; ++t)
      for (Index f = 0; f < 3; ++f)
        if (t >= mask.length(b, 6)) {
          EXPECT_EQ(dx(b, t, f), 0.0) << b << "," << t;
        }
}

}  // namespace
