// ucr_accuracy: the real-data recipe (examples/time_series_classifier/recipe.hpp) on every dataset of a UCR/UEA
// archive folder, over several seeds, next to the accuracies published for other methods on the same splits.
//
//   ucr_accuracy ../shared/data/ucr                       every <Name>/ folder holding <Name>_TRAIN and _TEST
//   ucr_accuracy DIR --seeds 5 --published benchmarks/ucr_published.csv --csv results.csv
//   ucr_accuracy DIR --validate 0.3                       recipe development: hold out 30% of each TRAIN file
//                                                         (stratified) and report accuracy there; TEST unread
// Files: <Name>_TRAIN / <Name>_TEST with extension .ts, .arff, .tsv or .txt (the first found, in that order).
// Options override single parts of the recipe (--help): the table says which were changed.
// Output, one row per dataset: train/test sizes, length (min-max), channels, classes, the test accuracy (mean and
// standard deviation over the seeds), the training time per seed, and the published accuracies (fraction).
// Runs single-threaded (seqattn::set_num_threads(1)) unless --threads says otherwise.

#include <cxxopts.hpp>

#include <seqattn/core/threads.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/time_series_classifier/data.hpp"
#include "../examples/time_series_classifier/model.hpp"
#include "../examples/time_series_classifier/progress.hpp"
#include "../examples/time_series_classifier/recipe.hpp"
#include "../examples/time_series_classifier/train.hpp"
#include "../examples/time_series_classifier/ucr.hpp"
#include "ucr_dtw.hpp"

namespace {

using namespace tsc;
namespace fs = std::filesystem;

struct DatasetFiles {
  std::string name, train, test;
};

// The datasets under `root`: root itself when it holds <name>_TRAIN.*, else each subfolder that does.
std::vector<DatasetFiles> find_datasets(const std::string& root) {
  const auto find_in = [](const fs::path& dir) -> DatasetFiles {
    const std::string name = dir.filename().string();
    DatasetFiles f{name, "", ""};
    for (const char* ext : {".ts", ".arff", ".tsv", ".txt"}) {
      const fs::path train = dir / (name + "_TRAIN" + ext), test = dir / (name + "_TEST" + ext);
      if (fs::exists(train) && fs::exists(test)) {
        f.train = train.string();
        f.test = test.string();
        break;
      }
    }
    return f;
  };
  std::vector<DatasetFiles> out;
  const fs::path dir = fs::path(root).lexically_normal();
  DatasetFiles self = find_in(dir.filename().empty() ? dir.parent_path() : dir);
  if (!self.train.empty()) return {self};
  std::vector<fs::path> subdirs;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory()) subdirs.push_back(entry.path());
  std::sort(subdirs.begin(), subdirs.end());
  for (const auto& sub : subdirs) {
    DatasetFiles f = find_in(sub);
    if (!f.train.empty()) out.push_back(f);
  }
  return out;
}

// published[dataset][method] = accuracy, from a CSV "dataset,method,accuracy,source".
std::map<std::string, std::map<std::string, double>> read_published(const std::string& path,
                                                                     std::vector<std::string>& methods) {
  std::map<std::string, std::map<std::string, double>> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the published results");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind("dataset,", 0) == 0) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ',')) f.push_back(field);
    if (f.size() < 3) continue;
    if (std::find(methods.begin(), methods.end(), f[1]) == methods.end()) methods.push_back(f[1]);
    out[f[0]][f[1]] = std::stod(f[2]);
  }
  return out;
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }
double stddev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

int run(int argc, char** argv) {
  cxxopts::Options cli("ucr_accuracy", "The real-data recipe on every dataset of a UCR/UEA archive folder");
  using cxxopts::value;
  // clang-format off
  cli.add_options()
    ("folder", "archive folder (or one dataset's folder)", value<std::string>())
    ("seeds", "seeds per dataset (1..seeds)", value<int>()->default_value("5"))
    ("datasets", "only these datasets (comma-separated names)", value<std::string>()->default_value(""))
    ("validate", "hold out this fraction of TRAIN (stratified) and report accuracy on it; TEST is not read", value<double>()->default_value("0"))
    ("published", "CSV of published accuracies (dataset,method,accuracy,source)", value<std::string>()->default_value(""))
    ("csv", "write every run (dataset, seed, accuracy, seconds) to this CSV", value<std::string>()->default_value(""))
    ("threads", "threads of the layers", value<int>()->default_value("1"))
    ("no-dtw", "skip the 1-NN DTW column (computed here on the same files, before standardization)")
    ("min-accuracy", "exit with status 2 when a dataset's mean accuracy is below this (a check for ctest)", value<double>()->default_value("0"))
    ("front", "override: front end, dense or conv", value<std::string>())
    ("d-model", "override: model width", value<Index>())
    ("heads", "override: attention heads", value<Index>())
    ("ffn", "override: feed-forward units (0: none)", value<Index>())
    ("blocks", "override: attention blocks", value<Index>())
    ("downsample", "override: average pooling size before the attention", value<Index>())
    ("kernels", "override: conv kernel sizes, e.g. 7,5,3", value<std::string>())
    ("pooling", "override: max, mean or weighted", value<std::string>())
    ("dropout", "override: dropout before the pooling", value<double>())
    ("no-positional", "override: no positional encoding")
    ("steps", "override: optimizer steps (epochs from it)", value<Index>())
    ("epochs", "override: epochs", value<Index>())
    ("batch-size", "override: batch size", value<Index>())
    ("lr", "override: peak learning rate", value<double>())
    ("wd", "override: AdamW weight decay", value<double>())
    ("smoothing", "override: label smoothing", value<double>())
    ("warmup", "override: warm-up fraction", value<double>())
    ("no-cosine", "override: constant learning rate after the warm-up")
    ("early-stop", "override: hold out this fraction of the training data for early stopping (best epoch kept)", value<double>())
    ("patience", "override: early-stopping patience in epochs", value<Index>())
    ("h,help", "print this help");
  // clang-format on
  cli.parse_positional({"folder"});
  const auto args = cli.parse(argc, argv);
  if (args.count("help") || !args.count("folder")) {
    std::cout << cli.help() << "\n";
    return args.count("help") ? 0 : 1;
  }
  seqattn::set_num_threads(args["threads"].as<int>());
  const int seeds = args["seeds"].as<int>();
  const double validate = args["validate"].as<double>();
  std::string only = args["datasets"].as<std::string>();
  std::vector<std::string> methods;
  const auto published = read_published(args["published"].as<std::string>(), methods);
  std::ofstream csv;
  if (!args["csv"].as<std::string>().empty()) {
    csv.open(args["csv"].as<std::string>());
    csv << "dataset,seed,accuracy,seconds,epochs\n";
  }
  std::vector<std::string> changed;
  for (const auto& kv : args.arguments())
    if (kv.key() != "folder" && kv.key() != "seeds" && kv.key() != "datasets" && kv.key() != "published" &&
        kv.key() != "csv" && kv.key() != "threads" && kv.key() != "validate" && kv.key() != "min-accuracy" && kv.key() != "no-dtw")
      changed.push_back(kv.key() + "=" + kv.value());

  std::printf("%-18s %5s %5s %7s %3s %3s  %-15s %7s", "dataset", "train", "test", "length", "ch", "cls",
              validate > 0 ? "validation acc" : "test accuracy", "s/seed");
  const bool dtw = !args.count("no-dtw");
  if (dtw) std::printf(" %9s", "DTW here");
  for (const auto& m : methods) std::printf(" %9s", m.c_str());
  std::printf("\n");
  std::vector<double> all_means;
  for (const DatasetFiles& files : find_datasets(args["folder"].as<std::string>())) {
    if (!only.empty() && ("," + only + ",").find("," + files.name + ",") == std::string::npos) continue;
    const Dataset train_file = load_ucr(files.train);
    const Dataset test_file = validate > 0 ? Dataset() : load_ucr(files.test, train_file.class_names, files.train);
    Dataset train, test;
    std::vector<double> accuracies, seconds;
    double dtw_accuracy = 0;
    Index epochs_used = 0;
    for (int seed = 1; seed <= seeds; ++seed) {
      // --validate: a new stratified split of TRAIN for every seed; else the archive's split
      if (validate > 0)
        std::tie(train, test) = stratified_split(train_file, validate, 12344 + static_cast<std::uint64_t>(seed));
      else
        std::tie(train, test) = std::make_pair(train_file, test_file);
      if (dtw && seed == 1) {  // the split of seed 1, raw values (missing ones interpolated)
        Dataset raw_train = train, raw_test = test;
        impute_missing(raw_train);
        impute_missing(raw_test);
        dtw_accuracy = dtw_1nn_accuracy(raw_train, raw_test);
      }
      standardize(train, {&train, &test});
      impute_missing(train);
      impute_missing(test);
      Recipe r = default_recipe(train);
      ModelConfig& m = r.model;
      TrainOptions& o = r.train;
      if (args.count("front")) m.front_end = parse_front_end(args["front"].as<std::string>());
      if (args.count("d-model")) m.d_model = args["d-model"].as<Index>();
      if (args.count("heads")) m.heads = args["heads"].as<Index>();
      if (args.count("ffn")) m.ffn = args["ffn"].as<Index>();
      if (args.count("blocks")) m.blocks = args["blocks"].as<Index>();
      if (args.count("downsample")) m.downsample = args["downsample"].as<Index>();
      if (args.count("pooling")) m.pooling = parse_pooling(args["pooling"].as<std::string>());
      if (args.count("dropout")) m.dropout = args["dropout"].as<double>();
      if (args.count("no-positional")) m.positional = false;
      if (args.count("kernels")) {
        m.conv_kernels.clear();
        std::stringstream ss(args["kernels"].as<std::string>());
        std::string k;
        while (std::getline(ss, k, ',')) m.conv_kernels.push_back(std::stol(k));
      }
      if (args.count("batch-size")) o.batch_size = args["batch-size"].as<Index>();
      const Dataset* fit = &train;
      Dataset rest, held;
      if (args.count("early-stop")) {
        std::tie(rest, held) = stratified_split(train, args["early-stop"].as<double>(), 1000 + static_cast<std::uint64_t>(seed));
        fit = &rest;
        o.validation = &held;
      }
      const Index per_epoch = (fit->size() + o.batch_size - 1) / o.batch_size;
      if (args.count("steps")) o.epochs = std::max<Index>(1, (args["steps"].as<Index>() + per_epoch - 1) / per_epoch);
      if (args.count("epochs")) o.epochs = args["epochs"].as<Index>();
      if (args.count("lr")) o.lr = args["lr"].as<double>();
      if (args.count("wd")) o.weight_decay = args["wd"].as<double>();
      if (args.count("smoothing")) o.label_smoothing = args["smoothing"].as<double>();
      if (args.count("warmup")) o.warmup = args["warmup"].as<double>();
      if (args.count("no-cosine")) o.cosine = false;
      if (args.count("patience")) o.patience = args["patience"].as<Index>();
      m.seed = static_cast<std::uint64_t>(seed);
      o.seed = static_cast<std::uint64_t>(seed);
      Classifier model(m);
      const double t0 = steady_seconds();
      const auto history = tsc::train(model, *fit, o);
      seconds.push_back(steady_seconds() - t0);
      epochs_used = static_cast<Index>(history.size());
      const Evaluation e = evaluate(model.net(), test, 256);
      accuracies.push_back(e.accuracy);
      if (csv) csv << files.name << "," << seed << "," << e.accuracy << "," << seconds.back() << "," << epochs_used << "\n";
    }
    Index min_len = *std::min_element(train.lengths.begin(), train.lengths.end()), max_len = train.max_length();
    const std::string length = min_len == max_len ? std::to_string(max_len) : std::to_string(min_len) + "-" + std::to_string(max_len);
    char acc[64];
    std::snprintf(acc, sizeof acc, "%.3f +- %.3f", mean_of(accuracies), stddev_of(accuracies));
    std::printf("%-18s %5ld %5ld %7s %3ld %3ld  %-15s %7.1f", files.name.c_str(), static_cast<long>(train.size()),
                static_cast<long>(test.size()), length.c_str(), static_cast<long>(train.features()),
                static_cast<long>(train.classes()), acc, mean_of(seconds));
    if (dtw) std::printf(" %9.3f", dtw_accuracy);
    for (const auto& method : methods) {
      const auto d = published.find(files.name);
      if (d != published.end() && d->second.count(method))
        std::printf(" %9.3f", d->second.at(method));
      else
        std::printf(" %9s", "-");
    }
    std::printf("\n");
    std::fflush(stdout);
    all_means.push_back(mean_of(accuracies));
  }
  if (all_means.empty()) throw std::runtime_error("no dataset found (expected <Name>/<Name>_TRAIN.ts|.arff|.tsv|.txt and _TEST)");
  std::printf("%-18s %45.3f\n", "mean", mean_of(all_means));
  if (!changed.empty()) {
    std::printf("recipe changes:");
    for (const auto& c : changed) std::printf(" %s", c.c_str());
    std::printf("\n");
  }
  const double floor = args["min-accuracy"].as<double>();
  if (*std::min_element(all_means.begin(), all_means.end()) < floor) {
    std::fprintf(stderr, "ucr_accuracy: a dataset's mean accuracy is below --min-accuracy %.3f\n", floor);
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ucr_accuracy: " << e.what() << "\n";
    return 1;
  }
}
