// The UCR/UEA formats of the time-series classifier example (ucr.hpp, ucr_ts.hpp, ucr_arff.hpp) on the real
// archive files of the shared data folder (sizes from its README; the .ts, .arff and .tsv of a split load the same
// data), and on small inline files for each rule: '%' comments, @timeStamps, missing values anywhere and
// impute_missing, @seriesLength and @equalLength checks, univariate and relational .arff, byte-order marks, and
// each error message with its file:line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "time_series_classifier/ucr.hpp"

using namespace tsc;

namespace {

// The shared folder of real archive files: $SEQATTN_UCR_DIR, else ../shared/data/ucr beside the source tree
// (SEQATTN_TEST_DATA_DIR is <source>/tests/data).
std::string ucr_dir() {
  const char* env = std::getenv("SEQATTN_UCR_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(SEQATTN_TEST_DATA_DIR "/../../../shared/data/ucr");
}

// An inline file that parse_ucr refuses, and the whole message of its DataError. The file's name is the message up
// to its first ':' ("x.arff:6: ..." -> x.arff); classes and classes_from are parse_ucr's given classes.
struct Refused {
  std::string text, message;
  std::vector<std::string> classes = {};
  std::string classes_from = "";
};

std::vector<float> values_of(const Dataset& d) { return std::vector<float>(d.x.data(), d.x.data() + d.x.size()); }

// One row of the README table of the shared folder.
struct Expected {
  std::string file;
  Index size, min_length, max_length, channels;
  std::vector<std::string> classes;
};

const std::vector<std::string> kDigits = {"1", "2", "3", "4", "5", "6", "7", "8", "9"};
const std::vector<std::string> kMotions = {"Standing", "Running", "Walking", "Badminton"};

const std::vector<Expected>& expected_files() {
  static const std::vector<Expected> files = {
      {"GunPoint/GunPoint_TRAIN.ts", 50, 150, 150, 1, {"1", "2"}},
      {"GunPoint/GunPoint_TEST.ts", 150, 150, 150, 1, {"1", "2"}},
      {"GunPoint/GunPoint_TRAIN.arff", 50, 150, 150, 1, {"1", "2"}},
      {"GunPoint/GunPoint_TRAIN.tsv", 50, 150, 150, 1, {"1", "2"}},
      {"ItalyPowerDemand/ItalyPowerDemand_TRAIN.ts", 67, 24, 24, 1, {"1", "2"}},
      {"ItalyPowerDemand/ItalyPowerDemand_TEST.ts", 1029, 24, 24, 1, {"1", "2"}},
      {"ItalyPowerDemand/ItalyPowerDemand_TRAIN.arff", 67, 24, 24, 1, {"1", "2"}},
      {"ItalyPowerDemand/ItalyPowerDemand_TEST.arff", 1029, 24, 24, 1, {"1", "2"}},
      {"BasicMotions/BasicMotions_TRAIN.ts", 40, 100, 100, 6, kMotions},
      {"BasicMotions/BasicMotions_TEST.ts", 40, 100, 100, 6, kMotions},
      {"BasicMotions/BasicMotions_TRAIN.arff", 40, 100, 100, 6, kMotions},
      {"BasicMotions/BasicMotions_TEST.arff", 40, 100, 100, 6, kMotions},
      {"JapaneseVowels/JapaneseVowels_TRAIN.ts", 270, 7, 26, 12, kDigits},
      {"JapaneseVowels/JapaneseVowels_TEST.ts", 370, 7, 29, 12, kDigits},
      {"JapaneseVowels/JapaneseVowels_eq_TRAIN.ts", 270, 25, 25, 12, kDigits},
      {"JapaneseVowels/JapaneseVowels_eq_TEST.ts", 370, 25, 25, 12, kDigits},
  };
  return files;
}

// Why the tests of the real files skip ("" when the folder is there).
std::string no_ucr_dir() {
  if (std::filesystem::is_directory(ucr_dir())) return "";
  return "no UCR/UEA data folder at " + ucr_dir() + " (set SEQATTN_UCR_DIR to point at one)";
}

}  // namespace

TEST(UcrFormats, EveryRealFileLoadsWithTheSizesOfTheReadme) {
  if (!no_ucr_dir().empty()) GTEST_SKIP() << no_ucr_dir();
  std::set<std::string> listed;
  for (const auto& e : expected_files()) listed.insert(e.file);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(ucr_dir())) {
    if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
    const std::string rel = std::filesystem::relative(entry.path(), ucr_dir()).generic_string();
    EXPECT_TRUE(listed.count(rel)) << rel << " is not in the table of this test";
  }
  for (const auto& e : expected_files()) {
    SCOPED_TRACE(e.file);
    const Dataset d = load_ucr(ucr_dir() + "/" + e.file);
    EXPECT_EQ(d.size(), e.size);
    EXPECT_EQ(d.features(), e.channels);
    EXPECT_EQ(d.steps(), e.max_length);
    EXPECT_EQ(d.max_length(), e.max_length);
    EXPECT_EQ(*std::min_element(d.lengths.begin(), d.lengths.end()), e.min_length);
    EXPECT_EQ(d.class_names, e.classes);
    EXPECT_FALSE(d.has_missing());
    for (int c = 0; c < d.classes(); ++c)
      EXPECT_NE(std::find(d.labels.begin(), d.labels.end(), c), d.labels.end()) << "class " << c << " is never used";
  }
}

TEST(UcrFormats, TsAndArffOfTheSameSplitLoadTheSameData) {
  if (!no_ucr_dir().empty()) GTEST_SKIP() << no_ucr_dir();
  for (const std::string split :
       {"GunPoint/GunPoint_TRAIN", "ItalyPowerDemand/ItalyPowerDemand_TRAIN", "ItalyPowerDemand/ItalyPowerDemand_TEST",
        "BasicMotions/BasicMotions_TRAIN", "BasicMotions/BasicMotions_TEST"}) {
    SCOPED_TRACE(split);
    const Dataset ts = load_ucr(ucr_dir() + "/" + split + ".ts");
    const Dataset arff = load_ucr(ucr_dir() + "/" + split + ".arff");
    ASSERT_EQ(ts.x.dimensions(), arff.x.dimensions());
    EXPECT_EQ(values_of(ts), values_of(arff));
    EXPECT_EQ(ts.labels, arff.labels);
    EXPECT_EQ(ts.class_names, arff.class_names);
    EXPECT_EQ(ts.lengths, arff.lengths);
  }
  // A value of the relational file: case 1, channel 2 (dimension 2 of the .ts), step 1.
  const Dataset arff = load_ucr(ucr_dir() + "/BasicMotions/BasicMotions_TRAIN.arff");
  EXPECT_NE(arff.x(0, 0, 1), arff.x(0, 0, 0));
}

TEST(UcrFormats, GunPointTsvEqualsItsTs) {
  if (!no_ucr_dir().empty()) GTEST_SKIP() << no_ucr_dir();
  const Dataset ts = load_ucr(ucr_dir() + "/GunPoint/GunPoint_TRAIN.ts");
  const Dataset tsv = load_ucr(ucr_dir() + "/GunPoint/GunPoint_TRAIN.tsv");
  EXPECT_EQ(values_of(ts), values_of(tsv));
  EXPECT_EQ(ts.labels, tsv.labels);
  EXPECT_EQ(ts.class_names, tsv.class_names);
  // The test split with the training classes, as the example loads it.
  const Dataset test = load_ucr(ucr_dir() + "/GunPoint/GunPoint_TEST.ts", ts.class_names, "GunPoint_TRAIN.ts");
  EXPECT_EQ(check_compatible(ts, test, "train", "test"), "");
}

TEST(UcrFormats, JapaneseVowelsHasLengthsSevenToTwentyNine) {
  if (!no_ucr_dir().empty()) GTEST_SKIP() << no_ucr_dir();
  const Dataset train = load_ucr(ucr_dir() + "/JapaneseVowels/JapaneseVowels_TRAIN.ts");
  const Dataset test = load_ucr(ucr_dir() + "/JapaneseVowels/JapaneseVowels_TEST.ts", train.class_names);
  std::vector<Index> all = train.lengths;
  all.insert(all.end(), test.lengths.begin(), test.lengths.end());
  EXPECT_EQ(*std::min_element(all.begin(), all.end()), 7);
  EXPECT_EQ(*std::max_element(all.begin(), all.end()), 29);
  EXPECT_GT(std::set<Index>(all.begin(), all.end()).size(), 10u);  // really variable
  // Padding is 0 past each length.
  for (Index i = 0; i < test.size(); ++i)
    for (Index t = test.lengths[static_cast<size_t>(i)]; t < test.steps(); ++t)
      for (Index f = 0; f < test.features(); ++f) ASSERT_EQ(test.x(i, t, f), 0.0f);
  EXPECT_NE(check_compatible(train, test, "train", "test"), "");  // the note: test series are longer
}

TEST(UcrFormats, TsPercentCommentsAreCommentsLikeHash) {
  const std::string ts =
      "% a comment in Weka's style\n# and one in sktime's\n@problemName Toy\n% between headers\n"
      "@classLabel true a b\n@data\n% inside the data\n1,2:a\n3,4:b\n";
  const Dataset d = parse_ucr(ts, "toy.ts");
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(parse_ucr(ts, "toy.txt").size(), 2);  // chosen by the content: a first '%' line and no @relation
  EXPECT_EQ(ucr_format(ts, "toy.txt"), UcrFormat::Ts);
}

TEST(UcrFormats, TsTimeStampsFalseIsAccepted) {  // true is refused (RefusesMalformedFilesNamingFileAndLine)
  EXPECT_EQ(parse_ucr("@timeStamps false\n@classLabel true a\n@data\n1,2:a\n", "x.ts").size(), 1);
  EXPECT_EQ(parse_ucr("@TIMESTAMPS FALSE\n@classLabel true a\n@data\n1,2:a\n", "x.ts").size(), 1);
}

TEST(UcrFormats, TsStringLabelsKeepTheDeclaredOrder) {
  const Dataset d = parse_ucr("@classLabel true walk run jump\n@data\n1,2:jump\n3,4:walk\n5,6:run\n", "moves.ts");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"walk", "run", "jump"}));
  EXPECT_EQ(d.labels, (std::vector<int>{2, 0, 1}));
  // Without a declaration: text order.
  EXPECT_EQ(parse_ucr("@data\n1,2:walk\n3,4:jump\n", "moves.ts").class_names,
            (std::vector<std::string>{"jump", "walk"}));
}

// A missing value before the end of a series was refused ("only trailing missing values ... are supported").
TEST(UcrFormats, TsMissingValuesAnywhereAreMarkedAndImputed) {
  const std::string ts =
      "@missing true\n@dimensions 2\n@classLabel true a b\n@data\n"
      "1,?,3,NaN,5:?,10,?,30,?:a\n"  // middle (interpolated), leading and trailing in one channel (carried)
      "?,?,?,?,?:1,2,3,4,5:b\n"      // a channel with no value: 0
      "1,2,?,?:3,?,?,?:a\n";         // trailing missing in both channels past step 2: shorter (length 2)
  Dataset d = parse_ucr(ts, "m.ts");
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.lengths, (std::vector<Index>{5, 5, 2}));
  ASSERT_TRUE(d.has_missing());
  ASSERT_EQ(d.missing.size(), static_cast<size_t>(d.x.size()));
  for (Index k = 0; k < d.x.size(); ++k) EXPECT_TRUE(std::isfinite(d.x.data()[k]));
  EXPECT_TRUE(d.is_missing(0, 1, 0));
  EXPECT_TRUE(d.is_missing(0, 3, 0));
  EXPECT_FALSE(d.is_missing(0, 2, 0));
  EXPECT_TRUE(d.is_missing(0, 0, 1));
  EXPECT_TRUE(d.is_missing(0, 4, 1));
  EXPECT_FALSE(d.is_missing(0, 1, 1));
  EXPECT_EQ(d.x(0, 1, 0), 0.0f);  // stored as 0, never NaN
  EXPECT_TRUE(d.is_missing(2, 1, 1));
  EXPECT_FALSE(d.is_missing(2, 2, 0));  // past the length: padding, not missing
  EXPECT_EQ(impute_missing(d), 2 + 3 + 5 + 1);
  EXPECT_FALSE(d.has_missing());
  EXPECT_TRUE(d.missing.empty());
  const std::vector<float> row0 = {d.x(0, 0, 0), d.x(0, 1, 0), d.x(0, 2, 0), d.x(0, 3, 0), d.x(0, 4, 0)};
  EXPECT_EQ(row0, (std::vector<float>{1, 2, 3, 4, 5}));
  const std::vector<float> row0b = {d.x(0, 0, 1), d.x(0, 1, 1), d.x(0, 2, 1), d.x(0, 3, 1), d.x(0, 4, 1)};
  EXPECT_EQ(row0b, (std::vector<float>{10, 10, 20, 30, 30}));
  for (Index t = 0; t < 5; ++t) EXPECT_EQ(d.x(1, t, 0), 0.0f);
  EXPECT_EQ(d.x(2, 1, 1), 3.0f);
  EXPECT_EQ(d.x(2, 2, 0), 0.0f);  // padding stays 0
}

TEST(UcrFormats, TsTrailingMissingValuesShortenUnlessLengthsAreDeclaredEqual) {
  const std::string body = "@classLabel true a\n@data\n1,2,3:a\n1,2,?:a\n";
  const Dataset unequal = parse_ucr("@equalLength false\n" + body, "u.ts");
  EXPECT_EQ(unequal.lengths, (std::vector<Index>{3, 2}));
  EXPECT_FALSE(unequal.has_missing());
  Dataset equal = parse_ucr("@equalLength true\n@seriesLength 3\n" + body, "e.ts");
  EXPECT_EQ(equal.lengths, (std::vector<Index>{3, 3}));
  EXPECT_TRUE(equal.is_missing(1, 2, 0));
  impute_missing(equal);
  EXPECT_EQ(equal.x(1, 2, 0), 2.0f);  // the last present value carried
}

// The data that breaks them is refused (RefusesMalformedFilesNamingFileAndLine).
TEST(UcrFormats, TsDataWithinSeriesLengthAndEqualLengthLoads) {
  const std::string head = "@problemName p\n@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n";
  EXPECT_EQ(parse_ucr(head + "1,2,3:a\n4,5,6:a\n", "s.ts").steps(), 3);
  // @equalLength false: @seriesLength is the longest allowed.
  EXPECT_EQ(parse_ucr("@equalLength false\n@seriesLength 3\n@data\n1,2:a\n1,2,3:a\n", "u.ts").steps(), 3);
}

TEST(UcrFormats, ReadsUnivariateArff) {
  const std::string arff =
      "% Weka's comments\n@RELATION 'toy data'\n\n@Attribute att1 NUMERIC\n@attribute 'att 2' real\n"
      "@ATTRIBUTE att3 integer\n% between\n@attribute class {\"big one\", 'small', 3.0}\n@DATA\n"
      "1,2,3,'small'\n% inside the data\n4,?,6,\"big one\"\n7,8,?,3\n  \n9,?,?,small\n";
  const Dataset d = parse_ucr(arff, "toy.arff");
  ASSERT_EQ(d.size(), 4);
  EXPECT_EQ(d.features(), 1);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"big one", "small", "3"}));  // declared order, unquoted
  EXPECT_EQ(d.labels, (std::vector<int>{1, 0, 2, 1}));
  EXPECT_EQ(d.lengths, (std::vector<Index>{3, 3, 2, 1}));  // trailing '?' shorten the series
  EXPECT_TRUE(d.is_missing(1, 1, 0));
  EXPECT_FALSE(d.is_missing(2, 2, 0));
  EXPECT_FLOAT_EQ(d.x(2, 1, 0), 8.0f);
  EXPECT_EQ(ucr_format(arff, "toy.txt"), UcrFormat::Arff);  // by the content: @relation after '%' lines
  EXPECT_EQ(parse_ucr(arff, "toy.txt").size(), 4);
  EXPECT_EQ(parse_ucr(arff, "TOY.ARFF").size(), 4);
  Dataset imputed = d;
  impute_missing(imputed);
  EXPECT_FLOAT_EQ(imputed.x(1, 1, 0), 5.0f);
}

TEST(UcrFormats, ReadsRelationalArff) {
  const std::string arff =
      "@relation motions\n@attribute series relational\n  @attribute t0 numeric\n  @attribute t1 numeric\n"
      "  @attribute t2 numeric\n@end series\n@attribute activity {walk,run}\n@data\n"
      "'1,2,3\\n4,5,6',run\n\"7,?,9\\n10,11,12\",walk\n'1,2,?\\n3,?,?',walk\n";
  const Dataset d = parse_ucr(arff, "m.arff");
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.features(), 2);
  EXPECT_EQ(d.steps(), 3);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"walk", "run"}));
  EXPECT_EQ(d.labels, (std::vector<int>{1, 0, 0}));
  EXPECT_EQ(d.lengths, (std::vector<Index>{3, 3, 2}));
  EXPECT_FLOAT_EQ(d.x(0, 2, 1), 6.0f);  // step 3 of channel 2
  EXPECT_FLOAT_EQ(d.x(1, 0, 1), 10.0f);
  EXPECT_TRUE(d.is_missing(1, 1, 0));
  EXPECT_TRUE(d.is_missing(2, 1, 1));
  // The same data as a .ts file.
  const Dataset ts = parse_ucr(
      "@dimensions 2\n@classLabel true walk run\n@data\n1,2,3:4,5,6:run\n7,?,9:10,11,12:walk\n1,2,?:3,?,?:walk\n",
      "m.ts");
  EXPECT_EQ(values_of(ts), values_of(d));
  EXPECT_EQ(ts.missing, d.missing);
  EXPECT_EQ(ts.lengths, d.lengths);
}

// Every malformed inline file is refused with a DataError naming the file, the line (when there is one) and the
// reason; one row each.
TEST(UcrFormats, RefusesMalformedFilesNamingFileAndLine) {
  const std::string series = "@problemName p\n@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n";
  const std::string relational =
      "@relation r\n@attribute s relational\n@attribute a numeric\n@attribute b numeric\n@attribute c numeric\n"
      "@end s\n@attribute y {p,q}\n@data\n";
  const std::string arff = "@relation u\n@attribute a numeric\n@attribute b numeric\n@attribute y {p,q}\n@data\n";
  const std::string bom = "\xEF\xBB\xBF";
  const std::vector<Refused> cases = {
      // .ts headers. Before '%' comments, a '%' line was "expected a header line starting with '@'".
      {"% c\n@problemName x\nhello\n", "x.ts:3: expected a header line starting with '@' (or @data) but got 'hello'"},
      {"@timeStamps true\n@data\n", "x.ts:1: timestamped series (@timeStamps true) are not supported"},
      {"@problemName p\n@timeStamps maybe\n@data\n", "x.ts:2: @timeStamps expects true or false but got 'maybe'"},
      {"@missing yes\n@data\n", "x.ts:1: @missing expects true or false but got 'yes'"},
      {"@equalLength\n@data\n", "x.ts:1: @equalLength expects true or false but got ''"},
      {"@seriesLength 2.5\n@data\n", "x.ts:1: @seriesLength expects a positive whole number but got '2.5'"},
      {"@classLabel true a a\n@data\n", "x.ts:1: @classLabel lists class 'a' twice"},
      // .ts data against @seriesLength and @equalLength
      {series + "1,2,3:a\n4,5:a\n", "s.ts:7: expected 3 values (@seriesLength 3) but got 2"},
      {series + "1,2,3,4:a\n", "s.ts:6: expected 3 values (@seriesLength 3) but got 4"},
      {"@dimensions 2\n" + series + "1,2,3:4,5,6:a\n1,2:3,4:a\n",
       "s.ts:8: expected 3 values per dimension (@seriesLength 3) but got 2"},
      // @equalLength true without @seriesLength: the first case's length.
      {"@equalLength true\n@data\n1,2,3:a\n\n4,5:a\n",
       "e.ts:5: expected 3 values (@equalLength true, as in the case on line 3) but got 2"},
      // Declared equal: the dimensions must have the same count, trailing missing values included.
      {"@equalLength true\n@data\n1,2,?:3,4:a\n",
       "e.ts:3: dimension 2 has 2 values but dimension 1 has 3 (the dimensions of a case must have equal lengths)"},
      // @equalLength false: @seriesLength is the longest allowed.
      {"@equalLength false\n@seriesLength 3\n@data\n1,2,3,4:a\n",
       "u.ts:4: expected at most 3 values (@seriesLength 3) but got 4"},
      // relational .arff: channels of unequal lengths, malformed cases and headers
      {relational + "'1,2,3\\n4,5',p\n", "r.arff:9: channel 2: expected 3 values but got 2"},
      {relational + "'1,2,3\\n4,5,6,7',p\n", "r.arff:9: channel 2: expected 3 values but got 4"},
      {relational + "'1,2,3\\n4,5,6',p\n'1,2,3',q\n", "r.arff:10: expected 2 channels but got 1"},
      {relational + "1,2,3,p\n",
       "r.arff:9: expected the quoted channels of 's' and the class label (2 fields) but got 4 fields"},
      {relational + "'1,x,3',p\n", "r.arff:9: channel 1 value 2 'x' is not a number"},
      {relational + "'1,2,3\\n4,5,6,p\n", "r.arff:9: a quote (') is not closed on this line"},
      {"@relation r\n@attribute s relational\n@attribute a numeric\n@data\n",
       "r.arff:4: @data inside the relational attribute 's' (no @end)"},
      {"@relation r\n@attribute s relational\n@attribute a string\n",
       "r.arff:3: attribute 'a' of the relational attribute 's' has the type 'string'; only numeric ones are "
       "supported"},
      // univariate .arff: data lines
      {arff + "1,2,p\n1,p\n", "x.arff:7: expected 2 values but got 1"},
      {arff + "1,2,3,p\n", "x.arff:6: expected 2 values but got 3"},
      {arff + "1,abc,p\n", "x.arff:6: value 2 'abc' is not a number"},
      {arff + "1,,p\n", "x.arff:6: value 2 is empty"},
      {arff + "?,?,p\n", "x.arff:6: the series has no values"},
      {arff + "1,2,r\n", "x.arff:6: label 'r' is not one of the declared classes (p, q)"},
      {arff + "1,2,?\n", "x.arff:6: the class label (the last field) is missing"},
      {arff + "1,2,''\n", "x.arff:6: the class label (the last field) is empty"},
      {arff + "{0 1, 2 p}\n", "x.arff:6: sparse data ('{index value, ...}') is not supported"},
      {arff + "1,2,'p\n", "x.arff:6: a quote (') is not closed on this line"},
      {arff + "1,2,p\n", "test.arff:6: label 'p' is not one of the classes of train.arff (q)", {"q"}, "train.arff"},
      // univariate .arff: headers
      {"@relation u\n@attribute a numeric\n", "x.arff: no @data line (is this an .arff file?)"},
      {"@relation u\n@attribute a numeric\n@attribute y numeric\n@data\n",
       "x.arff:4: the last attribute must be the nominal class ({a,b,...}); 'y' (line 3) is not nominal "
       "(regression and unlabelled data are not supported)"},
      {"@relation u\n@data\n",
       "x.arff:2: the last attribute must be the nominal class ({a,b,...}); there are no attributes (regression "
       "and unlabelled data are not supported)"},
      {"@relation u\n@attribute y {p,q}\n@data\n",
       "x.arff:3: no numeric attributes (the series' values) before the class"},
      {"@relation u\n@attribute y {p,q}\n@attribute a numeric\n",
       "x.arff:3: attribute 'a' follows the nominal attribute 'y' (line 2): the class must be the last attribute "
       "and the only nominal one"},
      {"@relation u\n@attribute when date\n",
       "x.arff:2: attribute 'when' has the type 'date'; only numeric attributes (or one relational attribute of "
       "them) and a nominal class are supported"},
      {"@relation u\n@attribute y {p,q\n", "x.arff:2: the nominal attribute 'y' must list its values as {a,b,...}"},
      {"@relation u\n@attribute y {p,,q}\n",
       "x.arff:2: the nominal attribute 'y' lists class 2 as empty (or a byte-order mark only); remove it"},
      {"@relation u\n@attribute y {p,q,p}\n", "x.arff:2: the nominal attribute 'y' lists class 'p' twice"},
      {"@relation u\n@end s\n", "x.arff:2: @end without a relational attribute"},
      {"@relation u\n@whatever\n",
       "x.arff:2: unknown keyword '@whatever' (expected @relation, @attribute, @end or @data)"},
      {"@relation u\nhello\n", "x.arff:2: expected a header line starting with '@' (or @data) but got 'hello'"},
      // byte-order marks (ByteOrderMarksInArffAreNeverClasses): a class of only one, a UTF-16 file
      {"@relation u\n@attribute y {p," + bom + ",q}\n",
       "b.arff:2: the nominal attribute 'y' lists class 2 as empty (or a byte-order mark only); remove it"},
      {std::string("\xFE\xFF") + "@relation u\n",
       "b.arff: the file is UTF-16 text (byte-order mark FE FF); save it as UTF-8 or ASCII"},
  };
  for (const Refused& c : cases) {
    const std::string name = c.message.substr(0, c.message.find(':'));
    std::string message;
    try {
      parse_ucr(c.text, name, c.classes, c.classes_from);
    } catch (const DataError& e) {
      message = e.what();
    }
    EXPECT_EQ(message, c.message) << "file " << name << ":\n" << c.text;
  }
}

// A UTF-8 byte-order mark is never a class: the file's own, one inside the nominal list (files joined with cat),
// or one glued to a label.
TEST(UcrFormats, ByteOrderMarksInArffAreNeverClasses) {
  const std::string bom = "\xEF\xBB\xBF";
  const std::string body =
      "@attribute a numeric\n@attribute y {" + bom + "p, q" + bom + "}\n@data\n1,p\n2," + bom + "q\n3,'" + bom + "p'\n";
  const Dataset d = parse_ucr(bom + "@relation u\n" + body, "b.arff");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(ucr_format(body, "b.txt"), UcrFormat::Ts);  // no @relation: not an .arff by its content
  EXPECT_EQ(parse_ucr(bom + "% c\n@relation u\n" + body, "b.txt").class_names, d.class_names);  // by the content
  // A class of a byte-order mark only, and UTF-16 files, are refused (RefusesMalformedFilesNamingFileAndLine).
}

TEST(UcrFormats, GivenClassesOverrideTheDeclaredOnes) {
  const std::string arff = "@relation u\n@attribute a numeric\n@attribute y {q,p}\n@data\n1,p\n2,q\n";
  EXPECT_EQ(parse_ucr(arff, "test.arff", {"p", "q"}).labels, (std::vector<int>{0, 1}));
  EXPECT_EQ(parse_ucr(arff, "test.arff").labels, (std::vector<int>{1, 0}));
}

TEST(UcrFormats, ImputeMissingRuleOnADataset) {
  Dataset d;
  d.x.resize(1, 6, 2);
  d.x.setZero();
  d.lengths = {5};  // step 5 is padding
  d.labels = {0};
  d.class_names = {"a"};
  d.missing.assign(12, 0);
  const float ch0[5] = {0, 2, 0, 0, 8};  // missing at 0, 2, 3: carry 2 back, then 4 and 6
  for (Index t = 0; t < 5; ++t) d.x(0, t, 0) = ch0[t];
  for (Index t : {0, 2, 3}) d.missing[static_cast<size_t>(t * 2 + 0)] = 1;
  for (Index t = 0; t < 5; ++t) d.missing[static_cast<size_t>(t * 2 + 1)] = 1;  // channel 1: no value at all
  check_consistent(d, "d");
  EXPECT_EQ(impute_missing(d), 3 + 5);
  EXPECT_EQ((std::vector<float>{d.x(0, 0, 0), d.x(0, 1, 0), d.x(0, 2, 0), d.x(0, 3, 0), d.x(0, 4, 0), d.x(0, 5, 0)}),
            (std::vector<float>{2, 2, 4, 6, 8, 0}));
  for (Index t = 0; t < 6; ++t) EXPECT_EQ(d.x(0, t, 1), 0.0f);
  EXPECT_EQ(impute_missing(d), 0);  // nothing left
  d.missing.assign(3, 0);
  EXPECT_THROW(check_consistent(d, "d"), DataError);
}

// standardize leaves missing values out of its statistics and at 0 (the mean once standardized); split keeps the
// mask with its sequences.
TEST(UcrFormats, StandardizeAndSplitKeepMissingValuesApart) {
  Dataset d = parse_ucr("@data\n1,?,3:a\n3,100,?:b\n5,?,7:a\n?,1,1:b\n", "s.ts");
  ASSERT_TRUE(d.has_missing());
  standardize(d, {&d});
  double sum = 0, count = 0;
  for (Index i = 0; i < d.size(); ++i)
    for (Index t = 0; t < d.lengths[static_cast<size_t>(i)]; ++t) {
      if (d.is_missing(i, t, 0)) {
        EXPECT_EQ(d.x(i, t, 0), 0.0f);
      } else {
        sum += d.x(i, t, 0);
        ++count;
      }
    }
  EXPECT_NEAR(sum / count, 0.0, 1e-6);
  const auto [a, b] = split(d, 0.5, 3);
  EXPECT_EQ(a.missing.size(), static_cast<size_t>(a.x.size()));
  EXPECT_EQ(b.missing.size(), static_cast<size_t>(b.x.size()));
  Index missing_after = 0;
  for (const Dataset* part : {&a, &b})
    for (auto m : part->missing) missing_after += m;
  EXPECT_EQ(missing_after, 3);
}
