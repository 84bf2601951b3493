#pragma once
// Command-line options of the time-series classifier.
//   parse_options(argc, argv)   -> CliOptions; throws std::invalid_argument (an unknown option, a missing, malformed
//                               or out-of-range value, an unexpected argument), never exits. With --help, `help` is
//                               set and help_text holds the text to print; nothing else is checked.
// Every message names the option: "--lr: expected a finite number > 0 but got 'inf'". Numeric values are read
// here, not by cxxopts (whose "Argument 'inf' failed to parse" names no option, and whose numbers accept trailing
// garbage: "0.01x"): the whole value must be the number.
// Ranges (checked here, so the program never starts with a value it cannot run): d-model, heads, units,
// batch-size, length, train-size and test-size whole numbers in [1, 2^20]; ffn, epochs and maps in [0, 2^20];
// seed in [0, 2^64 - 1]; lr a finite number > 0; heads a divisor of d-model (-a mha); attention, pooling and task
// among their names; --task ucr needs --train; kernels a comma-separated list of sizes in [1, 2^20]; downsample and
// blocks in [1, 2^20]; patience in [0, 2^20]; dropout, label-smoothing, warmup and validation in [0, 1); weight-decay
// a finite number >= 0. Files and the output directory are checked by checks.hpp.
// `given` holds the long names of the options on the command line: with --task ucr the recipe (recipe.hpp) sets
// every model and training option that is not given.
// tests/unit/test_example_options.cpp tests it; fuzz/fuzz_options.cpp fuzzes it.

#include <cxxopts.hpp>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

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
  Index width = 0;  // self: attention_width, 0: global
  Pooling pooling = Pooling::Mean;
  bool positional = true, residual = true;
  Index epochs = 20, batch_size = 32;
  double lr = 0.003;
  std::uint64_t seed = 1;
  std::string out = "tsc_out";
  Index maps = 4;
  bool curves = true;  // evaluate the test set after every epoch; write training_curves.png/.svg/.csv
  FrontEnd front_end = FrontEnd::Dense;
  std::vector<Index> kernels{7, 5, 3};
  Index downsample = 1, blocks = 1, patience = 0;
  double dropout = 0, warmup = 0, weight_decay = 0, label_smoothing = 0, validation = 0;
  bool cosine = false;
  std::set<std::string> given;  // long names of the options on the command line
};

namespace options_detail {
inline constexpr Index kMaxValue = Index{1} << 20;

// The whole of `text` as an integer of type T (an optional '+', then decimal digits; '-' for signed T only).
template <class T>
bool parse_whole(const std::string& text, T& value) {
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (first != last && *first == '+') ++first;
  if (first == last || *first == '+' || (first != text.data() && *first == '-')) return false;
  const auto [end, ec] = std::from_chars(first, last, value);
  return ec == std::errc() && end == last;
}

// The value of --name: a whole number in [lo, hi]; std::invalid_argument naming the option otherwise.
inline Index whole_in_range(const cxxopts::ParseResult& args, const std::string& name, Index lo, Index hi = kMaxValue) {
  const std::string text = args[name].as<std::string>();
  Index v = 0;
  if (!parse_whole(text, v) || v < lo || v > hi)
    throw std::invalid_argument("--" + name + ": expected a whole number in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "] but got '" + text + "'");
  return v;
}

// The value of --name: a finite number > 0 (the whole text: strtod syntax, no leading space).
inline double positive_number(const cxxopts::ParseResult& args, const std::string& name) {
  const std::string text = args[name].as<std::string>();
  double v = 0;
  char* end = nullptr;
  if (!text.empty() && !std::isspace(static_cast<unsigned char>(text[0]))) v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || text.empty() || !(std::isfinite(v) && v > 0))
    throw std::invalid_argument("--" + name + ": expected a finite number > 0 but got '" + text + "'");
  return v;
}

// The value of --name: a number in [lo, hi) (the whole text, strtod syntax).
inline double number_in(const cxxopts::ParseResult& args, const std::string& name, double lo, double hi) {
  const std::string text = args[name].as<std::string>();
  double v = 0;
  char* end = nullptr;
  if (!text.empty() && !std::isspace(static_cast<unsigned char>(text[0]))) v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || text.empty() || !(v >= lo && v < hi)) {
    std::ostringstream range;
    range << "[" << lo << ", " << hi << ")";
    throw std::invalid_argument("--" + name + ": expected a number in " + range.str() + " but got '" + text + "'");
  }
  return v;
}

// The value of --name: comma-separated whole numbers in [1, kMaxValue], at least one.
inline std::vector<Index> whole_list(const cxxopts::ParseResult& args, const std::string& name) {
  const std::string text = args[name].as<std::string>();
  std::vector<Index> out;
  size_t begin = 0;
  for (;;) {
    const size_t end = text.find(',', begin);
    const std::string item = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    Index v = 0;
    if (!parse_whole(item, v) || v < 1 || v > kMaxValue)
      throw std::invalid_argument("--" + name + ": expected comma-separated whole numbers in [1, " +
                                  std::to_string(kMaxValue) + "] but got '" + text + "'");
    out.push_back(v);
    if (end == std::string::npos) return out;
    begin = end + 1;
  }
}

inline std::uint64_t seed_value(const cxxopts::ParseResult& args) {
  const std::string text = args["seed"].as<std::string>();
  std::uint64_t v = 0;
  if (!parse_whole(text, v))
    throw std::invalid_argument("--seed: expected a whole number in [0, " +
                                std::to_string(std::numeric_limits<std::uint64_t>::max()) + "] but got '" + text + "'");
  return v;
}

// The value of --name through parse (parse_attention, parse_pooling), its message prefixed with the option.
template <class Parse>
auto named_choice(const cxxopts::ParseResult& args, const std::string& name, Parse parse) {
  try {
    return parse(args[name].as<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--" + name + ": " + e.what());
  }
}

// `text` with the typographic quotes cxxopts puts around names (U+2018, U+2019) replaced by '.
inline std::string ascii_quotes(std::string text) {
  for (const char* quote : {"\xE2\x80\x98", "\xE2\x80\x99"})
    for (size_t at = text.find(quote); at != std::string::npos; at = text.find(quote, at)) text.replace(at, 3, "'");
  return text;
}

// The names --task accepts.
inline bool known_task(const std::string& task) {
  if (task == "ucr" || task == "fashion-mnist") return true;
  for (int i = 1; i <= 4; ++i)
    if (task == std::to_string(i) || task == task_name(static_cast<Task>(i))) return true;
  return false;
}
}  // namespace options_detail

inline CliOptions parse_options(int argc, const char* const* argv) {
  using namespace options_detail;
  using cxxopts::value;
  using text = std::string;  // numeric options are read as text and parsed by options_detail (messages name them)
  cxxopts::Options cli("time_series_classifier", "Attention classifier for time series (seqattn example)");
  // clang-format off
  cli.add_options()
    ("t,task", "uniform|halves|signal|multivariate (1-4), ucr or fashion-mnist", value<text>()->default_value("signal"))
    ("train", "ucr: training file (.ts, .arff, .tsv, .txt)", value<text>())
    ("test", "ucr: test file (default: 20% of --train)", value<text>())
    ("fashion-dir", "fashion-mnist: directory of the IDX files", value<text>()->default_value(fashion_mnist_default_dir()))
    ("n,train-size", "training sequences (synthetic: 2000; files: all)", value<text>())
    ("test-size", "test sequences (synthetic: 500; fashion-mnist: all)", value<text>())
    ("T,length", "synthetic: steps per sequence (maximum for multivariate)", value<text>()->default_value("20"))
    ("front", "front end: dense (a projection) or conv (Conv1D + BatchNorm + ReLU per --kernels)", value<text>()->default_value("dense"))
    ("kernels", "conv front end: kernel sizes, one block each", value<text>()->default_value("7,5,3"))
    ("downsample", "average pooling of this size before the attention (1: none)", value<text>()->default_value("1"))
    ("blocks", "attention (+ feed-forward) blocks", value<text>()->default_value("1"))
    ("dropout", "dropout before the pooling, in [0, 1)", value<text>()->default_value("0"))
    ("a,attention", "mha (MultiHeadAttention) or self (SeqSelfAttention)", value<text>()->default_value("mha"))
    ("heads", "mha: attention heads (a divisor of --d-model)", value<text>()->default_value("1"))
    ("units", "self: additive attention units", value<text>()->default_value("32"))
    ("width", "self: attention width, the steps each step attends to (0: all; bounds memory on long series)", value<text>()->default_value("0"))
    ("d,d-model", "features after the projection", value<text>()->default_value("32"))
    ("ffn", "hidden units of a feed-forward block after the attention (0: none)", value<text>()->default_value("0"))
    ("p,pooling", "max, mean or weighted (attention pooling)", value<text>()->default_value("mean"))
    ("no-positional", "no positional encoding (the model cannot see order)")
    ("no-residual", "no residual connection around the attention")
    ("e,epochs", "training epochs", value<text>()->default_value("20"))
    ("b,batch-size", "sequences per step", value<text>()->default_value("32"))
    ("lr", "Adam learning rate (a finite number > 0)", value<text>()->default_value("0.003"))
    ("warmup", "fraction of the steps with a linear learning-rate warm-up, in [0, 1)", value<text>()->default_value("0"))
    ("cosine", "cosine decay of the learning rate to 0 at the last step")
    ("weight-decay", "AdamW's decoupled weight decay (0: Adam)", value<text>()->default_value("0"))
    ("label-smoothing", "label smoothing of the loss, in [0, 1)", value<text>()->default_value("0"))
    ("validation", "hold out this fraction of the training set (per class) and keep the best epoch's weights", value<text>()->default_value("0"))
    ("patience", "with --validation: stop after this many epochs without a better one (0: never)", value<text>()->default_value("0"))
    ("seed", "seed of the data, the weights and the shuffling", value<text>()->default_value("1"))
    ("o,out", "output directory (model.sqm, attention figures, training curves)", value<text>()->default_value("tsc_out"))
    ("maps", "test sequences whose attention figures are written (attention_<i>.png/.svg/.csv; with several heads also attention_<i>_heads.png/.svg)", value<text>()->default_value("4"))
    ("no-curves", "no training curves (training_curves.png/.svg/.csv), and no test evaluation after every epoch")
    ("h,help", "print this help");
  // clang-format on
  cxxopts::ParseResult args;
  try {
    args = cli.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {  // unknown option, missing value: cxxopts names the option
    throw std::invalid_argument(ascii_quotes(e.what()) + " (see --help)");
  }
  CliOptions o;
  if (args.count("help")) {
    o.help = true;
    o.help_text = cli.help();
    return o;
  }
  if (!args.unmatched().empty()) throw std::invalid_argument("unexpected argument '" + args.unmatched().front() + "'");
  o.task = args["task"].as<std::string>();
  if (!known_task(o.task))
    throw std::invalid_argument(
        "--task: expected 1-4, uniform, halves, signal, multivariate, ucr or fashion-mnist but got '" + o.task + "'");
  if (args.count("train")) o.train_file = args["train"].as<std::string>();
  if (args.count("test")) o.test_file = args["test"].as<std::string>();
  if (o.task == "ucr" && o.train_file.empty())
    throw std::invalid_argument("--task ucr needs --train FILE (and optionally --test FILE)");
  o.fashion_dir = args["fashion-dir"].as<std::string>();
  if (args.count("train-size")) o.train_size = whole_in_range(args, "train-size", 1);
  if (args.count("test-size")) o.test_size = whole_in_range(args, "test-size", 1);
  o.length = whole_in_range(args, "length", 1);
  o.attention = named_choice(args, "attention", parse_attention);
  o.heads = whole_in_range(args, "heads", 1);
  o.units = whole_in_range(args, "units", 1);
  o.width = whole_in_range(args, "width", 0);
  if (o.width > 0 && o.attention != AttentionKind::SelfAttention)
    throw std::invalid_argument("--width: applies to -a self only (MultiHeadAttention attends to every step)");
  o.d_model = whole_in_range(args, "d-model", 1);
  if (o.attention == AttentionKind::MultiHead && o.d_model % o.heads != 0)
    throw std::invalid_argument("--heads: expected a divisor of --d-model (" + std::to_string(o.d_model) +
                                ") but got " + std::to_string(o.heads));
  o.ffn = whole_in_range(args, "ffn", 0);
  o.pooling = named_choice(args, "pooling", parse_pooling);
  o.positional = !args.count("no-positional");
  o.residual = !args.count("no-residual");
  o.epochs = whole_in_range(args, "epochs", 0);
  o.batch_size = whole_in_range(args, "batch-size", 1);
  o.lr = positive_number(args, "lr");
  o.seed = seed_value(args);
  o.out = args["out"].as<std::string>();
  if (o.out.empty()) throw std::invalid_argument("--out: expected a directory name but got ''");
  o.maps = whole_in_range(args, "maps", 0);
  o.curves = !args.count("no-curves");
  o.front_end = named_choice(args, "front", parse_front_end);
  o.kernels = whole_list(args, "kernels");
  o.downsample = whole_in_range(args, "downsample", 1);
  o.blocks = whole_in_range(args, "blocks", 1);
  o.dropout = number_in(args, "dropout", 0, 1);
  o.warmup = number_in(args, "warmup", 0, 1);
  o.cosine = args.count("cosine") > 0;
  o.weight_decay = number_in(args, "weight-decay", 0, std::numeric_limits<double>::max());
  o.label_smoothing = number_in(args, "label-smoothing", 0, 1);
  o.validation = number_in(args, "validation", 0, 1);
  o.patience = whole_in_range(args, "patience", 0);
  if (o.patience > 0 && o.validation == 0)
    throw std::invalid_argument("--patience: needs --validation (the held-out fraction it watches)");
  for (const auto& kv : args.arguments()) o.given.insert(kv.key());
  return o;
}

}  // namespace tsc
