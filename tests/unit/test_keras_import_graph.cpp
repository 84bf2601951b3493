// import_keras_graph (io/keras_import.hpp) against Keras itself: the functional models of manifest.json's
// "graph_cases" (several inputs, Concatenate, Multiply / Add branches, a shared layer with Average, Subtract,
// Maximum, Minimum, cross-attention (masked too), two outputs, nested functional and Sequential models), from their
// .h5 (Keras 2.15) and .keras (Keras 3) files, predict Keras' own outputs within 1e-5 (relative to max(1, |y|)) on
// the valid steps, in float and double, and survive save_model / load_graph bitwise; the refused models throw
// ConfigError naming the layer and the reason; import_keras refuses the graphs and points to import_keras_graph.
// Skipped (GTEST_SKIP) when CMake did not find HDF5, libzip and nlohmann-json (seqattn::keras_import).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#if SEQATTN_HAVE_KERAS_IMPORT
#include <seqattn/io/keras_import.hpp>
#include <seqattn/io/model_file.hpp>
#endif

namespace {

#ifndef SEQATTN_HAVE_KERAS_IMPORT
#define SEQATTN_HAVE_KERAS_IMPORT 0
#endif

#define SKIP_WITHOUT_IMPORT()                                                                                \
  do {                                                                                                       \
    if (!SEQATTN_HAVE_KERAS_IMPORT)                                                                          \
      GTEST_SKIP() << "io/keras_import.hpp needs libhdf5-dev, libzip-dev and nlohmann-json3-dev (not found " \
                      "by CMake)";                                                                           \
  } while (0)

const std::string kDir = SEQATTN_KERAS_REFERENCE_DIR;

#if SEQATTN_HAVE_KERAS_IMPORT
using namespace seqattn;
using json = nlohmann::json;

const json& manifest() {
  static const json m = [] {
    std::ifstream in(kDir + "/manifest.json");
    return json::parse(in);
  }();
  return m;
}

const json& graph_case(const std::string& name) {
  for (const json& c : manifest()["graph_cases"])
    if (c["name"] == name) return c;
  throw std::runtime_error("no graph case " + name);
}

template <class S>
struct Inputs {
  std::vector<Tensor3<S>> x;
  std::vector<Mask> masks;  // every step valid: Keras derives its masks from the data (Masking layers)
  std::vector<std::vector<Index>> lengths;  // per input: valid steps per sequence, or empty
  LayerInputs<S> call() const {
    LayerInputs<S> in;
    for (size_t i = 0; i < x.size(); ++i) in.push_back(LayerInput<S>{&x[i], &masks[i]});
    return in;
  }
};

template <class S>
Inputs<S> inputs_of(const json& c) {
  Inputs<S> in;
  for (const json& i : c["inputs"]) {
    const std::vector<Index> shape = i["shape"].get<std::vector<Index>>();
    Tensor3<S> x(shape[0], shape[1], shape[2]);
    const std::vector<double> v = i["values"].get<std::vector<double>>();
    for (size_t k = 0; k < v.size(); ++k) x.data()[k] = static_cast<S>(v[k]);
    in.x.push_back(std::move(x));
    in.masks.push_back(Mask::all_valid());
    in.lengths.push_back(i["lengths"].is_null() ? std::vector<Index>() : i["lengths"].get<std::vector<Index>>());
  }
  return in;
}

struct Result {
  double max_diff = 0;  // relative to max(1, |keras|)
  Index compared = 0;
};

// Output k of `graph` (last forward) against Keras' output record `ref`; steps t >= lengths[b] are padding (when
// lengths are given and the output keeps the time axis).
template <class S>
void compare(Graph<S>& graph, Index k, const json& ref, const std::vector<Index>& lengths, Result& r,
             const std::string& what) {
  const Tensor3<S>& y = graph.output(k);
  const std::vector<Index> shape = ref["shape"].get<std::vector<Index>>();
  const std::vector<double> values = ref["values"].get<std::vector<double>>();
  const Index B = shape[0], T = shape.size() == 3 ? shape[1] : 1, U = shape.back();
  ASSERT_EQ(y.dimension(0), B) << what;
  ASSERT_EQ(y.dimension(1), T) << what;
  ASSERT_EQ(y.dimension(2), U) << what;
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t) {
      if (shape.size() == 3 && !lengths.empty() && t >= lengths[static_cast<size_t>(b)]) continue;
      for (Index u = 0; u < U; ++u) {
        const double want = values[static_cast<size_t>((b * T + t) * U + u)];
        const double got = static_cast<double>(y(b, t, u));
        const double d = std::abs(got - want) / std::max(1.0, std::abs(want));
        EXPECT_LE(d, 1e-5) << what << " output " << k << " (" << b << ", " << t << ", " << u << "): seqattn " << got
                           << " Keras " << want;
        r.max_diff = std::max(r.max_diff, d);
        ++r.compared;
      }
    }
}

// Imports `file`, predicts the manifest inputs, compares every output with Keras', then checks that save_model /
// load_graph gives the same outputs bitwise.
template <class S>
Result run_graph_case(const json& c, const std::string& file, const std::string& version) {
  const std::string what = file + (sizeof(S) == 4 ? " (float)" : " (double)");
  Result r;
  Graph<S> graph = import_keras_graph<S>(kDir + "/" + file);
  EXPECT_EQ(graph.output_count(), Index(c["outputs"][version].size())) << what;
  const Inputs<S> in = inputs_of<S>(c);
  EXPECT_EQ(graph.min_inputs(), Index(in.x.size())) << what;
  graph.forward(in.call(), Mode::Infer);
  // The output steps to compare: those of the input named by compare_input (cross-attention: the query), or of the
  // only input.
  const std::vector<Index> lengths = !c["compare_input"].is_null() ? in.lengths.at(c["compare_input"].get<size_t>())
                                     : in.lengths.size() == 1       ? in.lengths[0]
                                                                    : std::vector<Index>();
  for (Index k = 0; k < graph.output_count(); ++k) {
    compare(graph, k, c["outputs"][version][static_cast<size_t>(k)], lengths, r, what);
    const json& keras_mask = c["outputs"][version][static_cast<size_t>(k)]["mask"];
    if (!keras_mask.is_null() && !lengths.empty()) {  // Keras' output mask = the input's valid steps
      const Mask& m = graph.output_mask(k);
      EXPECT_EQ(m.lengths(), lengths) << what << " output " << k << " mask";
    }
  }
  // Parameters: a shared layer counts once, as in Keras.
  Index count = 0;
  for (const auto& p : graph.params()) count += p.size();
  for (const auto& p : graph.buffers()) count += p.size();
  EXPECT_EQ(count, c["parameters"].get<Index>()) << what;

  // Round trip through a model file: the same outputs, bitwise.
  const std::string path = ::testing::TempDir() + "/keras_graph_" + c["name"].get<std::string>() + ".sqm";
  save_model(graph, path);
  Graph<S> loaded = load_graph<S>(path);
  std::remove(path.c_str());
  loaded.forward(in.call(), Mode::Infer);
  for (Index k = 0; k < graph.output_count(); ++k) {
    const Tensor3<S>& a = graph.output(k);
    const Tensor3<S>& b = loaded.output(k);
    EXPECT_EQ(a.dimensions(), b.dimensions()) << what;
    EXPECT_TRUE(std::equal(a.data(), a.data() + a.size(), b.data())) << what << " output " << k << " after load_graph";
  }
  EXPECT_EQ(graph.summary(), loaded.summary()) << what;
  return r;
}
#endif

TEST(KerasImportGraph, MatchesKerasAndRoundTrips) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  double worst_float = 0, worst_double = 0;
  int files = 0;
  for (const json& c : manifest()["graph_cases"]) {
    if (!c["refused_layer"].is_null()) continue;
    for (const char* format : {"h5", "keras"}) {
      if (c["files"][format].is_null()) continue;
      const std::string file = c["files"][format];
      const std::string version = std::string(format) == "h5" ? "keras2" : "keras3";
      SCOPED_TRACE(file);
      const Result rf = run_graph_case<float>(c, file, version);
      const Result rd = run_graph_case<double>(c, file, version);
      EXPECT_GT(rf.compared, 0);
      worst_float = std::max(worst_float, rf.max_diff);
      worst_double = std::max(worst_double, rd.max_diff);
      std::printf("  %-32s float %.2e  double %.2e  (%lld values)\n", file.c_str(), rf.max_diff, rd.max_diff,
                  static_cast<long long>(rf.compared));
      ++files;
    }
  }
  EXPECT_EQ(files, 14);
  std::printf("largest difference from Keras (relative to max(1, |y|)): float %.2e, double %.2e\n", worst_float,
              worst_double);
#endif
}

TEST(KerasImportGraph, NodesFollowKerasCalls) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  for (const char* ext : {".h5", ".keras"}) {
    SCOPED_TRACE(ext);
    // Inputs in the model's input order (the config lists 'memory' first), nodes named as the layers.
    Graph<float> cross = import_keras_graph<float>(kDir + "/graph_cross_attention" + ext);
    EXPECT_EQ(cross.node_name(cross.input(0)), "query");
    EXPECT_EQ(cross.node_name(cross.input(1)), "memory");
    EXPECT_EQ(cross.input_features(0, 2), 4);
    EXPECT_EQ(cross.input_features(1, 2), 6);
    // mha(query=q, value=m): 2 inputs (keys = values = m); mha(q, m, key=Dense(5)(m)): (query, key, value).
    auto* two = dynamic_cast<MultiHeadAttention<float>*>(cross.node_layer(cross.node("cross")));
    auto* three = dynamic_cast<MultiHeadAttention<float>*>(cross.node_layer(cross.node("cross_key")));
    ASSERT_TRUE(two && three);
    EXPECT_EQ(two->input_features(1, 2), 6);
    EXPECT_EQ(three->input_features(1, 3), 5);
    EXPECT_EQ(three->input_features(2, 3), 6);
    // The shared Dense: call 1 is node 'shared#1', sharing node 'shared' (one set of parameters).
    Graph<float> shared = import_keras_graph<float>(kDir + "/graph_shared_merges" + ext);
    EXPECT_NE(shared.summary().find("shared#1 (shares 'shared')"), std::string::npos) << shared.summary();
    EXPECT_NE(dynamic_cast<Merge<float>*>(shared.node_layer(shared.node("subtract"))), nullptr);
    EXPECT_NE(dynamic_cast<Concatenate<float>*>(shared.node_layer(shared.node("concat"))), nullptr);
    // A nested functional model is a Graph node (its own inputs and nodes), a nested Sequential a Sequential node.
    Graph<float> nested = import_keras_graph<float>(kDir + "/graph_nested_models" + ext);
    auto* inner = dynamic_cast<Graph<float>*>(nested.node_layer(nested.node("inner")));
    ASSERT_NE(inner, nullptr);
    EXPECT_EQ(inner->min_inputs(), 2);
    EXPECT_NE(dynamic_cast<Merge<float>*>(inner->node_layer(inner->node("inner_add"))), nullptr);
    auto* block = dynamic_cast<Sequential<float>*>(nested.node_layer(nested.node("block")));
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(block->size(), 2);
  }
#endif
}

TEST(KerasImportGraph, SequentialFileIsAOneNodeGraph) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  for (const char* file : {"masking_dense.keras", "functional_chain.h5", "functional_chain.keras"}) {
    SCOPED_TRACE(file);
    Sequential<double> seq = import_keras<double>(kDir + "/" + file);
    Graph<double> graph = import_keras_graph<double>(kDir + "/" + file);
    Tensor3<double> x(3, 6, 4);
    x.setRandom();
    for (Index t = 4; t < 6; ++t)
      for (Index f = 0; f < 4; ++f) x(1, t, f) = 0;
    const Tensor3<double> want = seq.predict(x);
    const Mask all = Mask::all_valid();
    const Tensor3<double>& got = graph.forward({{&x, &all}}, Mode::Infer);
    ASSERT_EQ(want.dimensions(), got.dimensions());
    double worst = 0;
    for (Index i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(want.data()[i] - got.data()[i]));
    EXPECT_LE(worst, 1e-12);
  }
#endif
}

TEST(KerasImportGraph, RefusalsNameTheLayer) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  struct Refusal {
    const char* file;
    std::vector<std::string> parts;
  };
  const std::vector<Refusal> refusals = {
      {"refuse_concat_axis", {"layer 'concat_time' (Concatenate)", "axis 1 is not supported", "only the last axis"}},
      {"refuse_unknown_layer", {"layer 'upsample' (UpSampling1D) is not supported", "the importer maps"}},
      {"refuse_causal_cross",
       {"layer 'causal_cross' (MultiHeadAttention)", "use_causal_mask in cross-attention", "is not supported"}},
      {"refuse_lstm_state",
       {"layer 'head' reads output 1 of layer 'lstm_state'", "layers with several outputs are not supported"}},
  };
  for (const Refusal& r : refusals)
    for (const char* ext : {".h5", ".keras"}) {
      const std::string path = kDir + "/" + r.file + ext;
      SCOPED_TRACE(path);
      try {
        import_keras_graph<float>(path);
        ADD_FAILURE() << "no ConfigError";
      } catch (const ConfigError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("import_keras_graph(" + path + ")"), std::string::npos) << m;
        for (const std::string& part : r.parts)
          EXPECT_NE(m.find(part), std::string::npos) << m << "\n  lacks: " << part;
      }
    }
  EXPECT_EQ(graph_case("refuse_concat_axis")["refused_layer"], "concat_time");
  // import_keras (Sequential) refuses every graph case and points to import_keras_graph.
  for (const json& c : manifest()["graph_cases"]) {
    if (!c["refused_layer"].is_null()) continue;
    for (const char* format : {"h5", "keras"}) {
      const std::string path = kDir + "/" + c["files"][format].get<std::string>();
      SCOPED_TRACE(path);
      try {
        import_keras<float>(path);
        ADD_FAILURE() << "import_keras accepted a graph";
      } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("import_keras_graph<S>(path)"), std::string::npos) << e.what();
      }
    }
  }
#endif
}

}  // namespace
