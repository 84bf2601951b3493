// The experiments of the time-series classifier example at small size (fixed seeds, about a second each):
// task 1 is learned; task 2 needs the positional encoding (without it the model is permutation invariant
// over time and stays at chance); in task 3 the attention finds the one step that decides the class.
#include <gtest/gtest.h>

#include <algorithm>

#include "time_series_classifier/data.hpp"
#include "time_series_classifier/model.hpp"
#include "time_series_classifier/train.hpp"

using namespace tsc;

namespace {

struct Result {
  Evaluation eval;
  StepAttention signal;  // task 3 only
};

ModelConfig small_config(Pooling pooling, bool positional) {
  ModelConfig c;
  c.features = 1;
  c.classes = 2;
  c.d_model = 32;
  c.heads = 1;
  c.pooling = pooling;
  c.positional = positional;
  c.seed = 3;
  return c;
}

Result run(Task task, const ModelConfig& config, Index epochs, Index n_train = 1000, Index n_test = 300) {
  const Index T = 20;
  const Dataset train_set = make_task(task, n_train, T, 11), test_set = make_task(task, n_test, T, 12);
  Classifier model(config);
  TrainOptions options;
  options.epochs = epochs;
  options.lr = 3e-3;
  options.seed = 5;
  train(model, train_set, options);
  Result r{evaluate(model.net(), test_set), {}};
  if (task == Task::Signal) r.signal = attention_on_step(model, test_set, default_signal_step(T));
  return r;
}

}  // namespace

TEST(ExampleExperiments, Task1UniformRangesReach98Percent) {
  const Result r = run(Task::Uniform, small_config(Pooling::Max, true), 5, 600, 300);
  EXPECT_GE(r.eval.accuracy, 0.98);
}

TEST(ExampleExperiments, Task2WithoutPositionalEncodingStaysNearChance) {
  const Result r = run(Task::Halves, small_config(Pooling::Max, false), 10);
  EXPECT_LE(r.eval.accuracy, 0.65);
  EXPECT_GE(r.eval.accuracy, 0.35);  // chance, not an inverted classifier
}

TEST(ExampleExperiments, Task2WithPositionalEncodingReaches95Percent) {
  const Result r = run(Task::Halves, small_config(Pooling::Max, true), 10);
  EXPECT_GE(r.eval.accuracy, 0.95);
}

TEST(ExampleExperiments, Task3AttentionPutsHalfItsWeightOnTheDecidingStep) {
  const Result r = run(Task::Signal, small_config(Pooling::Mean, true), 20);
  EXPECT_GE(r.eval.accuracy, 0.9);
  EXPECT_GE(r.signal.attention, 0.5) << "uniform attention would be 1/20";
}

// Why task 2 fails without positional encoding: permuting the steps of a sequence leaves the logits
// unchanged (up to rounding), so the two classes, which are permutations of each other, look alike.
TEST(ExampleExperiments, WithoutPositionalEncodingTheModelIgnoresOrder) {
  for (auto pooling : {Pooling::Max, Pooling::Mean, Pooling::Weighted})
    for (auto attention : {AttentionKind::MultiHead, AttentionKind::SelfAttention}) {
      ModelConfig c = small_config(pooling, false);
      c.attention = attention;
      Classifier model(c);
      const Dataset d = make_task(Task::Halves, 4, 12, 9);
      Dataset reversed = d;
      for (Index i = 0; i < d.size(); ++i)
        for (Index t = 0; t < d.steps(); ++t) reversed.x(i, t, 0) = d.x(i, d.steps() - 1 - t, 0);
      const seqattn::Tensor3<float> a = model.net().predict(d.x), b = model.net().predict(reversed.x);
      float diff = 0, scale = 0;
      for (Index k = 0; k < a.size(); ++k) {
        diff = std::max(diff, std::abs(a.data()[k] - b.data()[k]));
        scale = std::max(scale, std::abs(a.data()[k]));
      }
      EXPECT_LE(diff, 1e-4f * std::max(1.0f, scale)) << to_string(attention) << " " << to_string(pooling);
      ModelConfig with_pe = c;
      with_pe.positional = true;
      Classifier ordered(with_pe);
      const seqattn::Tensor3<float> pa = ordered.net().predict(d.x), pb = ordered.net().predict(reversed.x);
      float moved = 0;
      for (Index k = 0; k < pa.size(); ++k) moved = std::max(moved, std::abs(pa.data()[k] - pb.data()[k]));
      EXPECT_GT(moved, 1e-3f) << "with positional encoding the order must matter";
    }
}
