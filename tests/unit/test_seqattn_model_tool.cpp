// The seqattn-model command-line tool (examples/seqattn_model/main.cpp): info, predict (whole sequence and
// --stream), convert (float <-> double, and Keras files when the tool has the importer), and its errors. The
// tool's path comes from examples/CMakeLists.txt (SEQATTN_MODEL_TOOL); without the examples the tests skip.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/io/model_file.hpp"
#include "seqattn/seqattn.hpp"

namespace {

using namespace seqattn;
namespace fs = std::filesystem;

struct ToolRun {
  int status = -1;
  std::string out;  // standard output and standard error
};

#if defined(SEQATTN_MODEL_TOOL)
ToolRun tool(const std::string& args) {
  ToolRun r;
  const std::string command = std::string("'") + SEQATTN_MODEL_TOOL + "' " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}
#endif

fs::path temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("seqattn_model_tool_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// A causal model (streamable): Dense -> causal MultiHeadAttention -> LayerNorm -> Dense, 4 features -> 3.
Sequential<float> causal_model() {
  Sequential<float> m(4);
  m.add<Dense<float>>(8, DenseOptions().activation(Activation::Tanh).seed(1));
  m.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().causal(true).seed(2));
  m.add<LayerNorm<float>>();
  m.add<Dense<float>>(3, DenseOptions().seed(3));
  return m;
}

Tensor3<float> input(Index T) {
  Tensor3<float> x(1, T, 4);
  for (Index t = 0; t < T; ++t)
    for (Index f = 0; f < 4; ++f) x(0, t, f) = static_cast<float>(std::sin(0.7 * double(t) + 1.3 * double(f)));
  return x;
}

// Writes x (1, T, 4) as CSV with a header and a comment line; %.9g round-trips float.
void write_csv(const fs::path& path, const Tensor3<float>& x) {
  std::ofstream out(path);
  out << "# a sensor\na,b,c,d\n";
  char buf[64];
  for (Index t = 0; t < x.dimension(1); ++t) {
    for (Index f = 0; f < 4; ++f) {
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x(0, t, f)));
      out << (f ? ", " : "") << buf;
    }
    out << "\n";
  }
}

std::vector<std::vector<double>> parse_csv(const std::string& text) {
  std::vector<std::vector<double>> rows;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<double> row;
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) row.push_back(std::stod(field));
    rows.push_back(row);
  }
  return rows;
}

class SeqattnModelTool : public ::testing::Test {
 protected:
  void SetUp() override {
#if !defined(SEQATTN_MODEL_TOOL)
    GTEST_SKIP() << "seqattn-model is not built (SEQATTN_BUILD_EXAMPLES=OFF or no nlohmann-json)";
#endif
    dir_ = temp_dir();
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

#if defined(SEQATTN_MODEL_TOOL)

TEST_F(SeqattnModelTool, InfoPrintsFormatShapesAndSummary) {
  Sequential<float> m = causal_model();
  save_model(m, (dir_ / "m.sqm").string());
  const ToolRun r = tool("info '" + (dir_ / "m.sqm").string() + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("version 1, float32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("input: (B, T, 4)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("output: (B, T, 3)"), std::string::npos) << r.out;
  std::size_t params = 0;
  for (const auto& p : m.params()) params += static_cast<std::size_t>(p.size());
  EXPECT_NE(r.out.find("parameters: " + std::to_string(params) + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(m.summary()), std::string::npos) << r.out;

  Sequential<float> pooled(4);  // a pooled model reports one output step
  pooled.add<Dense<float>>(2, DenseOptions().seed(4));
  pooled.add<GlobalMaxPool<float>>();
  save_model(pooled, (dir_ / "p.sqm").string());
  EXPECT_NE(tool("info '" + (dir_ / "p.sqm").string() + "'").out.find("output: (B, 1, 2)"), std::string::npos);
  EXPECT_EQ(r.out.find("metadata:"), std::string::npos) << "a file without metadata prints none";

  // metadata (the class names and normalization time_series_classifier saves) is printed as JSON
  save_model(pooled, (dir_ / "meta.sqm").string(), {{"class_names", {"walk", "run"}}, {"input_std", {2.5}}});
  const ToolRun meta = tool("info '" + (dir_ / "meta.sqm").string() + "'");
  ASSERT_EQ(meta.status, 0) << meta.out;
  EXPECT_NE(meta.out.find("metadata: {\"class_names\":[\"walk\",\"run\"],\"input_std\":[2.5]}"), std::string::npos)
      << meta.out;
}

// predict's CSV is the model's predict, bit for bit (%.9g round-trips float); --stream gives the same rows.
TEST_F(SeqattnModelTool, PredictMatchesTheModelAndStreamMatchesPredict) {
  Sequential<float> m = causal_model();
  save_model(m, (dir_ / "m.sqm").string());
  const Tensor3<float> x = input(23);
  write_csv(dir_ / "x.csv", x);
  const Tensor3<float> y = m.predict(x);
  for (bool stream : {false, true}) {
    const ToolRun r = tool("predict '" + (dir_ / "m.sqm").string() + "' '" + (dir_ / "x.csv").string() + "'" +
                       (stream ? " --stream" : ""));
    ASSERT_EQ(r.status, 0) << r.out;
    const auto rows = parse_csv(r.out);
    ASSERT_EQ(rows.size(), 23u);
    for (Index t = 0; t < 23; ++t) {
      ASSERT_EQ(rows[static_cast<size_t>(t)].size(), 3u);
      for (Index f = 0; f < 3; ++f) {
        const double got = rows[static_cast<size_t>(t)][static_cast<size_t>(f)];
        if (stream)
          EXPECT_NEAR(got, y(0, t, f), 1e-5) << "step " << t;
        else
          EXPECT_EQ(static_cast<float>(got), y(0, t, f)) << "step " << t;
      }
    }
  }
  // --output writes the same text to a file
  ASSERT_EQ(tool("predict '" + (dir_ / "m.sqm").string() + "' '" + (dir_ / "x.csv").string() + "' --output '" +
                 (dir_ / "y.csv").string() + "'")
                .status,
            0);
  std::ifstream in(dir_ / "y.csv");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(parse_csv(text.str()).size(), 23u);
}

TEST_F(SeqattnModelTool, ConvertBetweenFloatAndDouble) {
  Sequential<float> m = causal_model();
  save_model(m, (dir_ / "m.sqm").string());
  ToolRun r = tool("convert '" + (dir_ / "m.sqm").string() + "' '" + (dir_ / "d.sqm").string() + "' --double");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(tool("info '" + (dir_ / "d.sqm").string() + "'").out.find("float64"), std::string::npos);
  Sequential<double> d = load_model<double>((dir_ / "d.sqm").string());
  const Tensor3<float> x = input(9);
  Tensor3<double> xd = x.cast<double>();
  const Tensor3<double> yd = d.predict(xd);
  const Tensor3<float> y = m.predict(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_NEAR(yd.data()[i], y.data()[i], 1e-5);
  // back to float: the same bits as the original (float -> double -> float is exact)
  r = tool("convert '" + (dir_ / "d.sqm").string() + "' '" + (dir_ / "f.sqm").string() + "' --float");
  ASSERT_EQ(r.status, 0) << r.out;
  Sequential<float> f = load_model<float>((dir_ / "f.sqm").string());
  const Tensor3<float> yf = f.predict(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(yf.data()[i], y.data()[i]);
}

TEST_F(SeqattnModelTool, ErrorsNameTheFileAndLine) {
  Sequential<float> m = causal_model();
  save_model(m, (dir_ / "m.sqm").string());
  {
    std::ofstream bad(dir_ / "bad.csv");
    bad << "1,2,3,4\n1,2,3\n";
  }
  ToolRun r = tool("predict '" + (dir_ / "m.sqm").string() + "' '" + (dir_ / "bad.csv").string() + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("bad.csv:2: expected 4 values (the model's input features) but found 3"), std::string::npos)
      << r.out;
  {
    std::ofstream nan(dir_ / "nan.csv");
    nan << "1,2,3,4\n1,2,nan,4\n";
  }
  r = tool("predict '" + (dir_ / "m.sqm").string() + "' '" + (dir_ / "nan.csv").string() + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("nan.csv:2: a value is not finite"), std::string::npos) << r.out;
  r = tool("info '" + (dir_ / "missing.sqm").string() + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("missing.sqm"), std::string::npos) << r.out;
  {
    std::ofstream junk(dir_ / "junk.sqm");
    junk << "SEQATTNW and then some bytes";
  }
  r = tool("info '" + (dir_ / "junk.sqm").string() + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("not a seqattn model file"), std::string::npos) << r.out;
  EXPECT_EQ(tool("").status, 2);
  EXPECT_EQ(tool("frobnicate x").status, 2);
  EXPECT_EQ(tool("convert a b --half").status, 2);
}

// A Keras file converts to a model file that predicts what import_keras gives (when the importer is built).
TEST_F(SeqattnModelTool, ConvertsAKerasModel) {
  const std::string h5 = std::string(SEQATTN_SOURCE_DIR) + "/tests/reference/keras/ssa_additive_width3_sigmoid.h5";
  const ToolRun r = tool("convert '" + h5 + "' '" + (dir_ / "k.sqm").string() + "'");
  if (r.status == 1 && r.out.find("without the Keras importer") != std::string::npos)
    GTEST_SKIP() << "seqattn-model was built without the Keras importer";
  ASSERT_EQ(r.status, 0) << r.out;
  const ToolRun info = tool("info '" + (dir_ / "k.sqm").string() + "'");
  ASSERT_EQ(info.status, 0) << info.out;
  EXPECT_NE(info.out.find("SeqSelfAttention"), std::string::npos) << info.out;
}

#endif

}  // namespace
