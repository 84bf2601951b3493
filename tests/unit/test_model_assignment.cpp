// Assigning models keeps optimizers valid or makes them refuse (issue 19, item 1). Restoring a checkpoint
// by assignment, `best = model; ...; model = best; adam.step()`, was a heap use-after-free: operator= replaced
// the layers whose tensors the optimizer pointed to. Now Sequential::operator= (copy and move) assigns layer by
// layer in place when their shapes match, and an optimizer whose parameters belong to a destroyed or reassigned
// layer throws UsageError at its next step instead of writing into freed memory.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/clip.hpp"
#include "seqattn/optim/sgd.hpp"

using namespace seqattn;

namespace {

constexpr Index kFeatures = 6;

// Dense, Dropout, a Residual around LayerNorm + Dense, a Bidirectional GRU and a transformer block: every
// container kind.
Sequential<float> make_model(std::uint64_t seed, Index units = 8) {
  Sequential<float> m(kFeatures);
  m.add<Dense<float>>(units, DenseOptions().activation(Activation::Tanh).seed(seed));
  m.add<Dropout<float>>(0.25, DropoutOptions().seed(seed + 1));
  auto& r = m.add<Residual<float>>();
  r.body().add<LayerNorm<float>>();
  r.body().add<Dense<float>>(units, DenseOptions().seed(seed + 2));
  m.add<Bidirectional<float>>(4, GRUOptions().return_sequences(true).seed(seed + 3));
  m.add<TransformerEncoderBlock<float>>(2, 16, TransformerEncoderOptions().seed(seed + 4));
  return m;
}

Tensor3<float> input(Index B = 3, Index T = 5) {
  Tensor3<float> x(B, T, kFeatures);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 37 % 23) - 11) / 11.0f;
  return x;
}

std::vector<float> values(Sequential<float>& m) {
  std::vector<float> out;
  for (const auto& list : {m.params(), m.buffers()})
    for (const auto& p : list) out.insert(out.end(), p.value, p.value + p.size());
  return out;
}

std::vector<const float*> addresses(Sequential<float>& m) {
  std::vector<const float*> out;
  for (const auto& p : m.params()) out.push_back(p.value);
  return out;
}

bool same_bits(const Tensor3<float>& a, const Tensor3<float>& b) {
  return a.dimensions() == b.dimensions() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void train_step(Sequential<float>& m, Adam<float>& adam, const Tensor3<float>& x) {
  MeanSquaredError<float> loss;
  const Tensor3<float>& y = m.forward(x, Mask(), Mode::Train);
  Tensor3<float> target(y.dimensions());
  target.setConstant(0.25f);
  loss.forward(y, target);
  adam.zero_grad();
  m.backward(loss.grad());
  adam.step();
}

template <class F>
void expect_usage_error(F&& f, const char* needle) {
  try {
    f();
    ADD_FAILURE() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ModelAssignment, RestoringACheckpointByAssignmentKeepsTheOptimizerValid) {
  const Tensor3<float> x = input();
  Sequential<float> model = make_model(1);
  Adam<float> adam(model.params(), AdamOptions().lr(0.01));
  train_step(model, adam, x);
  Sequential<float> best = model;
  const std::vector<float> best_values = values(best);
  const std::vector<const float*> where = addresses(model);
  train_step(model, adam, x);
  train_step(model, adam, x);
  ASSERT_NE(values(model), best_values);

  model = best;  // restore
  EXPECT_EQ(values(model), best_values);
  EXPECT_EQ(addresses(model), where) << "the tensors the optimizer points to must stay";
  // A copy of best and the restored model are the same model: same predictions, same dropout stream.
  Sequential<float> copy = best;
  EXPECT_TRUE(same_bits(model.predict(x), copy.predict(x)));
  EXPECT_TRUE(same_bits(model.forward(x, Mask(), Mode::Train), copy.forward(x, Mask(), Mode::Train)));

  train_step(model, adam, x);  // was a heap use-after-free
  EXPECT_NE(values(model), best_values) << "the optimizer must update the restored model";
  EXPECT_EQ(values(best), best_values) << "best must not change";
}

TEST(ModelAssignment, MoveAssignmentOfTheSameArchitectureKeepsTheOptimizerValid) {
  const Tensor3<float> x = input();
  Sequential<float> model = make_model(1);
  Adam<float> adam(model.params(), AdamOptions().lr(0.01));
  train_step(model, adam, x);
  Sequential<float> other = make_model(7);
  const std::vector<float> other_values = values(other);
  model = std::move(other);
  EXPECT_EQ(values(model), other_values);
  train_step(model, adam, x);
  EXPECT_NE(values(model), other_values);
}

TEST(ModelAssignment, AssigningAnotherArchitectureMakesTheOptimizerRefuse) {
  const Tensor3<float> x = input();
  Sequential<float> model = make_model(1);
  Adam<float> adam(model.params(), AdamOptions().lr(0.01));
  SGD<float> sgd(model.params(), SGDOptions().lr(0.01));
  train_step(model, adam, x);
  const Sequential<float> wider = make_model(2, 10);  // other shapes in every layer
  model = wider;
  expect_usage_error([&] { adam.step(); }, "no longer exists");
  expect_usage_error([&] { sgd.step(); }, "SGD: parameter '0.dense.W'");
  expect_usage_error([&] { adam.zero_grad(); }, "build the optimizer again");
  expect_usage_error([&] { clip_grad_norm(adam.params(), 1.0f); }, "clip_grad_norm");
  // The model itself is a correct copy, and a new optimizer works.
  Sequential<float> copy = wider;
  EXPECT_TRUE(same_bits(model.predict(x), copy.predict(x)));
  Adam<float> fresh(model.params());
  train_step(model, fresh, x);
}

TEST(ModelAssignment, MoveAssigningAnotherArchitectureMakesTheOptimizerRefuse) {
  Sequential<float> model = make_model(1);
  Adam<float> adam(model.params());
  model = make_model(3, 12);
  expect_usage_error([&] { adam.step(); }, "Adam");
}

TEST(ModelAssignment, AnOptimizerThatOutlivesItsModelRefuses) {
  std::unique_ptr<Adam<float>> adam;
  {
    Sequential<float> model = make_model(1);
    adam = std::make_unique<Adam<float>>(model.params());
  }
  expect_usage_error([&] { adam->step(); }, "no longer exists");
}

TEST(ModelAssignment, OneLayerOfAnotherShapeIsReplacedAndOnlyItsParametersAreRefused) {
  Sequential<float> a(kFeatures), b(kFeatures);
  a.add<Dense<float>>(4, DenseOptions().seed(1));
  a.add<Dense<float>>(3, DenseOptions().seed(2));
  b.add<Dense<float>>(4, DenseOptions().seed(3));
  b.add<Dense<float>>(3, DenseOptions().seed(4).use_bias(false));  // no bias: other buffers and params
  Adam<float> first(a.layer(0).params()), second(a.layer(1).params());
  a = b;
  first.step();  // layer 0 kept its tensors
  expect_usage_error([&] { second.step(); }, "no longer exists");
  EXPECT_EQ(values(a), values(b));
}

TEST(ModelAssignment, AssigningALayerDirectlyInvalidatesItsViewsUnlessThroughAssign) {
  Dense<float> a(kFeatures, 4, DenseOptions().seed(1)), b(kFeatures, 4, DenseOptions().seed(2));
  SGD<float> direct(a.params());
  a = b;  // the layer's own operator=: its tensors may have moved, so views are refused
  expect_usage_error([&] { direct.step(); }, "reassigned");
  SGD<float> kept(a.params());
  Dense<float> c(kFeatures, 4, DenseOptions().seed(3));
  a.assign(c);  // checks that the storage stayed
  kept.step();
  Dense<float> wide(kFeatures, 9);
  a.assign(wide);  // other shapes: storage moves, views refused
  expect_usage_error([&] { kept.step(); }, "reassigned");
  LayerNorm<float> norm(kFeatures);
  EXPECT_THROW(a.assign(norm), ConfigError);
}

TEST(ModelAssignment, NestedContainersAssignedInPlaceKeepEveryView) {
  Sequential<float> model = make_model(1), other = make_model(5);
  Sequential<float> outer(kFeatures), outer_other(kFeatures);
  outer.add(model.clone());
  outer_other.add(other.clone());
  Adam<float> adam(outer.params());
  outer = outer_other;
  adam.step();
  EXPECT_EQ(values(outer), values(outer_other));
}

}  // namespace
