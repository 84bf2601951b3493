// The UCR/UEA loader of the time-series classifier example: the text formats and .ts on good input, and a
// clear "file:line: what" error (never a crash) on malformed input: byte-order marks, a missing label column,
// labels outside the training classes, directories and missing files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "time_series_classifier/ucr.hpp"

using namespace tsc;

namespace {

// The message of the DataError that parse_ucr(text, name) throws ("" when it does not throw).
std::string error_of(const std::string& text, const std::string& name = "data.csv",
                     const std::vector<std::string>& classes = {}) {
  try {
    parse_ucr(text, name, classes);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ExampleUcr, ReadsCommaSeparatedSeries) {
  const Dataset d = parse_ucr("1,0.5,0.25,1.0\n2,1,2,3\n\n1,-1,-2,-3\n", "train.csv");
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.steps(), 3);
  EXPECT_EQ(d.features(), 1);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(d.lengths, (std::vector<Index>{3, 3, 3}));
  EXPECT_FLOAT_EQ(d.x(0, 1, 0), 0.25f);
  EXPECT_FLOAT_EQ(d.x(2, 2, 0), -3.0f);
}

TEST(ExampleUcr, ReadsTabSeparatedSeriesWithTrailingNaNAsShorter) {
  const Dataset d = parse_ucr("1\t1\t2\t3\r\n-1\t4\t5\tNaN\r\n", "train.tsv");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"-1", "1"}));  // numeric order
  EXPECT_EQ(d.labels, (std::vector<int>{1, 0}));
  EXPECT_EQ(d.lengths, (std::vector<Index>{3, 2}));
  EXPECT_FLOAT_EQ(d.x(1, 1, 0), 5.0f);
  EXPECT_FLOAT_EQ(d.x(1, 2, 0), 0.0f);  // padding
}

TEST(ExampleUcr, ReadsSpaceSeparatedScientificNotationAndNormalizesLabels) {
  const Dataset d = parse_ucr("  2.0000000e+00  -7.5e-01  2.5e-01\n  1.0000000e+00   1.0e+00  2.0e+00\n", "a.txt");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(d.labels, (std::vector<int>{1, 0}));
  EXPECT_FLOAT_EQ(d.x(0, 0, 0), -0.75f);
}

TEST(ExampleUcr, TextLabelsAndGivenClasses) {
  const Dataset d = parse_ucr("walk,1,2\nrun,3,4\n", "t.csv");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"run", "walk"}));
  const Dataset test = parse_ucr("walk,5,6\n", "test.csv", d.class_names);
  EXPECT_EQ(test.labels, (std::vector<int>{1}));
  EXPECT_EQ(error_of("jump,5,6\n", "test.csv", d.class_names),
            "test.csv:1: label 'jump' is not one of the given classes (run, walk)");
}

TEST(ExampleUcr, TextMissingValuesInTheMiddleAreFlaggedAndTrailingOnesShorten) {
  Dataset d = parse_ucr("1,NaN,0.5,?,2\n2,1,2,3,NaN\n", "gaps.tsv");
  ASSERT_EQ(d.lengths, (std::vector<Index>{4, 3}));
  EXPECT_TRUE(d.has_missing());
  EXPECT_TRUE(d.is_missing(0, 0, 0));
  EXPECT_FALSE(d.is_missing(0, 1, 0));
  EXPECT_TRUE(d.is_missing(0, 2, 0));
  EXPECT_FALSE(d.is_missing(1, 2, 0));
  EXPECT_EQ(d.x(0, 0, 0), 0.0f);  // never NaN
  EXPECT_EQ(impute_missing(d), 2);
  EXPECT_FLOAT_EQ(d.x(0, 0, 0), 0.5f);   // the nearest present value carried to the start
  EXPECT_FLOAT_EQ(d.x(0, 2, 0), 1.25f);  // halfway between 0.5 and 2
}

TEST(ExampleUcr, ReportsMalformedTextLinesWithFileAndLine) {
  EXPECT_EQ(error_of("1,2,3\n1,0.5,abc\n"), "data.csv:2: value 2 'abc' is not a number");
  EXPECT_EQ(error_of("1,0.5,,0.3\n"), "data.csv:1: value 2 is empty");
  EXPECT_EQ(error_of("\n\n1\n"), "data.csv:3: no values after the class label '1'");
  EXPECT_EQ(error_of(",1,2\n"), "data.csv:1: the class label (first field) is empty");
  EXPECT_EQ(error_of("NaN,1,2\n"), "data.csv:1: the class label (first field) is missing");
  EXPECT_EQ(error_of("1,1e999\n"), "data.csv:1: value 1 '1e999' is infinite or out of the float range");
  EXPECT_EQ(error_of("1,inf\n"), "data.csv:1: value 1 'inf' is infinite or out of the float range");
  EXPECT_EQ(error_of("1,NaN,NaN\n"), "data.csv:1: every value is missing");
  EXPECT_EQ(error_of(""), "data.csv: no series found");
  EXPECT_EQ(error_of("1 2 x3\n", "a.txt"), "a.txt:1: value 2 'x3' is not a number");
}

TEST(ExampleUcr, ReadsMultivariateTsWithUnequalLengths) {
  const std::string ts =
      "# a comment\n"
      "@problemName Toy\n@timeStamps false\n@missing true\n@univariate false\n@dimensions 2\n"
      "@equalLength false\n@classLabel true B A\n@data\n"
      "1,2,3:4,5,6:A\n"
      "7,8,?:9,10,?:B\n";
  const Dataset d = parse_ucr(ts, "toy.ts");
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.features(), 2);
  EXPECT_EQ(d.steps(), 3);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"B", "A"}));  // declared order
  EXPECT_EQ(d.labels, (std::vector<int>{1, 0}));
  EXPECT_EQ(d.lengths, (std::vector<Index>{3, 2}));
  EXPECT_FLOAT_EQ(d.x(0, 2, 1), 6.0f);  // step 2, dimension 2
  EXPECT_FLOAT_EQ(d.x(1, 1, 0), 8.0f);
  // Detected from the content too (no .ts name).
  EXPECT_EQ(parse_ucr(ts, "toy.txt").size(), 2);
}

TEST(ExampleUcr, ReportsMalformedTsLinesWithFileAndLine) {
  const std::string head = "@classLabel true A B\n@data\n";
  EXPECT_EQ(error_of("@problemName x\n", "x.ts"), "x.ts: no @data line (is this a .ts file?)");
  EXPECT_EQ(error_of("@timeStamps true\n@data\n", "x.ts"),
            "x.ts:1: timestamped series (@timeStamps true) are not supported");
  EXPECT_EQ(error_of("@classLabel false\n@data\n", "x.ts"),
            "x.ts:1: @classLabel false: data without class labels is not supported");
  EXPECT_EQ(error_of("@targetLabel true\n@data\n", "x.ts"),
            "x.ts:1: regression data (@targetLabel) is not supported, only classification");
  EXPECT_EQ(error_of("@dimensions two\n@data\n", "x.ts"),
            "x.ts:1: @dimensions expects a positive whole number but got 'two'");
  EXPECT_EQ(error_of("@problemName x\nhello\n", "x.ts"),
            "x.ts:2: expected a header line starting with '@' (or @data) but got 'hello'");
  EXPECT_EQ(error_of(head + "1,2:3,4:A\n1,2:B\n", "x.ts"), "x.ts:4: expected 2 dimensions but got 1");
  EXPECT_EQ(error_of("@dimensions 3\n" + head + "1,2:3,4:A\n", "x.ts"), "x.ts:4: expected 3 dimensions but got 2");
  EXPECT_EQ(error_of(head + "1,2,3:4,5:A\n", "x.ts"),
            "x.ts:3: dimension 2 has 2 values but dimension 1 has 3 (the dimensions of a case must have equal lengths)");
  EXPECT_EQ(error_of(head + "1,2:3,4:C\n", "x.ts"), "x.ts:3: label 'C' is not one of the declared classes (A, B)");
  EXPECT_EQ(error_of(head + "1,2,3\n", "x.ts"),
            "x.ts:3: expected dimensions separated by ':' and the class label last, but found no ':'");
  EXPECT_EQ(error_of(head + "1,2:3,4:\n", "x.ts"), "x.ts:3: the class label (after the last ':') is empty");
  EXPECT_EQ(error_of(head + "1,x:3,4:A\n", "x.ts"), "x.ts:3: dimension 1 value 2 'x' is not a number");
  EXPECT_EQ(error_of(head + "?,?:?,?:A\n", "x.ts"), "x.ts:3: dimension 1 has no values");
  EXPECT_EQ(error_of(head + "1,,2:A\n", "x.ts"), "x.ts:3: value 2 is empty");
}

TEST(ExampleUcr, LoadsFilesAndNamesMissingOnes) {
  const std::string path = ::testing::TempDir() + "tsc_ucr_test.tsv";
  {
    std::ofstream out(path);
    out << "0\t1\t2\n1\t3\t4\n";
  }
  const Dataset d = load_ucr(path);
  EXPECT_EQ(d.size(), 2);
  std::remove(path.c_str());
  try {
    load_ucr(path);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot open the file: No such file or directory");
  }
}

// Seeded random edits of valid files: the loader either succeeds or throws DataError, nothing else.
TEST(ExampleUcr, NeverCrashesOnCorruptedInput) {
  const std::vector<std::string> seeds = {"1,0.5,0.25\n2,1,2\n", "1\t1\tNaN\n", "@classLabel true A B\n@data\n1,2:3,4:A\n"};
  const std::string alphabet = "0123456789,.:\t\n -+eE?@#aNn";
  seqattn::Rng rng(42);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text = seeds[static_cast<size_t>(iter) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng.below(text.size() + 1);
      const char c = alphabet[rng.below(alphabet.size())];
      switch (rng.below(3)) {
        case 0: text.insert(pos, 1, c); break;
        case 1: if (pos < text.size()) text.erase(pos, 1); break;
        default: if (pos < text.size()) text[pos] = c; break;
      }
    }
    try {
      const Dataset d = parse_ucr(text, iter % 2 ? "f.ts" : "f.csv");
      ASSERT_GT(d.size(), 0);
      for (int label : d.labels) ASSERT_TRUE(label >= 0 && label < d.classes());
    } catch (const DataError&) {
    }
  }
}

// A UTF-8 byte-order mark (as some editors and Excel write it) became part of the first label: "\xEF\xBB\xBF1"
// and "1" were two classes.
TEST(ExampleUcr, SkipsAUtf8ByteOrderMark) {
  const std::string bom = "\xEF\xBB\xBF";
  const Dataset d = parse_ucr(bom + "1,0.5,0.25\n2,1,2\n1,3,4\n", "train.csv");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 1, 0}));
  EXPECT_FLOAT_EQ(d.x(0, 0, 0), 0.5f);
  const Dataset tsv = parse_ucr(bom + "1\t0.5\n2\t1\n1\t3\n", "train.tsv");
  EXPECT_EQ(tsv.class_names, (std::vector<std::string>{"1", "2"}));
  const Dataset joined = parse_ucr(bom + "1,0.5\n2,1\n" + bom + "2,3\n", "joined.csv");  // cat a.csv b.csv
  EXPECT_EQ(joined.class_names, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(joined.labels, (std::vector<int>{0, 1, 1}));
  const Dataset ts = parse_ucr(bom + "@classLabel true A B\n@data\n1,2:A\n3,4:B\n", "toy.txt");  // detected as .ts
  EXPECT_EQ(ts.size(), 2);
  EXPECT_EQ(ts.class_names, (std::vector<std::string>{"A", "B"}));
  // Found by fuzz_ucr: a mark inside the header's class list (files joined after the header line) kept it.
  const Dataset inner = parse_ucr("@classLabel true " + bom + "A B\n@data\n1,2:A\n3,4:" + bom + "B\n", "toy.ts");
  EXPECT_EQ(inner.class_names, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(inner.labels, (std::vector<int>{0, 1}));
  EXPECT_THROW(parse_ucr("@classLabel true A " + bom + " B\n@data\n1,2:A\n", "toy.ts"), DataError);
  EXPECT_EQ(error_of(std::string("\xFF\xFE") + "1,2\n"),
            "data.csv: the file is UTF-16 text (byte-order mark FF FE); save it as UTF-8 or ASCII");
}

// A file of values only (no label column) became one class per distinct first value (57 classes of 60 rows).
TEST(ExampleUcr, RefusesAFileWithoutALabelColumn) {
  EXPECT_EQ(error_of("0.4213,0.5,0.25\n0.1,1,2\n"),
            "data.csv:1: the first column must be the class label, but '0.4213' is not a whole number (does the "
            "file have a label column?)");
  EXPECT_EQ(error_of("1\t2\t3\n\n-0.75\t2\t3\n", "values.tsv"),
            "values.tsv:3: the first column must be the class label, but '-0.75' is not a whole number (does the "
            "file have a label column?)");
  EXPECT_EQ(error_of("1.5e+00 2 3\n", "a.txt"),
            "a.txt:1: the first column must be the class label, but '1.5e+00' is not a whole number (does the file "
            "have a label column?)");
  // fuzz_ucr found it: a byte-order mark glued to a fractional label (whitespace-separated) hid the number
  EXPECT_EQ(error_of("1\t0.5\n1.0001\xEF\xBB\xBF\t\t1e3\t4\n", "bom.tsv"),
            "bom.tsv:2: the first column must be the class label, but '1.0001' is not a whole number (does the file "
            "have a label column?)");
  EXPECT_EQ(error_of("inf,1,2\n"),
            "data.csv:1: the first column must be the class label, but 'inf' is not a whole number (does the file "
            "have a label column?)");
  // Whole numbers written as floats (old UCR .txt files), negative and text labels are labels.
  EXPECT_EQ(parse_ucr("  1.0000000e+00  0.5\n -1.0000000e+00  0.25\n", "old.txt").class_names,
            (std::vector<std::string>{"-1", "1"}));
  EXPECT_EQ(parse_ucr("walk,0.5\nrun,0.25\n", "t.csv").classes(), 2);
}

TEST(ExampleUcr, TestLabelsOutsideTheTrainingClassesNameBothFiles) {
  EXPECT_EQ(error_of("1,0.5\n3,0.25\n", "test.csv", {"1", "2"}),
            "test.csv:2: label '3' is not one of the given classes (1, 2)");
  try {
    parse_ucr("1,0.5\n3,0.25\n", "test.csv", {"1", "2"}, "train.csv");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), "test.csv:2: label '3' is not one of the classes of train.csv (1, 2)");
  }
}

// A directory was read as an empty file ("no series found"); missing files had no reason.
TEST(ExampleUcr, NamesDirectoriesAndMissingFilesWithTheReason) {
  const std::string dir = ::testing::TempDir() + "tsc_ucr_dir";
  std::filesystem::create_directories(dir);
  for (const std::string& path : {dir, dir + "/"}) {
    try {
      load_ucr(path);
      FAIL() << "expected DataError";
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()), path + ": is a directory, not a data file");
    }
  }
  try {
    load_ucr(dir + "/missing.tsv");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), dir + "/missing.tsv: cannot open the file: No such file or directory");
  }
  std::filesystem::remove_all(dir);
}
