// parse_options of the time-series classifier example (examples/time_series_classifier/options.hpp): defaults,
// every option's value, --help, and errors (thrown, never exit) for unknown options, malformed and
// out-of-range values and stray arguments. fuzz/fuzz_options.cpp fuzzes the same function.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../../examples/time_series_classifier/options.hpp"

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
  EXPECT_NE(error_of({"--batch-size", "0"}).find("--batch-size expects a value in [1, 1048576] but got 0"), std::string::npos);
  EXPECT_NE(error_of({"--heads", "-2"}).find("--heads expects a value in [1, 1048576] but got -2"), std::string::npos);
  EXPECT_NE(error_of({"--lr=-1"}).find("--lr expects a finite value > 0 but got -1"), std::string::npos);
  EXPECT_NE(error_of({"--lr", "0"}).find("--lr expects a finite value > 0 but got 0"), std::string::npos);
  EXPECT_NE(error_of({"--lr", "inf"}), "(no error)");
  EXPECT_NE(error_of({"-a", "lstm"}).find("unknown attention 'lstm'"), std::string::npos);
  EXPECT_NE(error_of({"-p", "sum"}).find("unknown pooling 'sum'"), std::string::npos);
  EXPECT_NE(error_of({"stray"}).find("unexpected argument 'stray'"), std::string::npos);
  EXPECT_NE(error_of({"--epochs", "abc"}), "(no error)");
  EXPECT_NE(error_of({"--no-such-option"}), "(no error)");
  EXPECT_NE(error_of({"--length"}), "(no error)");  // missing value
}

}  // namespace
