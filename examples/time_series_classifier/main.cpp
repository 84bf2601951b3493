// time_series_classifier: trains an attention classifier on a time-series data set, reports its test accuracy
// and confusion matrix, saves its weights and writes the attention maps of a few test sequences (PNG + CSV).
//   time_series_classifier                          built-in default: task 3 ("find the signal"), < 1 minute
//   time_series_classifier --task halves --no-positional
//   time_series_classifier --task ucr --train GunPoint_TRAIN.tsv --test GunPoint_TEST.tsv
//   time_series_classifier --task fashion-mnist      needs Debian's dataset-fashion-mnist
// --help lists every option. The data sources, the model and the maps are described in the headers beside.
#include <cxxopts.hpp>
#include <seqattn/io/weights.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <tuple>

#include "data.hpp"
#include "heatmap.hpp"
#include "idx.hpp"
#include "model.hpp"
#include "progress.hpp"
#include "train.hpp"
#include "ucr.hpp"

namespace {

using namespace tsc;

// Train and test sets for the --task chosen.
std::pair<Dataset, Dataset> load_data(const cxxopts::ParseResult& args) {
  const auto task = args["task"].as<std::string>();
  const auto seed = args["seed"].as<std::uint64_t>();
  if (task == "ucr") {
    if (!args.count("train")) throw DataError("--task ucr needs --train FILE (and optionally --test FILE)");
    Dataset train = load_ucr(args["train"].as<std::string>());
    Dataset test;
    if (args.count("test"))
      test = load_ucr(args["test"].as<std::string>(), train.class_names);
    else
      std::tie(train, test) = split(train, 0.2, seed);
    standardize(train, {&train, &test});
    return {std::move(train), std::move(test)};
  }
  if (task == "fashion-mnist") {
    const auto dir = args["fashion-dir"].as<std::string>();
    const auto n = args.count("train-size") ? args["train-size"].as<Index>() : 0;
    const auto m = args.count("test-size") ? args["test-size"].as<Index>() : 0;
    Dataset train = load_fashion_mnist(dir, "train", n), test = load_fashion_mnist(dir, "t10k", m);
    standardize(train, {&train, &test});
    return {std::move(train), std::move(test)};
  }
  const Task t = parse_task(task);
  const Index T = args["length"].as<Index>();
  const Index n = args.count("train-size") ? args["train-size"].as<Index>() : 2000;
  const Index m = args.count("test-size") ? args["test-size"].as<Index>() : 500;
  return {make_task(t, n, T, 2 * seed + 1), make_task(t, m, T, 2 * seed + 2)};
}

// Input, attention map and pooling weights of the first `count` test sequences -> out/attention_<i>.png/.csv
void write_maps(Classifier& model, const Dataset& test, Index count, const std::string& out) {
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
  for (Index b = 0; b < count; ++b) {
    const Index len = mask.length(b, x.dimension(1));
    const seqattn::Matrix<float> input = seqattn::sample_matrix(x, b).topRows(len).transpose();  // (F, len)
    const seqattn::Matrix<float> A = model.attention_map(b).topLeftCorner(len, len);
    const auto w = model.pooling_weights(b);
    const int cell = static_cast<int>(std::max<Index>(4, 384 / std::max<Index>(len, 1)));
    std::vector<Image> panels{render_heatmap(input, cell, input.minCoeff(), input.maxCoeff()),
                              render_heatmap(A, cell, 0.0, A.maxCoeff())};
    std::vector<std::vector<double>> rows;
    for (Index h = 0; h < model.heads(); ++h) {
      const auto Ah = model.attention_map(b, model.heads() > 1 ? h : -1);
      for (Index t = 0; t < len; ++t)
        for (Index s = 0; s < len; ++s)
          rows.push_back({static_cast<double>(h), static_cast<double>(t), static_cast<double>(s), Ah(t, s)});
    }
    if (!w.empty()) {
      seqattn::Matrix<float> W(1, len);
      for (Index t = 0; t < len; ++t) W(0, t) = w[static_cast<size_t>(t)];
      panels.push_back(render_heatmap(W, cell, 0.0, W.maxCoeff()));
      for (Index t = 0; t < len; ++t) rows.push_back({-1.0, -1.0, static_cast<double>(t), W(0, t)});
    }
    const std::string base = out + "/attention_" + std::to_string(b);
    write_png(base + ".png", stack(panels, cell));
    write_csv(base + ".csv", "head,query,key,weight", rows);
    std::cout << "  " << base << ".png/.csv: true " << test.class_names[static_cast<size_t>(labels[static_cast<size_t>(b)])]
              << ", predicted " << test.class_names[static_cast<size_t>(predicted[static_cast<size_t>(b)])] << "\n";
  }
}

int run(int argc, char** argv) {
  cxxopts::Options cli("time_series_classifier", "Attention classifier for time series (seqattn example)");
  cli.add_options()
    ("t,task", "uniform|halves|signal|multivariate (1-4), ucr or fashion-mnist", cxxopts::value<std::string>()->default_value("signal"))
    ("train", "ucr: training file (UCR text or .ts)", cxxopts::value<std::string>())
    ("test", "ucr: test file (default: 20% of --train)", cxxopts::value<std::string>())
    ("fashion-dir", "fashion-mnist: directory of the IDX files", cxxopts::value<std::string>()->default_value(fashion_mnist_default_dir()))
    ("n,train-size", "training sequences (synthetic: 2000; files: all)", cxxopts::value<Index>())
    ("test-size", "test sequences (synthetic: 500; fashion-mnist: all)", cxxopts::value<Index>())
    ("T,length", "synthetic: steps per sequence (maximum for multivariate)", cxxopts::value<Index>()->default_value("20"))
    ("a,attention", "mha (MultiHeadAttention) or self (SeqSelfAttention)", cxxopts::value<std::string>()->default_value("mha"))
    ("heads", "mha: attention heads", cxxopts::value<Index>()->default_value("1"))
    ("units", "self: additive attention units", cxxopts::value<Index>()->default_value("32"))
    ("d,d-model", "features after the projection", cxxopts::value<Index>()->default_value("32"))
    ("ffn", "hidden units of a feed-forward block after the attention (0: none)", cxxopts::value<Index>()->default_value("0"))
    ("p,pooling", "max, mean or weighted (attention pooling)", cxxopts::value<std::string>()->default_value("mean"))
    ("no-positional", "no positional encoding (the model cannot see order)")
    ("no-residual", "no residual connection around the attention")
    ("e,epochs", "training epochs", cxxopts::value<Index>()->default_value("20"))
    ("b,batch-size", "sequences per step", cxxopts::value<Index>()->default_value("32"))
    ("lr", "Adam learning rate", cxxopts::value<double>()->default_value("0.003"))
    ("seed", "seed of the data, the weights and the shuffling", cxxopts::value<std::uint64_t>()->default_value("1"))
    ("o,out", "output directory (model.sqw, attention maps)", cxxopts::value<std::string>()->default_value("tsc_out"))
    ("maps", "test sequences whose attention maps are written", cxxopts::value<Index>()->default_value("4"))
    ("h,help", "print this help");
  const auto args = cli.parse(argc, argv);
  if (args.count("help")) {
    std::cout << cli.help() << "\n";
    return 0;
  }
  if (!args.unmatched().empty()) throw std::invalid_argument("unexpected argument '" + args.unmatched().front() + "'");

  ModelConfig config;
  config.d_model = args["d-model"].as<Index>();
  config.attention = parse_attention(args["attention"].as<std::string>());
  config.heads = args["heads"].as<Index>();
  config.units = args["units"].as<Index>();
  config.ffn = args["ffn"].as<Index>();
  config.pooling = parse_pooling(args["pooling"].as<std::string>());
  config.positional = !args.count("no-positional");
  config.residual = !args.count("no-residual");
  config.seed = args["seed"].as<std::uint64_t>();

  auto [train_set, test_set] = load_data(args);
  const auto task = args["task"].as<std::string>();
  std::cout << "data: " << task << ", " << train_set.size() << " training and " << test_set.size()
            << " test sequences, up to " << std::max(train_set.steps(), test_set.steps()) << " steps, features "
            << train_set.features() << ", classes " << train_set.classes() << "\n";
  config.features = train_set.features();
  config.classes = train_set.classes();
  Classifier model(config);
  std::cout << model.net().summary();

  TrainOptions options;
  options.epochs = args["epochs"].as<Index>();
  options.batch_size = args["batch-size"].as<Index>();
  options.lr = args["lr"].as<double>();
  options.seed = config.seed;
  ProgressBar bar(std::cout, stdout_is_terminal());
  const double t0 = steady_seconds();
  train(model, train_set, options, &bar);
  const double seconds = steady_seconds() - t0;

  const Evaluation e = evaluate(model.net(), test_set);
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

  const std::string out = args["out"].as<std::string>();
  std::filesystem::create_directories(out);
  seqattn::save_weights(model.net(), out + "/model.sqw");
  std::cout << "saved the weights to " << out << "/model.sqw\n";
  write_maps(model, test_set, args["maps"].as<Index>(), out);
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
