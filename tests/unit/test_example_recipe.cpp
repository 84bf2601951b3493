// The real-data recipe of the time-series classifier example (recipe.hpp, train.hpp): the defaults scale with the
// training set (downsampling for long series, batch size, epochs for about 1500 steps); stratified_split keeps every
// class's share and never empties a class; the conv front end trains and masks padded steps; the learning-rate
// schedule reaches 0 at the last step; with a validation set the best epoch's weights are restored (a later, worse
// epoch does not win) and patience stops training early.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "time_series_classifier/data.hpp"
#include "time_series_classifier/model.hpp"
#include "time_series_classifier/recipe.hpp"
#include "time_series_classifier/train.hpp"

using namespace tsc;

namespace {

// n sequences of task 4 (3 features, 3 classes, variable lengths up to `steps`).
Dataset multivariate(Index n, Index steps, std::uint64_t seed) { return make_task(Task::Multivariate, n, steps, seed); }

// The recipe for `train` with a model at test size: d_model 16, 2 heads, feed-forward 32.
Recipe small_recipe(const Dataset& train, std::uint64_t seed) {
  Recipe r = default_recipe(train);
  r.model.d_model = 16;
  r.model.heads = 2;
  r.model.ffn = 32;
  r.model.seed = seed;
  return r;
}

std::map<int, Index> class_counts(const Dataset& d) {
  std::map<int, Index> counts;
  for (int label : d.labels) ++counts[label];
  return counts;
}

}  // namespace

TEST(ExampleRecipe, DefaultsScaleWithTheTrainingSet) {
  const Dataset short_set = multivariate(50, 24, 1);
  const Recipe a = default_recipe(short_set);
  EXPECT_EQ(a.model.front_end, FrontEnd::Conv);
  EXPECT_EQ(a.model.features, 3);
  EXPECT_EQ(a.model.classes, 3);
  EXPECT_EQ(a.model.downsample, 1);  // 24 steps: attention over every step
  EXPECT_EQ(a.train.batch_size, 5);  // N / 10
  const Index per_epoch = (50 + 4) / 5;
  EXPECT_GE(a.train.epochs * per_epoch, 1500);
  EXPECT_LT((a.train.epochs - 1) * per_epoch, 1500);
  EXPECT_TRUE(a.train.cosine);
  EXPECT_GT(a.train.warmup, 0.0);

  const Dataset long_set = multivariate(1000, 300, 2);
  const Recipe b = default_recipe(long_set);
  EXPECT_EQ(b.model.downsample, 5);  // ceil(300 / 64): at most 64 steps reach the attention
  EXPECT_EQ(b.train.batch_size, 32);
  EXPECT_GE(b.train.epochs, 30);  // the minimum, though 1500 steps would take fewer

  const Dataset tiny = multivariate(12, 10, 3);
  EXPECT_EQ(default_recipe(tiny).train.batch_size, 4);
  EXPECT_LE(default_recipe(tiny).train.epochs, 400);
}

TEST(ExampleRecipe, StratifiedSplitKeepsEveryClassShare) {
  const Dataset d = multivariate(90, 12, 4);
  const auto [rest, held] = stratified_split(d, 0.3, 7);
  EXPECT_EQ(rest.size() + held.size(), d.size());
  const auto all = class_counts(d), kept = class_counts(rest), out = class_counts(held);
  for (const auto& [label, count] : all) {
    EXPECT_EQ(kept.at(label) + out.at(label), count);
    EXPECT_NEAR(static_cast<double>(out.at(label)), 0.3 * static_cast<double>(count), 0.51) << "class " << label;
  }
  // the same seed gives the same split; another seed another one
  EXPECT_EQ(stratified_split(d, 0.3, 7).second.labels, held.labels);
  EXPECT_EQ(stratified_split(d, 0.3, 7).second.lengths, held.lengths);
  const auto other = stratified_split(d, 0.3, 8).second;
  bool differs = false;
  for (Index i = 0; i < held.size() && !differs; ++i)
    for (Index t = 0; t < held.steps() && !differs; ++t) differs = other.x(i, t, 0) != held.x(i, t, 0);
  EXPECT_TRUE(differs);
  // a class of one sequence stays whole in the rest; nothing to hold out is an error
  Dataset one = subset(d, {0, 1});
  one.labels = {0, 1};
  EXPECT_THROW(stratified_split(one, 0.5, 1), DataError);
}

TEST(ExampleRecipe, ConvFrontEndLearnsVariableLengthSeries) {
  const Dataset train_set = multivariate(240, 30, 5), test_set = multivariate(120, 30, 6);
  Recipe r = small_recipe(train_set, 2);
  r.train.epochs = 8;
  Classifier model(r.model);
  const auto history = train(model, train_set, r.train);
  ASSERT_EQ(static_cast<Index>(history.size()), 8);
  // the cosine schedule reaches 0 one step after the last: lr(total - 1) = peak * (1 - cos(pi / n)) / 2, n the
  // steps after the warm-up
  const Index total = 8 * ((240 + r.train.batch_size - 1) / r.train.batch_size);
  const double n = static_cast<double>(total - static_cast<Index>(r.train.warmup * static_cast<double>(total)));
  EXPECT_NEAR(history.back().lr, r.train.lr * (1 - std::cos(3.14159265358979323846 / n)) / 2, 1e-12);
  EXPECT_GE(evaluate(model.net(), test_set).accuracy, 0.9);
  // padded steps do not change a prediction: pad a batch with garbage
  std::vector<Index> order(static_cast<size_t>(test_set.size()));
  for (Index i = 0; i < test_set.size(); ++i) order[static_cast<size_t>(i)] = i;
  seqattn::Tensor3<float> x, x_garbage;
  seqattn::Mask mask, mask_garbage;
  std::vector<int> labels;
  make_batch(test_set, order, 0, 16, x, mask, labels, 40, 0.0f);
  make_batch(test_set, order, 0, 16, x_garbage, mask_garbage, labels, 40, 1e3f);
  const seqattn::Tensor3<float> clean = model.net().predict(x, mask);
  const seqattn::Tensor3<float> noisy = model.net().predict(x_garbage, mask_garbage);
  for (Index i = 0; i < clean.size(); ++i) EXPECT_NEAR(clean.data()[i], noisy.data()[i], 1e-4f) << i;
}

TEST(ExampleRecipe, ValidationKeepsTheBestEpochAndPatienceStops) {
  const Dataset all = multivariate(200, 16, 8);
  const auto [fit, held] = stratified_split(all, 0.25, 3);
  ModelConfig c;
  c.features = 3;
  c.classes = 3;
  c.d_model = 16;
  c.heads = 2;
  c.seed = 4;
  TrainOptions o;
  o.epochs = 6;
  o.lr = 3e-3;
  o.validation = &held;
  Classifier model(c);
  const auto history = train(model, fit, o);
  ASSERT_EQ(history.size(), 6u);
  // the restored weights are those of the best epoch: their validation accuracy is the best in the history
  double best = 0;
  for (const auto& e : history) best = std::max(best, e.validation_accuracy);
  EXPECT_DOUBLE_EQ(evaluate(model.net(), held).accuracy, best);

  // patience: training stops `patience` epochs after the last epoch that was better (the rule of train():
  // a higher validation accuracy, or the same with a lower validation loss), and those weights are restored
  Classifier fast(c);
  TrainOptions quick = o;
  quick.lr = 0.03;
  quick.patience = 2;
  quick.epochs = 30;
  const auto stopped = train(fast, fit, quick);
  EXPECT_LT(stopped.size(), 30u) << "patience never stopped the run";
  double best_accuracy = -1, best_loss = 0;
  size_t last_best = 0;
  for (size_t k = 0; k < stopped.size(); ++k) {
    const auto& e = stopped[k];
    if (e.validation_accuracy > best_accuracy || (e.validation_accuracy == best_accuracy && e.validation_loss < best_loss)) {
      best_accuracy = e.validation_accuracy;
      best_loss = e.validation_loss;
      last_best = k;
    }
  }
  EXPECT_EQ(stopped.size() - 1 - last_best, 2u) << "stopped after 2 epochs without progress";
  const Evaluation restored = evaluate(fast.net(), held);
  EXPECT_DOUBLE_EQ(restored.accuracy, best_accuracy);
  EXPECT_NEAR(restored.loss, best_loss, 1e-6);
}

// Squared norm of every parameter of a model.
double squared_norm(Classifier& model) {
  double sum = 0;
  for (const auto& p : model.net().params()) sum += static_cast<double>(p.values().squaredNorm());
  return sum;
}

TEST(ExampleRecipe, LabelSmoothingAndWeightDecayAreApplied) {
  const Dataset train_set = multivariate(150, 16, 9), test_set = multivariate(100, 16, 10);
  Recipe r = small_recipe(train_set, 5);
  r.train.epochs = 20;
  r.train.lr = 3e-3;
  const auto run = [&](double smoothing, double decay, double* final_loss) {
    Classifier model(r.model);
    TrainOptions o = r.train;
    o.label_smoothing = smoothing;
    o.weight_decay = decay;
    *final_loss = train(model, train_set, o).back().loss;
    EXPECT_GE(evaluate(model.net(), test_set).accuracy, 0.85) << "smoothing " << smoothing << ", decay " << decay;
    return squared_norm(model);
  };
  double plain_loss = 0, smooth_loss = 0, decay_loss = 0;
  const double plain = run(0.0, 0.0, &plain_loss);
  run(0.3, 0.0, &smooth_loss);
  const double decayed = run(0.0, 2.0, &decay_loss);
  // smoothed targets keep the loss away from 0: with eps 0.3 over 3 classes it is at least the entropy of the
  // target (0.8, 0.1, 0.1), 0.639
  EXPECT_GT(smooth_loss, 0.639);
  EXPECT_LT(plain_loss, 0.5);
  EXPECT_LT(decayed, 0.8 * plain) << "AdamW's decay shrinks the weights";
  TrainOptions bad = r.train;
  bad.warmup = 1.0;
  Classifier model(r.model);
  EXPECT_THROW(train(model, train_set, bad), std::invalid_argument);
}
