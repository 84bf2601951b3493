// Exception safety of whole models: every error path (bad shapes, bad masks, bad ids, a Mode::Train batch a
// later layer rejects, backward without or against another forward, failed loads) throws a seqattn::Error and
// leaves the model usable and unchanged: every parameter and buffer keeps its bits, the next inference gives
// bitwise the outputs of a copy that never saw the error, and training goes on. The model has one layer of
// every type (tests/support/io_model.hpp); a second one has BatchNorm running statistics before a layer that
// rejects the batch, so a failed Train forward must roll them back.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <sstream>
#include <string>

#include "seqattn/io/weights.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "support/io_model.hpp"
#include "support/property_checks.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

std::vector<float> state(Sequential<float>& m) {
  std::vector<float> out;
  for (const auto& list : {m.params(), m.buffers()})
    for (const auto& p : list) out.insert(out.end(), p.value, p.value + p.size());
  return out;
}

bool same(const Tensor3<float>& a, const Tensor3<float>& b) {
  return a.dimensions() == b.dimensions() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

Sequential<float>* g_model = nullptr;  // when set, expect_error checks the state is unchanged after each error
std::vector<float> g_state;

// f must throw a seqattn::Error whose message contains `part`.
void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
  if (g_model) {
    EXPECT_TRUE(state(*g_model) == g_state) << "the state changed after the error '" << part << "'";
  }
}

// model saw errors, reference did not; both must be equal now and after an inference and a training step.
// same_random_streams: false when a failed Train forward ran a Dropout before the failing layer (its random
// stream advanced, as in any Train forward), so the next Train outputs differ; training must still work.
void expect_unchanged(Sequential<float>& model, Sequential<float>& reference, const Tensor3<float>& x,
                      const Mask& mask, bool same_random_streams = true) {
  ASSERT_EQ(state(model), state(reference)) << "weights or buffers changed";
  EXPECT_TRUE(same(model.predict(x, mask), reference.predict(x, mask)));
  MeanSquaredError<float> loss;
  for (Sequential<float>* m : {&model, &reference}) {
    m->zero_grad();
    const Tensor3<float>& y = m->forward(x, mask, Mode::Train);
    Tensor3<float> target(y.dimension(0), y.dimension(1), y.dimension(2));
    target.setConstant(0.1f);
    loss.forward(y, target, m->output_mask());
    m->backward(loss.grad());
  }
  if (!same_random_streams) {
    EXPECT_EQ(first_non_finite(model.input_grad()), "");
    return;
  }
  EXPECT_TRUE(same(model.output(), reference.output())) << "Train outputs differ";
  EXPECT_TRUE(same(model.input_grad(), reference.input_grad()));
  const auto pm = model.params(), pr = reference.params();
  for (size_t i = 0; i < pm.size(); ++i)
    EXPECT_EQ(std::memcmp(pm[i].grad, pr[i].grad, pm[i].size() * sizeof(float)), 0) << pm[i].name;
}

TEST(ExceptionSafety, EveryForwardAndBackwardErrorLeavesTheModelUnchanged) {
  Sequential<float> model = make_io_model<float>(5);
  const Tensor3<float> x = io_ids<float>(1);
  const Mask mask = Mask::from_lengths({5, 3, 1});
  model.forward(x, mask, Mode::Train);  // state of a used model (BatchNorm statistics moved)
  Sequential<float> reference = model;
  g_model = &model;
  g_state = state(model);

  for (Mode mode : {Mode::Infer, Mode::Train}) {
    SCOPED_TRACE(to_string(mode));
    Tensor3<float> wrong_features(3, kIoSteps, 2);
    wrong_features.setZero();
    expect_error([&] { model.forward(wrong_features, mask, mode); }, "input features expected 1 but got 2");
    Tensor3<float> short_input(3, kIoSteps - 1, 1);
    short_input.setConstant(1.0f);
    expect_error([&] { model.forward(short_input, Mask(), mode); }, "input steps expected 5 but got 4");
    expect_error([&] { model.forward(x, Mask::from_lengths({5, 6, 1}), mode); }, "mask length of sequence 1 is 6");
    expect_error([&] { model.forward(x, Mask::from_lengths({5, 5}), mode); }, "mask");
    Tensor3<float> bad_id = x;
    bad_id(1, 2, 0) = static_cast<float>(kIoVocab);
    expect_error([&] { model.forward(bad_id, mask, mode); }, "id 9 at (1, 2) out of range [0, 9)");
    bad_id(1, 2, 0) = 0.5f;
    expect_error([&] { model.forward(bad_id, mask, mode); }, "is not an integer");
  }
  // backward after a failed forward, with a wrong dy, and with another x.
  Tensor3<float> dy(3, 1, 3);
  dy.setConstant(1.0f);
  expect_error([&] { model.backward(dy); }, "backward called before forward");
  model.forward(x, mask, Mode::Train);
  reference.forward(x, mask, Mode::Train);
  g_state = state(model);  // the Train forwards moved the BatchNorm statistics of both
  Tensor3<float> wrong_dy(3, 1, 4);
  wrong_dy.setZero();
  expect_error([&] { model.backward(wrong_dy); }, "output gradient expected (3, 1, 3) but got (3, 1, 4)");
  Tensor3<float> other_x(2, kIoSteps, 1);
  other_x.setConstant(1.0f);
  expect_error([&] { model.backward(other_x, Mask(), dy); }, "the shape of the last forward");
  // BatchNorm in Train needs two valid steps; the layers before it (Dropout among them) have run when it throws.
  expect_error([&] { model.forward(x, Mask::from_lengths({1, 0, 0}), Mode::Train); }, "BatchNorm");
  g_model = nullptr;
  expect_unchanged(model, reference, x, mask, /*same_random_streams=*/false);
}

TEST(ExceptionSafety, FailedLoadsLeaveTheModelUnchanged) {
  Sequential<float> model = make_io_model<float>(5);
  const Tensor3<float> x = io_ids<float>(2);
  const Mask mask = Mask::from_lengths({5, 2, 4});
  model.forward(x, mask, Mode::Train);
  Sequential<float> reference = model;
  std::stringstream good;
  Sequential<float> donor = make_io_model<float>(6);
  save_weights(donor, good);
  const std::string file = good.str();
  for (const std::string& bad : {file.substr(0, file.size() / 2), file.substr(0, file.size() - 1) + "x",
                                 std::string("not a weights file")}) {
    std::stringstream in(bad);
    EXPECT_THROW(load_weights(model, in), Error);
  }
  std::stringstream other;
  Sequential<float> dense = make_dense_model<float>(1);
  save_weights(dense, other);
  EXPECT_THROW(load_weights(model, other), Error);
  expect_unchanged(model, reference, x, mask);
}

// BatchNorm, then a PositionEmbedding of 4 positions: a Train batch with a valid step at position 4 is rejected
// by the second layer after the first has updated its running statistics; the model rolls them back.
TEST(ExceptionSafety, AFailedTrainForwardRollsBackRunningStatistics) {
  Sequential<float> model(2);
  model.add<BatchNorm<float>>();
  model.add<PositionEmbedding<float>>(4, PositionEmbeddingOptions().seed(1));
  model.add<Dense<float>>(2, DenseOptions().seed(2));
  Sequential<float> nested(2);
  nested.add(model.clone());  // the same inside a nested Sequential
  for (Sequential<float>* m : {&model, &nested}) {
    Sequential<float> reference = *m;
    Tensor3<float> x(2, 6, 2);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 7) - 2.0f;
    expect_error([&] { m->forward(x, Mask::from_lengths({5, 2}), Mode::Train); }, "max_length is 4");
    expect_unchanged(*m, reference, x, Mask::from_lengths({4, 2}));
  }
}

}  // namespace
