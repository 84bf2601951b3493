#pragma once
// Command-line options of the time-series classifier.
//   parse_options(argc, argv)   -> CliOptions; throws std::invalid_argument (a bad or out-of-range value, an
//                               unexpected argument) or cxxopts::exceptions::exception (an unknown option, a
//                               missing or malformed value), never exits. With --help, `help` is set and
//                               help_text holds the text to print; nothing else is checked.
// Ranges (checked here, so the program never starts with a value it cannot run): d-model, heads, units,
// batch-size, length, train-size and test-size in [1, 2^20]; ffn, epochs and maps in [0, 2^20]; lr finite and
// > 0; attention and pooling among their names. --task is checked when the data is loaded (main.cpp).
// tests/unit/test_example_options.cpp tests it; fuzz/fuzz_options.cpp fuzzes it.

#include <cxxopts.hpp>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "idx.hpp"
#include "model.hpp"

namespace tsc {

struct CliOptions {
  bool help = false;
  std::string help_text;
  std::string task = "signal";
  std::string train_file, test_file;  // ucr: --train (required), --test (optional)
  std::string fashion_dir = fashion_mnist_default_dir();
  Index train_size = 0, test_size = 0;  // 0: not given (the task's default)
  Index length = 20;
  AttentionKind attention = AttentionKind::MultiHead;
  Index heads = 1, units = 32, d_model = 32, ffn = 0;
  Pooling pooling = Pooling::Mean;
  bool positional = true, residual = true;
  Index epochs = 20, batch_size = 32;
  double lr = 0.003;
  std::uint64_t seed = 1;
  std::string out = "tsc_out";
  Index maps = 4;
};

namespace options_detail {
inline constexpr Index kMaxValue = Index{1} << 20;

inline Index in_range(const cxxopts::ParseResult& args, const std::string& name, Index lo) {
  const Index v = args[name].as<Index>();
  if (v < lo || v > kMaxValue)
    throw std::invalid_argument("--" + name + " expects a value in [" + std::to_string(lo) + ", " +
                                std::to_string(kMaxValue) + "] but got " + std::to_string(v));
  return v;
}
}  // namespace options_detail

inline CliOptions parse_options(int argc, const char* const* argv) {
  using options_detail::in_range;
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
  CliOptions o;
  if (args.count("help")) {
    o.help = true;
    o.help_text = cli.help();
    return o;
  }
  if (!args.unmatched().empty()) throw std::invalid_argument("unexpected argument '" + args.unmatched().front() + "'");
  o.task = args["task"].as<std::string>();
  if (args.count("train")) o.train_file = args["train"].as<std::string>();
  if (args.count("test")) o.test_file = args["test"].as<std::string>();
  o.fashion_dir = args["fashion-dir"].as<std::string>();
  if (args.count("train-size")) o.train_size = in_range(args, "train-size", 1);
  if (args.count("test-size")) o.test_size = in_range(args, "test-size", 1);
  o.length = in_range(args, "length", 1);
  o.attention = parse_attention(args["attention"].as<std::string>());
  o.heads = in_range(args, "heads", 1);
  o.units = in_range(args, "units", 1);
  o.d_model = in_range(args, "d-model", 1);
  o.ffn = in_range(args, "ffn", 0);
  o.pooling = parse_pooling(args["pooling"].as<std::string>());
  o.positional = !args.count("no-positional");
  o.residual = !args.count("no-residual");
  o.epochs = in_range(args, "epochs", 0);
  o.batch_size = in_range(args, "batch-size", 1);
  o.lr = args["lr"].as<double>();
  if (!(std::isfinite(o.lr) && o.lr > 0)) {
    std::ostringstream got;
    got << o.lr;
    throw std::invalid_argument("--lr expects a finite value > 0 but got " + got.str());
  }
  o.seed = args["seed"].as<std::uint64_t>();
  o.out = args["out"].as<std::string>();
  o.maps = in_range(args, "maps", 0);
  return o;
}

}  // namespace tsc
