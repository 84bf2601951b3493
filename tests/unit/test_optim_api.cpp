// Optimizer behaviour beyond the PyTorch trajectories: one step() over N tensors equals N single-tensor
// optimizers (the step counter advances once per step(), not once per tensor), zero_grad, set_lr, and the
// ConfigError messages for invalid options and parameter lists.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <functional>

#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/sgd.hpp"

using namespace seqattn;

namespace {

// Three tensors of different sizes with deterministic values and per-step gradients.
struct Tensors {
  std::vector<Vector<double>> values, grads;
  Tensors() {
    for (int t = 0; t < 3; ++t) {
      Vector<double> v(2 + 3 * t);
      for (Index i = 0; i < v.size(); ++i) v(i) = std::cos(0.9 * i + t);
      values.push_back(v);
      grads.push_back(Vector<double>::Zero(v.size()));
    }
  }
  ParamList<double> all() {
    ParamList<double> list;
    for (size_t t = 0; t < values.size(); ++t) list.push_back(one(t));
    return list;
  }
  Param<double> one(size_t t) { return vector_param<double>("p" + std::to_string(t), values[t], &grads[t]); }
  void set_gradients(int step) {
    for (size_t t = 0; t < values.size(); ++t)
      for (Index i = 0; i < values[t].size(); ++i) grads[t](i) = values[t](i) + std::sin(0.3 * step + i - 2.0 * t);
  }
};

template <class Opt, class Options>
void expect_joint_equals_separate(const Options& options) {
  Tensors joint, separate;
  Opt joint_opt(joint.all(), options);
  std::vector<Opt> separate_opts;
  for (size_t t = 0; t < separate.values.size(); ++t)
    separate_opts.emplace_back(ParamList<double>{separate.one(t)}, options);
  for (int step = 1; step <= 5; ++step) {
    joint.set_gradients(step);
    separate.set_gradients(step);
    joint_opt.step();
    for (auto& opt : separate_opts) opt.step();
  }
  EXPECT_EQ(joint_opt.step_count(), 5);
  for (size_t t = 0; t < joint.values.size(); ++t) {
    EXPECT_EQ(joint.values[t], separate.values[t]) << "tensor " << t;  // bit-identical
    EXPECT_GT((joint.values[t] - Tensors().values[t]).cwiseAbs().minCoeff(), 1e-4) << "tensor " << t << " moved";
  }
}

TEST(Optimizers, OneStepOverNTensorsEqualsNSingleTensorSteps) {
  expect_joint_equals_separate<Adam<double>>(AdamOptions().lr(0.01));
  expect_joint_equals_separate<Adam<double>>(AdamOptions().lr(0.01).weight_decay(0.1));
  expect_joint_equals_separate<Adam<double>>(AdamOptions().lr(0.01).weight_decay(0.1).decoupled_weight_decay(true));
  expect_joint_equals_separate<Adam<double>>(AdamOptions().lr(0.01).amsgrad(true));
  expect_joint_equals_separate<SGD<double>>(SGDOptions().lr(0.05).momentum(0.9).nesterov(true));
}

TEST(Optimizers, ZeroGradAndLearningRate) {
  Tensors t;
  Adam<double> adam(t.all(), AdamOptions().lr(0.5));
  t.set_gradients(1);
  adam.zero_grad();
  for (const auto& g : t.grads) EXPECT_EQ(g.cwiseAbs().maxCoeff(), 0.0);
  EXPECT_EQ(adam.lr(), 0.5);
  adam.set_lr(0.25);
  EXPECT_EQ(adam.lr(), 0.25);
  // The first Adam step moves every coordinate with a nonzero gradient by exactly lr (m / sqrt(v) = sign(g)).
  const Vector<double> before = t.values[1];
  t.set_gradients(1);
  adam.step();
  for (Index i = 0; i < before.size(); ++i) EXPECT_NEAR(std::abs(t.values[1](i) - before(i)), 0.25, 1e-7);
  EXPECT_EQ(adam.exp_avg(1).size(), before.size());

  SGD<double> sgd(t.all(), SGDOptions().lr(0.1));
  sgd.set_lr(0.2);
  EXPECT_EQ(sgd.lr(), 0.2);
  t.grads[0].setOnes();
  const Vector<double> b0 = t.values[0];
  sgd.step();
  EXPECT_TRUE(t.values[0].isApprox((b0.array() - 0.2).matrix(), 1e-15));
}

void expect_config_error(const std::function<void()>& f, const std::string& message) {
  try {
    f();
    FAIL() << "expected ConfigError with: " << message;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

TEST(Optimizers, InvalidOptionsThrowConfigErrorNamingTheOptimizer) {
  Tensors t;
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().lr(-1)); }, "Adam: lr must be a finite number >= 0 but got -1");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().beta1(1.0)); },
                      "Adam: beta1 must be in [0, 1) but got 1");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().beta2(-0.5)); },
                      "Adam: beta2 must be in [0, 1) but got -0.5");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().eps(-1e-8)); },
                      "Adam: eps must be a finite number >= 0 but got -1e-08");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().weight_decay(-0.1).decoupled_weight_decay(true)); },
                      "AdamW: weight_decay must be a finite number >= 0 but got -0.1");
  expect_config_error([&] { Adam<double>(t.all()).set_lr(-2); }, "Adam: lr must be a finite number >= 0 but got -2");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().momentum(-0.9)); },
                      "SGD: momentum must be a finite number >= 0 but got -0.9");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().dampening(1.5)); },
                      "SGD: dampening must be in [0, 1] but got 1.5");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().nesterov(true)); },
                      "SGD: nesterov momentum requires momentum > 0 and dampening 0 but got momentum 0");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().momentum(0.9).dampening(0.1).nesterov(true)); },
                      "and dampening 0.1");
}

// Issue 19, item 9: Adam(lr = inf) was accepted and turned every weight into NaN at the first step.
TEST(Optimizers, NonFiniteOptionsThrowConfigError) {
  Tensors t;
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().lr(inf)); }, "Adam: lr must be a finite number >= 0 but got inf");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().lr(nan)); }, "Adam: lr must be a finite number >= 0 but got nan");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().eps(inf)); }, "Adam: eps must be a finite number");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().weight_decay(inf)); }, "Adam: weight_decay must be a finite");
  expect_config_error([&] { Adam<double>(t.all(), AdamOptions().beta1(nan)); }, "Adam: beta1 must be in [0, 1)");
  expect_config_error([&] { Adam<double>(t.all()).set_lr(inf); }, "Adam: lr must be a finite number >= 0 but got inf");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().lr(inf)); }, "SGD: lr must be a finite number");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().momentum(inf)); }, "SGD: momentum must be a finite");
  expect_config_error([&] { SGD<double>(t.all(), SGDOptions().weight_decay(nan)); }, "SGD: weight_decay must be a finite");
  expect_config_error([&] { SGD<double>(t.all()).set_lr(-inf); }, "SGD: lr must be a finite number >= 0 but got -inf");
}

TEST(Optimizers, InvalidParameterListsThrowConfigError) {
  Tensors t;
  expect_config_error([&] { Adam<double>(ParamList<double>{}); }, "Adam: got an empty parameter list");
  ParamList<double> dup = t.all();
  dup.push_back(t.one(1));
  expect_config_error([&] { Adam<double>{dup}; }, "Adam: parameter 3 'p1' appears twice in the list (also at 1)");
  Vector<double> stats = Vector<double>::Zero(3);
  ParamList<double> with_buffer = t.all();
  with_buffer.push_back(vector_param<double>("running_mean", stats, nullptr));
  expect_config_error([&] { SGD<double>{with_buffer}; },
                      "SGD: parameter 3 'running_mean' has no gradient (buffers are not trained)");
}

}  // namespace
