// time_series_classifier: trains an attention classifier on a time-series data set, reports its test accuracy
// and confusion matrix, saves its weights, and writes figures (PNG and SVG, through examples/plot/): the attention
// heatmaps of a few test sequences (one per head too for multi-head layers, CSV beside) and the training curves.
//   time_series_classifier                          built-in default: task 3 ("find the signal"), < 1 minute
//   time_series_classifier --task halves --no-positional
//   time_series_classifier --task ucr --train GunPoint_TRAIN.tsv --test GunPoint_TEST.tsv
//   time_series_classifier --task fashion-mnist      needs Debian's dataset-fashion-mnist
// --help lists every option. The data sources, the model and the maps are described in the headers beside.
// Order of a run: options (options.hpp), check_before_loading (files, output directory: checks.hpp), load,
// check_before_training (train/test compatibility), standardize, train (stops on a non-finite loss),
// evaluate, save_model (refuses a non-finite model), training curves, attention figures. Any error: a message on
// stderr, exit code 1. Without a DejaVu Sans font (Debian fonts-dejavu-core) the figures are SVG only.

#include <cstdio>
#include <iostream>
#include <numeric>
#include <tuple>

#include "checks.hpp"
#include "data.hpp"
#include "figures.hpp"
#include "heatmap.hpp"
#include "idx.hpp"
#include "model.hpp"
#include "options.hpp"
#include "progress.hpp"
#include "recipe.hpp"
#include "train.hpp"
#include "ucr.hpp"

namespace {

using namespace tsc;

// Train and test sets for the --task chosen, as read (file data is standardized after check_before_training).
std::pair<Dataset, Dataset> load_data(const CliOptions& o) {
  if (o.task == "ucr") {
    Dataset train = load_ucr(o.train_file);
    Dataset test;
    if (!o.test_file.empty())
      test = load_ucr(o.test_file, train.class_names, o.train_file);
    else
      std::tie(train, test) = split(train, 0.2, o.seed);
    return {std::move(train), std::move(test)};
  }
  if (o.task == "fashion-mnist")
    return {load_fashion_mnist(o.fashion_dir, "train", o.train_size),
            load_fashion_mnist(o.fashion_dir, "t10k", o.test_size)};
  const Task t = parse_task(o.task);
  const Index n = o.train_size > 0 ? o.train_size : 2000;
  const Index m = o.test_size > 0 ? o.test_size : 500;
  return {make_task(t, n, o.length, 2 * o.seed + 1), make_task(t, m, o.length, 2 * o.seed + 2)};
}

// The name the figures give the data: the task, or the UCR file's dataset ("GunPoint" of GunPoint_TRAIN.ts).
std::string dataset_label(const CliOptions& o) {
  if (o.task != "ucr") return o.task == "fashion-mnist" ? "Fashion-MNIST" : "synthetic task " + o.task;
  std::string name = o.train_file.substr(o.train_file.find_last_of("/\\") + 1);
  name = name.substr(0, name.find('.'));
  for (const char* suffix : {"_TRAIN", "_train"})
    if (const size_t at = name.rfind(suffix); at != std::string::npos && at > 0) name = name.substr(0, at);
  return name;
}

// The attention figures of the first `count` test sequences (figures.hpp) -> out/attention_<i>.png/.svg (the
// map of the first block, heads averaged, under the input series and the pooling weights),
// out/attention_<i>_heads.png/.svg (one map per head, multi-head layers) and out/attention_<i>.csv (every weight).
void write_maps(Classifier& model, const Dataset& test, Index count, const std::string& out, const std::string& dataset,
                bool png) {
  count = std::min(count, test.size());
  if (count <= 0) return;
  std::vector<Index> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), Index{0});
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels;
  make_batch(test, order, 0, count, x, mask, labels);
  const auto& logits = model.net().predict(x, mask);
  const auto predicted = seqattn::argmax_labels(logits);
  const Index per_cell = std::max<Index>(1, model.config().downsample);
  for (Index b = 0; b < count; ++b) {
    const Index len = mask.length(b, x.dimension(1));
    SequenceMaps maps;
    maps.input = seqattn::sample_matrix(x, b).topRows(len).transpose();  // (F, len)
    const Index cells = model.attention_map(b).rows();
    const Index steps = std::min(cells, (len + per_cell - 1) / per_cell);  // valid attention steps
    for (Index h = 0; h < model.heads(); ++h)
      maps.heads.push_back(model.attention_map(b, model.heads() > 1 ? h : -1).topLeftCorner(steps, steps));
    const auto w = model.pooling_weights(b);
    if (!w.empty()) maps.pooling.assign(w.begin(), w.begin() + steps);
    maps.steps_per_cell = per_cell;
    maps.index = b;
    maps.layer = attention_layer_name(model.config());
    maps.dataset = dataset;
    maps.true_class = test.class_names[static_cast<size_t>(labels[static_cast<size_t>(b)])];
    maps.predicted_class = test.class_names[static_cast<size_t>(predicted[static_cast<size_t>(b)])];
    const std::string base = out + "/attention_" + std::to_string(b);
    write_attention_figures(base, maps, png);
    std::vector<std::vector<double>> rows;
    for (size_t h = 0; h < maps.heads.size(); ++h)
      for (Index t = 0; t < steps; ++t)
        for (Index s = 0; s < steps; ++s)
          rows.push_back({static_cast<double>(h), static_cast<double>(t), static_cast<double>(s), maps.heads[h](t, s)});
    for (Index t = 0; t < static_cast<Index>(maps.pooling.size()); ++t)
      rows.push_back({-1.0, -1.0, static_cast<double>(t), maps.pooling[static_cast<size_t>(t)]});
    write_csv(base + ".csv", "head,query,key,weight", rows);
    std::cout << "  " << base << (png ? ".png/.svg/.csv" : ".svg/.csv") << (maps.heads.size() > 1 ? " (+ _heads)" : "")
              << ": true " << maps.true_class << ", predicted " << maps.predicted_class << "\n";
  }
}

// The model and the training options: for --task ucr the recipe for this training set (recipe.hpp) with every
// option given on the command line in its place; for the other tasks the options (their defaults included).
Recipe choose_recipe(const CliOptions& o, const Dataset& train) {
  const bool recipe = o.task == "ucr";
  Recipe r = recipe ? default_recipe(train) : Recipe();
  const auto use = [&](const char* name) { return !recipe || o.given.count(name) > 0; };
  ModelConfig& m = r.model;
  m.features = train.features();
  m.classes = train.classes();
  m.seed = o.seed;
  m.width = o.width;
  m.units = o.units;
  m.residual = o.residual;
  if (use("d-model")) m.d_model = o.d_model;
  if (use("attention")) m.attention = o.attention;
  if (use("heads")) m.heads = o.heads;
  if (use("ffn")) m.ffn = o.ffn;
  if (use("pooling")) m.pooling = o.pooling;
  if (use("no-positional")) m.positional = o.positional;
  if (use("front")) m.front_end = o.front_end;
  if (use("kernels")) m.conv_kernels = o.kernels;
  if (use("downsample")) m.downsample = o.downsample;
  if (use("blocks")) m.blocks = o.blocks;
  if (use("dropout")) m.dropout = o.dropout;
  if (m.attention == AttentionKind::MultiHead && m.d_model % m.heads != 0)
    throw std::invalid_argument("--heads: expected a divisor of --d-model (" + std::to_string(m.d_model) + ") but got " +
                                std::to_string(m.heads));
  TrainOptions& t = r.train;
  t.seed = o.seed;
  if (use("epochs")) t.epochs = o.epochs;
  if (use("batch-size")) t.batch_size = o.batch_size;
  if (use("lr")) t.lr = o.lr;
  if (use("warmup")) t.warmup = o.warmup;
  if (use("cosine")) t.cosine = o.cosine;
  if (use("weight-decay")) t.weight_decay = o.weight_decay;
  if (use("label-smoothing")) t.label_smoothing = o.label_smoothing;
  if (use("patience")) t.patience = o.patience;
  return r;
}

int run(int argc, char** argv) {
  const CliOptions o = parse_options(argc, argv);  // options.hpp: every option and its range
  if (o.help) {
    std::cout << o.help_text << "\n";
    return 0;
  }
  check_before_loading(o);
  auto [train_set, test_set] = load_data(o);
  for (const std::string& note : check_before_training(o, train_set, test_set)) std::cout << note << "\n";
  Normalization normalization;
  if (o.task == "ucr" || o.task == "fashion-mnist") normalization = standardize(train_set, {&train_set, &test_set});
  for (Dataset* d : {&train_set, &test_set})  // after standardize, which leaves missing values out of its statistics
    if (const Index filled = impute_missing(*d); filled > 0)
      std::cout << "imputed " << filled << " missing values of the " << (d == &train_set ? "training" : "test")
                << " set (linear interpolation within each channel)\n";
  const std::string& task = o.task;
  std::cout << "data: " << task << ", " << train_set.size() << " training and " << test_set.size()
            << " test sequences, up to " << std::max(train_set.steps(), test_set.steps()) << " steps, features "
            << train_set.features() << ", classes " << train_set.classes() << "\n";
  Recipe recipe = choose_recipe(o, train_set);
  const ModelConfig& config = recipe.model;
  TrainOptions& options = recipe.train;
  Dataset fit_set, validation_set;
  if (o.validation > 0) {
    std::tie(fit_set, validation_set) = stratified_split(train_set, o.validation, o.seed);
    options.validation = &validation_set;
    std::cout << "validation: " << validation_set.size() << " of the " << train_set.size()
              << " training sequences held out; the best epoch's weights are kept\n";
  }
  const Dataset& fit = o.validation > 0 ? fit_set : train_set;
  const Index longest = std::max(train_set.steps(), test_set.steps());
  check_memory(config, std::min(options.batch_size, std::max(train_set.size(), test_set.size())), longest);
  Classifier model(config);
  std::cout << model.net().summary();
  std::cout << "training: " << options.epochs << " epochs of batches of " << options.batch_size << ", learning rate "
            << options.lr;
  if (options.warmup > 0) std::cout << ", warm-up over " << options.warmup * 100 << "% of the steps";
  std::cout << (options.cosine ? ", cosine decay" : "") << ", weight decay " << options.weight_decay
            << ", label smoothing " << options.label_smoothing
            << (options.label_smoothing > 0 ? " (the training loss includes it; the test loss does not)" : "") << "\n";
  const std::string no_png = o.maps > 0 || o.curves ? png_unavailable() : "";
  if (!no_png.empty()) std::cout << "note: the figures are written as SVG only: " << no_png << "\n";
  if (o.curves) options.test = &test_set;  // its loss and accuracy after every epoch, for the training curves
  ProgressBar bar(std::cout, stdout_is_terminal());
  const double t0 = steady_seconds();
  std::vector<EpochResult> history;
  try {
    history = train(model, fit, options, &bar);
  } catch (const TrainingError& e) {
    throw TrainingError(std::string(e.what()) + " (nothing was saved)");
  }
  const double seconds = steady_seconds() - t0;

  const Evaluation e = evaluate(model.net(), test_set, options.batch_size);  // the batch check_memory checked
  std::printf("\ntest accuracy %.4f (%ld sequences), test loss %.4f, training time %.1f s\n", e.accuracy,
              static_cast<long>(test_set.size()), e.loss, seconds);
  std::cout << format_confusion(e, test_set.class_names);
  if (task != "ucr" && task != "fashion-mnist" && parse_task(task) == Task::Signal) {
    const Index step = default_signal_step(test_set.steps());
    const StepAttention share = attention_on_step(model, test_set, step);
    std::printf("attention on the deciding step %ld: attention map %.3f", static_cast<long>(step), share.attention);
    if (config.pooling == Pooling::Weighted) std::printf(", weighted pooling %.3f", share.pooling);
    std::printf(" (uniform would be %.3f)\n", 1.0 / static_cast<double>(test_set.steps()));
  }

  const std::string& out = o.out;  // created by check_before_loading
  nlohmann::json metadata = {{"task", task}, {"class_names", test_set.class_names}, {"features", config.features}};
  if (!normalization.mean.empty()) {
    metadata["input_mean"] = normalization.mean;  // x -> (x - input_mean) / input_std before the model
    metadata["input_std"] = normalization.stddev;
  }
  metadata["training"] = {{"epochs", options.epochs},
                          {"batch_size", options.batch_size},
                          {"lr", options.lr},
                          {"warmup", options.warmup},
                          {"cosine", options.cosine},
                          {"weight_decay", options.weight_decay},
                          {"label_smoothing", options.label_smoothing},
                          {"seed", options.seed}};
  save_classifier(model.net(), out + "/model.sqm", metadata);
  std::cout << "saved the model (architecture, weights, class names, input normalization) to " << out
            << "/model.sqm\n";
  const std::string dataset = dataset_label(o);
  if (o.curves && !history.empty()) {
    const std::string subtitle = dataset + "  \xC2\xB7  " + attention_layer_title(config);
    std::string note = "training: running means over each epoch's batches (training mode";
    if (options.label_smoothing > 0) note += ", loss with label smoothing " + train_detail::number(options.label_smoothing);
    note += o.validation > 0 ? "); validation and test: after each epoch" : "); test: after each epoch";
    write_training_curves(out + "/training_curves", history, "Training curves", subtitle, note, no_png.empty());
    std::cout << "training curves (loss and accuracy per epoch) in " << out << "/training_curves"
              << (no_png.empty() ? ".png/.svg/.csv\n" : ".svg/.csv\n");
  }
  write_maps(model, test_set, o.maps, out, dataset, no_png.empty());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "time_series_classifier: " << e.what() << "\n";
    return 1;
  }
}
