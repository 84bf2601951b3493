// libFuzzer target for the command-line options of the time-series classifier example (parse_options in
// examples/time_series_classifier/options.hpp). The input is split at NUL bytes into arguments (at most 64)
// after argv[0]. Every input must either give options inside their documented ranges or throw
// std::invalid_argument naming the option (the program prints it and exits with 1; cxxopts' own exceptions are
// rethrown as std::invalid_argument); anything else (another exception, a crash, a sanitizer report, a value
// out of range, heads not dividing d-model, an unknown task) is a bug. Seeds include non-finite and partly
// numeric values ("--lr inf", "-e nan", "--lr 0.01x").
// Seeds: fuzz/corpus/options (written by fuzz/make_corpus.cpp).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "../examples/time_series_classifier/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args{"time_series_classifier"};
  std::string current;
  for (std::size_t i = 0; i < size && args.size() < 65; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(data[i]);
    }
  }
  if (!current.empty() && args.size() < 65) args.push_back(current);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    const tsc::CliOptions o = tsc::parse_options(static_cast<int>(argv.size()), argv.data());
    if (o.help) return o.help_text.empty() ? (std::abort(), 0) : 0;
    const tsc::Index max = tsc::options_detail::kMaxValue;
    for (tsc::Index v : {o.length, o.heads, o.units, o.d_model, o.batch_size})
      if (v < 1 || v > max) std::abort();
    for (tsc::Index v : {o.ffn, o.epochs, o.maps, o.train_size, o.test_size})
      if (v < 0 || v > max) std::abort();
    if (!(std::isfinite(o.lr) && o.lr > 0)) std::abort();
    if (o.attention == tsc::AttentionKind::MultiHead && o.d_model % o.heads != 0) std::abort();
    if (!tsc::options_detail::known_task(o.task) || (o.task == "ucr" && o.train_file.empty()) || o.out.empty())
      std::abort();
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).empty()) std::abort();
  }
  return 0;
}
