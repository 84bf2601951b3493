// parse_options of the time-series classifier example (examples/time_series_classifier/options.hpp): defaults,
// every option's value, --help, and errors (thrown, never exit, naming the option) for unknown options,
// malformed, non-finite and out-of-range values and stray arguments. fuzz/fuzz_options.cpp fuzzes the same
// function.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "time_series_classifier/options.hpp"

using namespace tsc;

namespace {

CliOptions parse(std::vector<std::string> args) {
  args.insert(args.begin(), "time_series_classifier");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ExampleOptions, DefaultsMatchTheHelp) {
  const CliOptions o = parse({});
  EXPECT_FALSE(o.help);
  EXPECT_EQ(o.task, "signal");
  EXPECT_EQ(o.length, 20);
  EXPECT_EQ(o.attention, AttentionKind::MultiHead);
  EXPECT_EQ(o.heads, 1);
  EXPECT_EQ(o.d_model, 32);
  EXPECT_EQ(o.pooling, Pooling::Mean);
  EXPECT_TRUE(o.positional);
  EXPECT_TRUE(o.residual);
  EXPECT_EQ(o.epochs, 20);
  EXPECT_EQ(o.batch_size, 32);
  EXPECT_DOUBLE_EQ(o.lr, 0.003);
  EXPECT_EQ(o.train_size, 0);
  EXPECT_EQ(o.out, "tsc_out");
  EXPECT_EQ(o.maps, 4);
}

TEST(ExampleOptions, ReadsEveryOption) {
  const CliOptions o = parse({"--task", "ucr", "--train", "a.tsv", "--test", "b.tsv", "-n", "100", "--test-size", "50",
                              "-T", "30", "-a", "self", "--heads", "2", "--units", "8", "-d", "16", "--ffn", "64",
                              "-p", "weighted", "--no-positional", "--no-residual", "-e", "3", "-b", "8", "--lr",
                              "0.01", "--seed", "9", "-o", "out", "--maps", "0"});
  EXPECT_EQ(o.task, "ucr");
  EXPECT_EQ(o.train_file, "a.tsv");
  EXPECT_EQ(o.test_file, "b.tsv");
  EXPECT_EQ(o.train_size, 100);
  EXPECT_EQ(o.test_size, 50);
  EXPECT_EQ(o.length, 30);
  EXPECT_EQ(o.attention, AttentionKind::SelfAttention);
  EXPECT_EQ(o.heads, 2);
  EXPECT_EQ(o.units, 8);
  EXPECT_EQ(o.d_model, 16);
  EXPECT_EQ(o.ffn, 64);
  EXPECT_EQ(o.pooling, Pooling::Weighted);
  EXPECT_FALSE(o.positional);
  EXPECT_FALSE(o.residual);
  EXPECT_EQ(o.epochs, 3);
  EXPECT_EQ(o.batch_size, 8);
  EXPECT_DOUBLE_EQ(o.lr, 0.01);
  EXPECT_EQ(o.seed, 9u);
  EXPECT_EQ(o.out, "out");
  EXPECT_EQ(o.maps, 0);
}

TEST(ExampleOptions, HelpReturnsTheTextInsteadOfExiting) {
  const CliOptions o = parse({"--help", "--lr", "-5"});
  EXPECT_TRUE(o.help);
  EXPECT_NE(o.help_text.find("--attention"), std::string::npos);
}

TEST(ExampleOptions, BadValuesThrowClearErrors) {
  EXPECT_EQ(error_of({"--batch-size", "0"}), "--batch-size: expected a whole number in [1, 1048576] but got '0'");
  EXPECT_EQ(error_of({"--heads", "-2"}), "--heads: expected a whole number in [1, 1048576] but got '-2'");
  EXPECT_EQ(error_of({"--lr=-1"}), "--lr: expected a finite number > 0 but got '-1'");
  EXPECT_EQ(error_of({"--lr", "0"}), "--lr: expected a finite number > 0 but got '0'");
  EXPECT_EQ(error_of({"-a", "lstm"}), "--attention: unknown attention 'lstm' (expected mha or self)");
  EXPECT_EQ(error_of({"-p", "sum"}), "--pooling: unknown pooling 'sum' (expected max, mean or weighted)");
  EXPECT_EQ(error_of({"stray"}), "unexpected argument 'stray'");
  EXPECT_EQ(error_of({"--no-such-option"}), "Option 'no-such-option' does not exist (see --help)");
  EXPECT_EQ(error_of({"--length"}), "Option 'length' is missing an argument (see --help)");
}

// cxxopts said "Argument 'inf' failed to parse" without the option; every numeric option now names itself,
// the type and range it expects, and refuses Inf, NaN, negative and partly numeric values.
TEST(ExampleOptions, NonFiniteAndMalformedNumbersNameTheOption) {
  EXPECT_EQ(error_of({"--lr", "inf"}), "--lr: expected a finite number > 0 but got 'inf'");
  EXPECT_EQ(error_of({"--lr", "nan"}), "--lr: expected a finite number > 0 but got 'nan'");
  EXPECT_EQ(error_of({"--lr", "-inf"}), "--lr: expected a finite number > 0 but got '-inf'");
  EXPECT_EQ(error_of({"--lr", "1e999"}), "--lr: expected a finite number > 0 but got '1e999'");
  EXPECT_EQ(error_of({"--lr", "0.01x"}), "--lr: expected a finite number > 0 but got '0.01x'");  // cxxopts took 0.01
  EXPECT_EQ(error_of({"--lr", ""}), "--lr: expected a finite number > 0 but got ''");
  EXPECT_EQ(error_of({"--lr", " 0.1"}), "--lr: expected a finite number > 0 but got ' 0.1'");
  EXPECT_DOUBLE_EQ(parse({"--lr", "1e30"}).lr, 1e30);  // finite: training stops if it diverges (train.hpp)
  EXPECT_EQ(error_of({"--epochs", "abc"}), "--epochs: expected a whole number in [0, 1048576] but got 'abc'");
  EXPECT_EQ(error_of({"-e", "inf"}), "--epochs: expected a whole number in [0, 1048576] but got 'inf'");
  EXPECT_EQ(error_of({"-e", "2.5"}), "--epochs: expected a whole number in [0, 1048576] but got '2.5'");
  EXPECT_EQ(error_of({"-e", "-1"}), "--epochs: expected a whole number in [0, 1048576] but got '-1'");
  EXPECT_EQ(error_of({"-e", "+-1"}), "--epochs: expected a whole number in [0, 1048576] but got '+-1'");
  EXPECT_EQ(parse({"-e", "+3"}).epochs, 3);
  EXPECT_EQ(error_of({"-e", "99999999999999999999"}),
            "--epochs: expected a whole number in [0, 1048576] but got '99999999999999999999'");
  EXPECT_EQ(error_of({"--seed", "-1"}), "--seed: expected a whole number in [0, 18446744073709551615] but got '-1'");
  EXPECT_EQ(error_of({"--seed", "nan"}), "--seed: expected a whole number in [0, 18446744073709551615] but got 'nan'");
  EXPECT_EQ(parse({"--seed", "18446744073709551615"}).seed, 18446744073709551615ull);
  // Every numeric option, with its lower bound.
  const std::vector<std::pair<std::string, int>> options = {
      {"train-size", 1}, {"test-size", 1}, {"length", 1}, {"heads", 1},      {"units", 1},
      {"d-model", 1},    {"ffn", 0},       {"epochs", 0}, {"batch-size", 1}, {"maps", 0}};
  for (const auto& [name, lo] : options) {
    const std::string expected =
        "--" + name + ": expected a whole number in [" + std::to_string(lo) + ", 1048576] but got '";
    for (const std::string& bad :
         std::vector<std::string>{"inf", "nan", "-inf", "1e3", "x", "", "1048577", std::to_string(lo - 1)})
      EXPECT_EQ(error_of({"--" + name, bad}), expected + bad + "'") << name << " " << bad;
  }
}

TEST(ExampleOptions, CombinationsAndNamesAreCheckedUpFront) {
  EXPECT_EQ(error_of({"-d", "30", "--heads", "4"}), "--heads: expected a divisor of --d-model (30) but got 4");
  EXPECT_EQ(parse({"-d", "30", "--heads", "4", "-a", "self"}).heads, 4);  // heads only matter for mha
  EXPECT_EQ(error_of({"--task", "sine"}),
            "--task: expected 1-4, uniform, halves, signal, multivariate, ucr or fashion-mnist but got 'sine'");
  EXPECT_EQ(parse({"--task", "3"}).task, "3");
  EXPECT_EQ(error_of({"--task", "ucr"}), "--task ucr needs --train FILE (and optionally --test FILE)");
  EXPECT_EQ(error_of({"--out", ""}), "--out: expected a directory name but got ''");
}

}  // namespace
