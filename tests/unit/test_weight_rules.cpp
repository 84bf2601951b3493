// Weight rules (core/weight_rules.hpp, core/layer.hpp): L1/L2 regularizers by role, Keras constraints applied by
// the optimizers after each step, frozen layers, the rules in model-file entries, and their errors.
//   - regularization_loss() = hand-computed l1 sum|w| + l2 sum w^2 per role, and its gradient by finite differences,
//     on Dense, Conv1D, LSTM, Embedding, MultiHeadAttention and through Sequential / Residual (counted once);
//   - constraints after an SGD and an Adam step: exactly the projection computed here (Keras's formulas, eps 1e-7),
//     and a literal example;
//   - frozen: gradients untouched, dx unchanged, no update and no moment change, the other layers train;
//   - layer_entry / build_layer keep the rules; errors name the layer and the value.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/sgd.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::random_tensor;

namespace {

// Distinct l1, l2 per role so a penalty applied to the wrong role shows.
L1L2 reg_for(ParamRole role) {
  const double k = 1.0 + static_cast<double>(role);
  return L1L2{0.01 * k, 0.03 * k};
}

// The penalty computed here from the parameter values and roles.
double expected_penalty(Layer<double>& layer) {
  double total = 0.0;
  for (const auto& p : layer.params()) {
    const L1L2 r = reg_for(p.role);
    for (Index k = 0; k < p.size(); ++k) total += r.l1 * std::abs(p.value[k]) + r.l2 * p.value[k] * p.value[k];
  }
  return total;
}

// Sets reg_for(role) on every role the layer has.
void regularize_all(Layer<double>& layer) {
  for (const auto& p : layer.params()) layer.set_regularizer(p.role, reg_for(p.role));
}

// Finite differences of L = sum(y R) + regularization_loss() over every parameter (inputs not perturbed: ids).
void expect_param_gradients(Layer<double>& layer, const Tensor3<double>& x) {
  const Tensor3<double>& y0 = layer.forward(x, Mask(), Mode::Train);
  const Tensor3<double> R = random_tensor(y0.dimension(0), y0.dimension(1), y0.dimension(2), 99);
  auto loss = [&] {
    const Tensor3<double>& y = layer.forward(x, Mask(), Mode::Train);
    double l = layer.regularization_loss();
    for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * R.data()[i];
    return l;
  };
  loss();
  layer.zero_grad();
  layer.backward(x, Mask(), R);
  ParamList<double> params = layer.params();
  std::vector<std::vector<double>> grads;
  for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
  std::vector<GradTarget> targets;
  for (size_t k = 0; k < params.size(); ++k)
    targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
  const auto result = check_gradients(loss, targets, {});
  EXPECT_TRUE(result.passed()) << layer.describe() << ": " << result.worst;
}

void expect_regularized(Layer<double>& layer, const Tensor3<double>& x, const std::vector<ParamRole>& roles) {
  std::vector<ParamRole> have;
  for (const auto& p : layer.params()) have.push_back(p.role);
  for (const ParamRole role : roles)
    EXPECT_NE(std::find(have.begin(), have.end(), role), have.end()) << layer.describe() << " " << to_string(role);
  EXPECT_EQ(layer.regularization_loss(), 0.0);
  regularize_all(layer);
  const double expected = expected_penalty(layer);
  EXPECT_GT(expected, 0.0);
  EXPECT_NEAR(layer.regularization_loss(), expected, 1e-12 * expected) << layer.describe();
  expect_param_gradients(layer, x);
}

TEST(WeightRulesRegularizers, PenaltyAndGradientPerRoleOnEveryLayerType) {
  const Tensor3<double> x = random_tensor(2, 5, 4, 7);
  Dense<double> dense(4, 3, DenseOptions().seed(1));
  expect_regularized(dense, x, {ParamRole::Kernel, ParamRole::Bias});
  const auto dense_check = check_layer_gradients(dense, x);
  EXPECT_TRUE(dense_check.passed()) << dense_check.worst;

  Conv1D<double> conv(4, 3, 2, Conv1DOptions().seed(2));
  expect_regularized(conv, x, {ParamRole::Kernel, ParamRole::Bias});

  LSTM<double> lstm(4, 3, LSTMOptions().return_sequences(true).seed(3));
  expect_regularized(lstm, x, {ParamRole::Kernel, ParamRole::Recurrent, ParamRole::Bias});

  MultiHeadAttention<double> mha(4, 2, MultiHeadAttentionOptions().seed(4));
  expect_regularized(mha, x, {ParamRole::Kernel, ParamRole::Bias});

  Embedding<double> emb(1, 6, 3, EmbeddingOptions().seed(5));
  Tensor3<double> ids(2, 4, 1);
  const double id_values[] = {1, 2, 5, 0, 3, 3, 4, 1};
  for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = id_values[i];
  expect_regularized(emb, ids, {ParamRole::Embeddings});
}

TEST(WeightRulesRegularizers, SequentialAndResidualCountEachLayerOnce) {
  Sequential<double> model(4);
  auto& first = model.add<Dense<double>>(5, DenseOptions().seed(11));
  Sequential<double> body(5);
  auto& inner = body.add<Dense<double>>(5, DenseOptions().seed(12));
  model.add<Residual<double>>(std::move(body));
  auto& last = model.add<LSTM<double>>(3, LSTMOptions().return_sequences(true).seed(13));
  first.set_regularizer(ParamRole::Kernel, reg_for(ParamRole::Kernel));
  inner.set_regularizer(ParamRole::Bias, L1L2{0.5, 0.25});
  last.set_regularizer(ParamRole::Recurrent, reg_for(ParamRole::Recurrent));
  const double expected = first.weight_penalty() + model.layer(1).regularization_loss() + last.weight_penalty();
  double by_hand = 0.0;
  for (const auto& p : model.params()) {
    const L1L2 r = p.regularizer();
    for (Index k = 0; k < p.size(); ++k) by_hand += r.l1 * std::abs(p.value[k]) + r.l2 * p.value[k] * p.value[k];
  }
  EXPECT_GT(by_hand, 0.0);
  EXPECT_NEAR(model.regularization_loss(), by_hand, 1e-12 * by_hand);
  EXPECT_NEAR(expected, by_hand, 1e-12 * by_hand);
  EXPECT_EQ(model.weight_penalty(), 0.0);  // the container owns no parameter
  const auto result = check_layer_gradients(model, random_tensor(2, 4, 4, 3));
  EXPECT_TRUE(result.passed()) << result.worst;
}

// Keras's projection computed here on a (rows, cols) row-major matrix or a vector (cols = 1, axis 0).
std::vector<double> project(std::vector<double> w, Index rows, Index cols, const Constraint& c) {
  if (c.kind == Constraint::Kind::NonNeg) {
    for (double& v : w) v = v >= 0.0 ? v : 0.0;
    return w;
  }
  const bool per_column = c.axis == 0;
  const Index groups = per_column ? cols : rows, length = per_column ? rows : cols;
  for (Index g = 0; g < groups; ++g) {
    auto at = [&](Index i) -> double& { return per_column ? w[i * cols + g] : w[g * cols + i]; };
    double sum = 0.0;
    for (Index i = 0; i < length; ++i) sum += at(i) * at(i);
    const double n = std::sqrt(sum);
    double desired = n;
    if (c.kind == Constraint::Kind::MaxNorm) desired = std::min(std::max(n, 0.0), c.max_value);
    if (c.kind == Constraint::Kind::UnitNorm) desired = 1.0;
    if (c.kind == Constraint::Kind::MinMaxNorm)
      desired = c.rate * std::min(std::max(n, c.min_value), c.max_value) + (1.0 - c.rate) * n;
    for (Index i = 0; i < length; ++i) at(i) = at(i) * (desired / (1e-7 + n));
  }
  return w;
}

std::vector<double> values(const Param<double>& p) { return {p.value, p.value + p.size()}; }

void expect_same(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-15 * (1.0 + std::abs(b[i]))) << what << " " << i;
}

// One optimizer step on a constrained layer and on an unconstrained copy: the first is the projection of the second.
template <class Optimizer, class L, class O>
void expect_projected_step(L& layer, ParamRole role, const Constraint& c, const O& options, const Tensor3<double>& x) {
  L free_copy = layer;
  layer.set_constraint(role, c);
  for (L* l : {&layer, &free_copy}) {
    const Tensor3<double>& y = l->forward(x, Mask(), Mode::Train);
    l->zero_grad();
    l->backward(x, Mask(), y);  // loss sum(y^2) / 2
  }
  Optimizer constrained(layer.params(), options), plain(free_copy.params(), options);
  constrained.step();
  plain.step();
  ParamList<double> got = layer.params(), free = free_copy.params();
  for (size_t i = 0; i < got.size(); ++i) {
    const std::string what = layer.describe() + " " + got[i].name + " " + c.describe();
    if (got[i].role != role) {
      expect_same(values(got[i]), values(free[i]), what + " (not constrained)");
      continue;
    }
    const Index rows = got[i].shape[0], cols = got[i].shape.size() == 2 ? got[i].shape[1] : 1;
    expect_same(values(got[i]), project(values(free[i]), rows, cols, c), what);
  }
}

TEST(WeightRulesConstraints, SgdAndAdamStepsGiveTheKerasProjection) {
  const Tensor3<double> x = random_tensor(2, 5, 4, 21);
  const std::vector<Constraint> kinds = {Constraint::max_norm(0.3),
                                         Constraint::max_norm(0.2, 1),
                                         Constraint::non_neg(),
                                         Constraint::unit_norm(),
                                         Constraint::unit_norm(1),
                                         Constraint::min_max_norm(0.5, 0.6, 0.5),
                                         Constraint::min_max_norm(2.0, 3.0, 1.0, 1)};
  for (const Constraint& c : kinds) {
    Dense<double> dense(4, 3, DenseOptions().seed(31).bias_init(Init::uniform(-1, 1)));
    expect_projected_step<SGD<double>>(dense, ParamRole::Kernel, c, SGDOptions().lr(0.1).momentum(0.9), x);
    Dense<double> dense2(4, 3, DenseOptions().seed(32).bias_init(Init::uniform(-1, 1)));
    expect_projected_step<Adam<double>>(dense2, ParamRole::Kernel, c, AdamOptions().lr(0.05), x);
    LSTM<double> lstm(4, 2, LSTMOptions().return_sequences(true).seed(33));
    expect_projected_step<Adam<double>>(lstm, ParamRole::Recurrent, c, AdamOptions().lr(0.05), x);
    Conv1D<double> conv(4, 3, 2, Conv1DOptions().seed(34));
    expect_projected_step<SGD<double>>(conv, ParamRole::Kernel, c, SGDOptions().lr(0.1), x);
  }
  // Vectors: axis 0 is the whole vector's norm.
  for (const Constraint& c : {Constraint::max_norm(0.1), Constraint::non_neg(), Constraint::unit_norm()}) {
    Dense<double> dense(4, 3, DenseOptions().seed(35).bias_init(Init::uniform(-1, 1)));
    expect_projected_step<SGD<double>>(dense, ParamRole::Bias, c, SGDOptions().lr(0.1), x);
  }
}

TEST(WeightRulesConstraints, LiteralKerasExample) {
  // W (in 2, units 2) = [[3, 0], [4, 1]]: column norms 5 and 1. MaxNorm(2, axis 0): w * clip(n, 0, 2) / (1e-7 + n).
  Dense<double> dense(2, 2, DenseOptions().use_bias(false));
  dense.kernel() << 3, 0, 4, 1;
  dense.set_constraint(ParamRole::Kernel, Constraint::max_norm(2.0));
  SGD<double> sgd(dense.params(), SGDOptions().lr(0.0));
  sgd.step();
  EXPECT_DOUBLE_EQ(dense.kernel()(0, 0), 3.0 * (2.0 / (1e-7 + 5.0)));
  EXPECT_DOUBLE_EQ(dense.kernel()(1, 0), 4.0 * (2.0 / (1e-7 + 5.0)));
  EXPECT_DOUBLE_EQ(dense.kernel()(1, 1), 1.0 * (1.0 / (1e-7 + 1.0)));
  EXPECT_EQ(dense.kernel()(0, 1), 0.0);
  // Embedding, UnitNorm(axis 1): every token vector (row) of norm n gets norm n / (1e-7 + n).
  Embedding<double> emb(1, 4, 3, EmbeddingOptions().seed(3));
  emb.set_constraint(ParamRole::Embeddings, Constraint::unit_norm(1));
  ParamList<double> p = emb.params();
  auto row_norm = [&](Index r) {
    double sum = 0.0;
    for (Index c = 0; c < 3; ++c) sum += p[0].value[r * 3 + c] * p[0].value[r * 3 + c];
    return std::sqrt(sum);
  };
  std::vector<double> before;
  for (Index r = 0; r < 4; ++r) before.push_back(row_norm(r));
  Adam<double> adam(emb.params(), AdamOptions().lr(0.0));
  adam.step();
  for (Index r = 0; r < 4; ++r) EXPECT_NEAR(row_norm(r), before[r] / (1e-7 + before[r]), 1e-14) << r;
}

TEST(WeightRulesFrozen, NoUpdateGradientUntouchedDxRight) {
  const Tensor3<double> x = random_tensor(2, 5, 4, 41);
  Dense<double> frozen(4, 3, DenseOptions().seed(42)), live(4, 3, DenseOptions().seed(42));
  frozen.set_regularizer(ParamRole::Kernel, L1L2{0.1, 0.1});
  live.set_regularizer(ParamRole::Kernel, L1L2{0.1, 0.1});
  frozen.set_trainable(false);
  EXPECT_FALSE(frozen.trainable());
  for (const auto& p : frozen.params()) {
    EXPECT_FALSE(p.trainable());
    p.grads().setConstant(0.5);  // an earlier gradient: backward must leave it as it is
  }
  const Tensor3<double> dy = random_tensor(2, 5, 3, 43);
  frozen.forward(x, Mask(), Mode::Train);
  live.forward(x, Mask(), Mode::Train);
  const Tensor3<double> dx_frozen = frozen.backward(x, Mask(), dy);
  const Tensor3<double>& dx_live = live.backward(x, Mask(), dy);
  for (Index i = 0; i < dx_live.size(); ++i) EXPECT_EQ(dx_frozen.data()[i], dx_live.data()[i]);
  for (const auto& p : frozen.params())
    for (Index k = 0; k < p.size(); ++k) EXPECT_EQ(p.grad[k], 0.5) << p.name;
  const Matrix<double> before = frozen.kernel();
  Adam<double> adam(frozen.params(), AdamOptions().lr(0.1).weight_decay(0.1));
  SGD<double> sgd(frozen.params(), SGDOptions().lr(0.1).momentum(0.9));
  adam.step();
  sgd.step();
  EXPECT_TRUE(frozen.kernel() == before);
  EXPECT_EQ(adam.exp_avg(0).cwiseAbs().sum(), 0.0);
  EXPECT_EQ(adam.exp_avg_sq(0).cwiseAbs().sum(), 0.0);
  EXPECT_EQ(sgd.momentum_buffer(0).cwiseAbs().sum(), 0.0);
  // Unfrozen again: the optimizers read the rules live and train it.
  frozen.set_trainable(true);
  sgd.step();
  EXPECT_FALSE(frozen.kernel() == before);
}

// The backward keeps views of the layer's own parameters (core/layer.hpp: OwnView); an assignment that moves the
// tensors (other shapes) must make it take them again: the penalty and its gradient follow the new weights.
TEST(WeightRulesRegularizers, PenaltyFollowsAnAssignmentThatMovesTheTensors) {
  Dense<double> layer(4, 3, DenseOptions().seed(71));
  regularize_all(layer);
  const Tensor3<double> x = random_tensor(2, 3, 4, 72);
  layer.forward(x, Mask(), Mode::Train);
  layer.backward(x, Mask(), random_tensor(2, 3, 3, 73));  // takes the views of the (4, 3) kernel
  EXPECT_NEAR(layer.weight_penalty(), expected_penalty(layer), 1e-12);
  Dense<double> wider(4, 9, DenseOptions().seed(74));
  regularize_all(wider);  // an assignment copies the rules too
  layer = wider;          // a (4, 9) kernel: new storage
  EXPECT_NEAR(layer.weight_penalty(), expected_penalty(layer), 1e-12);
  layer.zero_grad();
  layer.forward(x, Mask(), Mode::Train);
  Tensor3<double> zero_dy(2, 3, 9);
  zero_dy.setZero();
  layer.backward(x, Mask(), zero_dy);
  for (const auto& p : layer.params()) {  // with dy = 0 the gradient is the penalty's alone
    const L1L2 r = reg_for(p.role);
    for (Index k = 0; k < p.size(); ++k) {
      const double w = p.value[k], sign = w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0);
      EXPECT_NEAR(p.grad[k], r.l1 * sign + 2.0 * r.l2 * w, 1e-12) << p.name << " " << k;
    }
  }
  EXPECT_NEAR(layer.weight_penalty(), expected_penalty(layer), 1e-12);
}

TEST(WeightRulesFrozen, SequentialWithOneFrozenLayerTrainsTheOthers) {
  Sequential<double> model(4);
  auto& a = model.add<Dense<double>>(6, DenseOptions().activation(Activation::Tanh).seed(51));
  auto& b = model.add<Dense<double>>(2, DenseOptions().seed(52));
  a.set_trainable(false);
  const Matrix<double> a_before = a.kernel(), b_before = b.kernel();
  const Tensor3<double> x = random_tensor(3, 4, 4, 53);
  Adam<double> adam(model.params(), AdamOptions().lr(0.05));
  double first_loss = 0.0, loss = 0.0;
  for (int step = 0; step < 20; ++step) {
    const Tensor3<double>& y = model.forward(x, Mask(), Mode::Train);
    loss = 0.0;
    for (Index i = 0; i < y.size(); ++i) loss += 0.5 * (y.data()[i] - 1.0) * (y.data()[i] - 1.0);
    if (step == 0) first_loss = loss;
    Tensor3<double> dy = y;
    for (Index i = 0; i < dy.size(); ++i) dy.data()[i] -= 1.0;
    model.zero_grad();
    model.backward(dy);
    for (const auto& p : a.params()) EXPECT_EQ(p.grads().cwiseAbs().sum(), 0.0);
    adam.step();
  }
  EXPECT_TRUE(a.kernel() == a_before);
  EXPECT_FALSE(b.kernel() == b_before);
  EXPECT_LT(loss, 0.5 * first_loss);
  // summary() counts the frozen layer's parameters as non-trainable, as Keras does.
  EXPECT_NE(model.summary().find("Trainable params: 14\n"), std::string::npos) << model.summary();
  EXPECT_NE(model.summary().find("Non-trainable params: 30\n"), std::string::npos) << model.summary();
  // A container freezes all its children (Keras), and unfreezes them.
  model.set_trainable(false);
  for (const auto& p : model.params()) EXPECT_FALSE(p.trainable()) << p.name;
  EXPECT_FALSE(b.trainable());
  model.set_trainable(true);
  EXPECT_TRUE(a.trainable());
}

TEST(WeightRulesConfig, EntriesKeepTheRulesAndCopiesToo) {
  Sequential<double> model(4);
  auto& dense = model.add<Dense<double>>(3, DenseOptions().seed(61));
  auto& lstm = model.add<LSTM<double>>(2, LSTMOptions().return_sequences(true).seed(62));
  model.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().units(3).kernel_regularizer({0.0, 0.01}).seed(63));
  dense.set_regularizer(ParamRole::Kernel, L1L2{0.001, 0.002});
  dense.set_constraint(ParamRole::Bias, Constraint::non_neg());
  dense.set_trainable(false);
  lstm.set_constraint(ParamRole::Recurrent, Constraint::min_max_norm(0.1, 0.9, 0.5, 1));
  lstm.set_constraint(ParamRole::Kernel, Constraint::max_norm(1.5));
  const Config entry = layer_entry(model);
  const auto rebuilt = build_layer<double>(entry, 4);
  EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
  auto& copy = static_cast<Sequential<double>&>(*rebuilt);
  for (Index i = 0; i < model.size(); ++i)
    EXPECT_TRUE(copy.layer(i).weight_rules() == model.layer(i).weight_rules()) << i;
  EXPECT_FALSE(copy.layer(0).trainable());
  EXPECT_EQ(copy.layer(2).weight_rules().regularizer(ParamRole::Kernel), (L1L2{0.0, 0.01}));
  const auto* rules = entry.find("config")->find("layers")->elements()[0].find("weight_rules");
  ASSERT_NE(rules, nullptr);
  EXPECT_EQ(rules->dump(), R"({"trainable":false,"kernel_regularizer":{"l1":0.001,"l2":0.002},)"
                           R"("bias_constraint":{"class_name":"NonNeg"}})");
  // Default rules write nothing: entries of models without rules are as before.
  EXPECT_EQ(layer_entry(Dense<double>(4, 3, DenseOptions().seed(1))).find("weight_rules"), nullptr);
  // Copies and clones keep them.
  Sequential<double> copied = model;
  EXPECT_TRUE(copied.layer(1).weight_rules() == lstm.weight_rules());
  EXPECT_TRUE(model.clone()->params()[0].trainable() == false);
  // Keras's nested form is read too.
  Config keras_rules = Config::object();
  Config reg = Config::object(), reg_config = Config::object();
  reg_config.set("l2", 0.5);
  reg.set("class_name", "L2");
  reg.set("config", reg_config);
  keras_rules.set("kernel_regularizer", reg);
  Config con = Config::object(), con_config = Config::object();
  con_config.set("max_value", 2.5);
  con_config.set("axis", 0);
  con.set("module", "keras.constraints");
  con.set("class_name", "MaxNorm");
  con.set("config", con_config);
  con.set("registered_name", nullptr);
  keras_rules.set("kernel_constraint", con);
  const WeightRules read = read_weight_rules(keras_rules, "test");
  EXPECT_EQ(read.regularizer(ParamRole::Kernel), (L1L2{0.0, 0.5}));
  EXPECT_EQ(read.constraint(ParamRole::Kernel), Constraint::max_norm(2.5, 0));
}

template <class F>
void expect_config_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no ConfigError; expected one with " << parts[0];
  } catch (const ConfigError& e) {
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(WeightRulesErrors, NameTheLayerAndTheValue) {
  Dense<double> dense(4, 3, DenseOptions().seed(71));
  expect_config_error(
      [&] {
        dense.set_regularizer(ParamRole::Kernel, L1L2{-1.0, 0.0});
      },
      {"Dense(units=3)", "kernel_regularizer l1", "-1"});
  expect_config_error([&] { dense.set_regularizer(ParamRole::Bias, L1L2{0.0, NAN}); }, {"Dense(units=3)", "l2", "nan"});
  expect_config_error([&] { dense.set_constraint(ParamRole::Kernel, Constraint::max_norm(0.0)); },
                      {"Dense(units=3)", "kernel_constraint MaxNorm max_value", "> 0", "but got 0"});
  expect_config_error([&] { dense.set_constraint(ParamRole::Kernel, Constraint::min_max_norm(2.0, 1.0)); },
                      {"Dense(units=3)", "MinMaxNorm", "min_value 2", "but got 1"});
  expect_config_error([&] { dense.set_constraint(ParamRole::Kernel, Constraint::min_max_norm(0.0, 1.0, 1.5)); },
                      {"rate", "1.5"});
  expect_config_error(
      [&] {
        dense.set_regularizer(ParamRole::Embeddings, L1L2{0.1, 0.0});
      },
      {"Dense(units=3)", "no embeddings parameter", "W kernel", "b bias"});
  expect_config_error([&] { dense.set_constraint(ParamRole::Bias, Constraint::unit_norm(1)); },
                      {"Dense(units=3)", "axis 1", "b", "(3,)"});
  expect_config_error([&] { dense.set_constraint(ParamRole::Kernel, Constraint::unit_norm(3)); }, {"axis", "3"});
  Dense<double> no_bias(4, 3, DenseOptions().use_bias(false));
  expect_config_error([&] { no_bias.set_constraint(ParamRole::Bias, Constraint::non_neg()); }, {"no bias parameter"});
  Sequential<double> model(4);
  model.add<Dense<double>>(3);
  expect_config_error(
      [&] {
        model.set_regularizer(ParamRole::Kernel, L1L2{0.1, 0.0});
      },
      {"Sequential(layers=1)", "no kernel parameter", "none"});
  // Nothing changed by the refused calls.
  EXPECT_TRUE(dense.weight_rules() == WeightRules());
  // Model-file entries: a bad value or an unknown key names the layer class.
  Config entry = layer_entry(dense);
  Config rules = Config::object();
  Config bad = Config::object();
  bad.set("class_name", "MaxNorm");
  bad.set("max_value", -2.0);
  rules.set("kernel_constraint", bad);
  entry.set("weight_rules", rules);
  expect_config_error([&] { build_layer<double>(entry, 4); }, {"Dense(units=3)", "max_value", "-2"});
  rules = Config::object();
  rules.set("kernel_regulariser", Config::object());
  entry.set("weight_rules", rules);
  expect_config_error([&] { build_layer<double>(entry, 4); },
                      {"Dense weight_rules", "unknown option 'kernel_regulariser'"});
}

}  // namespace
