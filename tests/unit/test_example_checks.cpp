// Checks of a run of the time-series classifier example that make it fail at once instead of after training
// (examples/time_series_classifier/checks.hpp, data.hpp, train.hpp): train/test compatibility, standardize on
// mismatched sets, the output directory and the input files before any data is read, training that stops on a
// non-finite loss, and save_model refusing a non-finite model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "time_series_classifier/checks.hpp"

using namespace tsc;
namespace fs = std::filesystem;

namespace {

// n sequences of `features` features and `steps` steps (values i + t + f), classes {"1", "2"}.
Dataset toy(Index n, Index steps, Index features) {
  Dataset d;
  d.x.resize(n, steps, features);
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < steps; ++t)
      for (Index f = 0; f < features; ++f) d.x(i, t, f) = static_cast<float>(i + t + 10 * f);
  d.lengths.assign(static_cast<size_t>(n), steps);
  for (Index i = 0; i < n; ++i) d.labels.push_back(static_cast<int>(i % 2));
  d.class_names = {"1", "2"};
  return d;
}

bool same_values(const Dataset& a, const Dataset& b) {
  return a.x.size() == b.x.size() && std::equal(a.x.data(), a.x.data() + a.x.size(), b.x.data());
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

std::string scratch(const std::string& name) {
  const std::string path = ::testing::TempDir() + "tsc_checks_" + name;
  fs::remove_all(path);
  return path;
}

ModelConfig tiny_model() {
  ModelConfig c;
  c.features = 1;
  c.classes = 2;
  c.d_model = 8;
  c.heads = 1;
  c.pooling = Pooling::Mean;
  c.seed = 3;
  return c;
}

}  // namespace

// standardize fitted on 12 features read 12 features of every row of a 1-feature test set: a heap overflow
// (ASan) or, at -O2, garbage; a wider target was silently half standardized.
TEST(ExampleChecks, StandardizeRefusesSetsWithOtherFeatureCounts) {
  const Dataset train = toy(4, 5, 2);
  Dataset wider = toy(3, 5, 3);
  const Dataset wider_before = wider;
  EXPECT_EQ(error_of([&] { standardize(train, {&wider}); }),
            "standardize: target 0 expected 2 features (those of the fitted set) but got 3");
  EXPECT_TRUE(same_values(wider, wider_before));
  Dataset narrower = toy(3, 5, 1);
  Dataset copy = train;
  const std::vector<Dataset*> both = {&copy, &narrower};
  EXPECT_EQ(error_of([&] { standardize(train, both); }),
            "standardize: target 1 expected 2 features (those of the fitted set) but got 1");
  EXPECT_TRUE(same_values(copy, train));  // nothing changed, not even the targets before the bad one
  Dataset too_long = toy(2, 5, 2);
  too_long.lengths[1] = 6;
  EXPECT_EQ(error_of([&] { standardize(train, {&too_long}); }),
            "standardize: target 0: sequence 1 has length 6, expected one in [0, 5]");
  Dataset same = toy(3, 7, 2);
  EXPECT_EQ(error_of([&] { standardize(train, {&same}); }), "(no error)");
}

TEST(ExampleChecks, CompatibilityNamesBothSetsAndBothValues) {
  const Dataset train = toy(4, 5, 12), test = toy(3, 5, 1);
  EXPECT_EQ(error_of([&] { check_compatible(train, test, "--train a.ts", "--test b.tsv"); }),
            "--test b.tsv has 1 feature (dimension) per step but --train a.ts has 12; both must have the same");
  EXPECT_EQ(error_of([&] { check_compatible(toy(2, 5, 1), toy(2, 5, 6), "--train a.tsv", "--test b.ts"); }),
            "--test b.ts has 6 features (dimensions) per step but --train a.tsv has 1; both must have the same");
  Dataset other_classes = toy(2, 5, 12);
  other_classes.class_names = {"A", "B"};
  EXPECT_EQ(error_of([&] { check_compatible(train, other_classes, "--train a.ts", "--test b.ts"); }),
            "--test b.ts has the classes (A, B) but --train a.ts has (1, 2); load the test set with the training "
            "set's classes");
  Dataset bad_label = toy(2, 5, 12);
  bad_label.labels[1] = 2;
  EXPECT_EQ(error_of([&] { check_compatible(train, bad_label, "--train a.ts", "--test b.ts"); }),
            "--test b.ts: sequence 1 has class 2, expected one in [0, 2)");
  // Lengths may differ; a longer test set gives a note.
  EXPECT_EQ(check_compatible(train, toy(2, 3, 12), "--train a.ts", "--test b.ts"), "");
  EXPECT_EQ(check_compatible(train, toy(2, 9, 12), "--train a.ts", "--test b.ts"),
            "note: --test b.ts has sequences of up to 9 steps, longer than any of --train a.ts (5): the model never "
            "saw those positions in training");
}

TEST(ExampleChecks, BeforeTrainingUsesTheOptionNames) {
  CliOptions o;
  o.task = "ucr";
  o.train_file = "a.ts";
  o.test_file = "b.tsv";
  EXPECT_EQ(error_of([&] { check_before_training(o, toy(4, 5, 12), toy(3, 5, 1)); }),
            "--test b.tsv has 1 feature (dimension) per step but --train a.ts has 12; both must have the same");
  o.test_file.clear();
  EXPECT_EQ(error_of([&] { check_before_training(o, toy(4, 5, 2), toy(3, 5, 1)); }),
            "the test split of --train a.ts has 1 feature (dimension) per step but --train a.ts has 2; both must "
            "have the same");
  EXPECT_EQ(check_before_training(o, toy(4, 5, 2), toy(3, 5, 2)).size(), 0u);
}

// --out naming an existing file failed only after training (create_directories, then save_weights).
TEST(ExampleChecks, OutputDirectoryIsCheckedBeforeAnyWork) {
  const std::string file = scratch("out_file");
  std::ofstream(file) << "not a directory";
  EXPECT_EQ(error_of([&] { check_output_dir(file); }), "--out " + file + ": exists and is not a directory");
  EXPECT_EQ(error_of([&] { check_output_dir(file + "/sub"); }),
            "--out " + file + "/sub: cannot create the directory: Not a directory");
  const std::string dir = scratch("out_dir") + "/a/b";
  check_output_dir(dir);  // created, with its parents
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_TRUE(fs::is_empty(dir));  // the probe file is gone
  check_output_dir(dir);           // an existing directory is fine
  fs::create_directories(dir + "/model.sqm");
  EXPECT_EQ(error_of([&] { check_output_dir(dir); }),
            "--out " + dir + ": " + dir + "/model.sqm is a directory, so the model could not be saved there");
  fs::remove(file);
  fs::remove_all(scratch("out_dir"));
  // A directory no one can create files in, not even root (tests may run as root, where permissions do not stop
  // a write): procfs.
  if (fs::is_directory("/proc/self")) {
    const std::string message = error_of([&] { check_output_dir("/proc"); });
    EXPECT_EQ(message.rfind("--out /proc: cannot write in the directory", 0), 0u) << message;
  }
}

// --train naming a directory said "no series found"; files are checked before the output directory is made.
TEST(ExampleChecks, InputFilesAreCheckedBeforeAnyWork) {
  const std::string dir = scratch("inputs");
  fs::create_directories(dir);
  const std::string train = dir + "/train.tsv";
  std::ofstream(train) << "1\t0.5\n2\t0.25\n";
  CliOptions o;
  o.task = "ucr";
  o.out = dir + "/out";
  o.train_file = dir;
  EXPECT_EQ(error_of([&] { check_before_loading(o); }), "--train " + dir + ": is a directory, not a data file");
  o.train_file = train;
  o.test_file = dir + "/missing.tsv";
  EXPECT_EQ(error_of([&] { check_before_loading(o); }),
            "--test " + dir + "/missing.tsv: cannot open the file: No such file or directory");
  EXPECT_FALSE(fs::exists(o.out));
  o.test_file = train;
  check_before_loading(o);
  EXPECT_TRUE(fs::is_directory(o.out));
  fs::remove_all(dir);
}

// With --lr 1e30 the example trained to a NaN loss, exited 0, saved the NaN model and reported an accuracy.
TEST(ExampleChecks, TrainingStopsAtTheFirstNonFiniteLoss) {
  const Dataset data = make_task(Task::Uniform, 64, 10, 7);
  Classifier model(tiny_model());
  TrainOptions options;
  options.epochs = 3;
  options.batch_size = 8;
  options.lr = 1e30;
  const std::string message = error_of([&] { train(model, data, options); });
  EXPECT_EQ(message.rfind("train: the training loss is ", 0), 0u) << message;
  EXPECT_NE(message.find(" at epoch "), std::string::npos) << message;
  EXPECT_NE(message.find(", batch "), std::string::npos) << message;
  EXPECT_NE(message.find(" of 8: training diverged (learning rate 1e+30); try a smaller --lr, e.g. 1e+29"),
            std::string::npos)
      << message;
  // A sane learning rate trains, and its losses are finite.
  Classifier good(tiny_model());
  options.lr = 1e-3;
  for (const EpochResult& r : train(good, data, options)) EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(ExampleChecks, ANonFiniteFirstLossPointsAtTheData) {
  Dataset data = make_task(Task::Uniform, 16, 10, 7);
  data.x(0, 0, 0) = std::numeric_limits<float>::quiet_NaN();
  Classifier model(tiny_model());
  TrainOptions options;
  options.batch_size = 16;
  EXPECT_EQ(error_of([&] { train(model, data, options); }),
            "train: the training loss is NaN at epoch 1, batch 1 of 1, before any update: check the data for NaN, "
            "Inf or huge values");
}

TEST(ExampleChecks, NonFiniteModelsAreNeverSaved) {
  Classifier model(tiny_model());
  EXPECT_EQ(non_finite_parameter(model.net()), "");
  const std::string dir = scratch("save");
  fs::create_directories(dir);
  save_classifier(model.net(), dir + "/model.sqm", {{"class_names", {"a", "b"}}});
  EXPECT_TRUE(fs::exists(dir + "/model.sqm"));
  nlohmann::json metadata;
  const auto loaded = seqattn::load_model<float>(dir + "/model.sqm", &metadata);
  EXPECT_EQ(metadata["class_names"], nlohmann::json({"a", "b"}));
  EXPECT_EQ(loaded.describe(), model.net().describe());
  auto params = model.net().params();
  params.back().value[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(non_finite_parameter(model.net()), params.back().name);
  EXPECT_EQ(error_of([&] { save_classifier(model.net(), dir + "/nan.sqw"); }),
            "save_model: parameter " + params.back().name + " holds NaN or Inf; refusing to write " + dir + "/nan.sqw");
  EXPECT_FALSE(fs::exists(dir + "/nan.sqw"));
  fs::remove_all(dir);
}

// Issue 19, item 4: a long series made the example die with std::bad_alloc at the default batch. check_memory
// compares the model's caches for the longest sequence with seqattn's memory limit before training and suggests
// the largest batch that fits, or a window of steps with -a self --width.
namespace {

struct MemoryLimitScope {
  explicit MemoryLimitScope(std::size_t bytes) { seqattn::set_memory_limit(bytes); }
  ~MemoryLimitScope() { seqattn::reset_memory_limit(); }
};

std::string memory_message(const ModelConfig& c, Index batch, Index steps) {
  try {
    check_memory(c, batch, steps);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ExampleChecks, MemoryCheckSuggestsABatchSizeOrAWindowBeforeTraining) {
  const MemoryLimitScope limit(64u << 20);
  ModelConfig c;
  c.features = 3;
  c.d_model = 16;
  c.heads = 2;
  EXPECT_EQ(memory_message(c, 32, 128), "") << "a small run fits";
  // MultiHeadAttention at T = 2048: 2 heads x 2048^2 floats = 32 MiB per sequence: a batch of 1 fits.
  std::string what = memory_message(c, 32, 2048);
  EXPECT_NE(what.find("for a batch of 32 sequences of 2048 steps (the longest in the data), above the memory limit "
                      "of 64.00 MiB"),
            std::string::npos)
      << what;
  EXPECT_NE(what.find("heads x T x T"), std::string::npos) << what;
  EXPECT_NE(what.find("Try --batch-size 1"), std::string::npos) << what;
  // At T = 8192 one sequence needs 512 MiB: a window of 128 steps fits a batch of 4.
  what = memory_message(c, 4, 8192);
  EXPECT_NE(what.find("Try -a self --width 128"), std::string::npos) << what;
  // Nothing fits: say so.
  what = memory_message(c, 4, 1 << 20);
  EXPECT_NE(what.find("shorten the sequences"), std::string::npos) << what;
}
