// import_keras (io/keras_import.hpp) against Keras itself: every model of tests/reference/keras/manifest.json,
// from its .h5 (Keras 2.15 + seed packages) and .keras (Keras 3) files, predicts Keras' own outputs within 1e-5
// on the valid steps, and survives save_model / load_model bitwise; the models the importer refuses throw ConfigError
// with the reason; malformed files throw seqattn::Error subclasses with the path. No Python: the reference files are
// committed. Skipped (GTEST_SKIP) when CMake did not find HDF5, libzip and nlohmann-json (seqattn::keras_import).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#if SEQATTN_HAVE_KERAS_IMPORT
#include <seqattn/io/keras_import.hpp>
#include <seqattn/io/model_file.hpp>
#endif

namespace {

#define SKIP_WITHOUT_IMPORT()                                                                                \
  do {                                                                                                       \
    if (!SEQATTN_HAVE_KERAS_IMPORT)                                                                          \
      GTEST_SKIP() << "io/keras_import.hpp needs libhdf5-dev, libzip-dev and nlohmann-json3-dev (not found " \
                      "by CMake)";                                                                           \
  } while (0)

#ifndef SEQATTN_HAVE_KERAS_IMPORT
#define SEQATTN_HAVE_KERAS_IMPORT 0
#endif

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

// Why each case is refused (a part of the message), by case name; the file formats refused.
const std::map<std::string, std::string>& refusals() {
  static const std::map<std::string, std::string> r = {
      {"global_max_pool_masked", "GlobalMaxPooling1D ignores the mask"},
      {"keras_mha_general",
       "value_dim (2) != key_dim (3) is not supported: seqattn's MultiHeadAttention has one head size"},
  };
  return r;
}

struct Result {
  double max_diff = 0;
  Index compared = 0;
  Index mask_checked = 0;  // output steps whose seqattn output mask was compared with Keras' mask
};

// Imports `file` as Sequential<S>, predicts the manifest input and, with round_trip, checks that the imported
// model survives save_model / load_model bitwise (prediction and summary).
template <class S>
Result run_case(const json& c, const std::string& file, const std::string& version, bool round_trip) {
  Sequential<S> model = import_keras<S>(kDir + "/" + file);
  const json& in = c["input"];
  const std::vector<Index> shape = in["shape"].get<std::vector<Index>>();
  const Index B = shape[0], T = shape[1], F = shape.size() == 3 ? shape[2] : 1;
  Tensor3<S> x(B, T, F);
  const std::vector<double> values = in["values"].get<std::vector<double>>();
  for (Index i = 0; i < B * T * F; ++i) x.data()[i] = static_cast<S>(values[static_cast<size_t>(i)]);
  const Tensor3<S> y = model.predict(x);
  const Mask out_mask = model.output_mask();
  if (round_trip) {
    std::stringstream file_bytes;
    save_model(model, file_bytes);
    Sequential<S> loaded = load_model<S>(file_bytes);
    EXPECT_EQ(loaded.summary(), model.summary());
    const Tensor3<S>& y2 = loaded.predict(x);
    EXPECT_TRUE(y2.dimensions() == y.dimensions() &&
                std::memcmp(y2.data(), y.data(), sizeof(S) * static_cast<size_t>(y.size())) == 0)
        << file << ": the model loaded from save_model predicts differently";
  }
  const json& out = c["outputs"][version];
  const std::vector<Index> oshape = out["shape"].get<std::vector<Index>>();
  const std::vector<double> expect = out["values"].get<std::vector<double>>();
  const Index OT = oshape.size() == 3 ? oshape[1] : 1, U = oshape.back();
  EXPECT_EQ(y.dimension(0), B);
  EXPECT_EQ(y.dimension(1), OT);
  EXPECT_EQ(y.dimension(2), U);
  Result r;
  if (y.dimension(0) != B || y.dimension(1) != OT || y.dimension(2) != U) {
    r.max_diff = INFINITY;
    return r;
  }
  // Keras' output mask (per step 1/0, or null): the steps it masks are compared neither (Keras computes them, seqattn
  // writes 0) nor skipped silently: seqattn's output mask must mask the same steps.
  const json& kmask = out["mask"];
  for (Index b = 0; b < B; ++b) {
    const Index len = c["compare_lengths"].is_null() ? OT : c["compare_lengths"][static_cast<size_t>(b)].get<Index>();
    for (Index t = 0; t < len; ++t) {
      if (!kmask.is_null()) {
        const bool keras_kept = kmask[static_cast<size_t>(b)][static_cast<size_t>(t)].get<int>() != 0;
        EXPECT_EQ(out_mask.valid(b, t, OT), keras_kept) << "output mask at (" << b << ", " << t << ")";
        ++r.mask_checked;
        if (!keras_kept) continue;
      }
      for (Index u = 0; u < U; ++u) {
        const double e = expect[static_cast<size_t>((b * OT + t) * U + u)];
        r.max_diff = std::max(r.max_diff, std::fabs(static_cast<double>(y(b, t, u)) - e));
        ++r.compared;
      }
    }
  }
  return r;
}
#endif

TEST(KerasImport, EveryReferenceModelMatchesKeras) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  int matched = 0, refused = 0;
  for (const json& c : manifest()["cases"]) {
    const std::string name = c["name"];
    for (const char* format : {"h5", "keras"}) {
      if (c["files"][format].is_null()) continue;
      const std::string file = c["files"][format];
      const std::string version = std::string(format) == "h5" ? "keras2" : "keras3";
      SCOPED_TRACE(file);
      const auto refusal = refusals().find(name);
      if (refusal != refusals().end()) {
        try {
          import_keras<float>(kDir + "/" + file);
          ADD_FAILURE() << file << ": expected a refusal containing '" << refusal->second << "'";
        } catch (const ConfigError& e) {
          EXPECT_NE(std::string(e.what()).find(refusal->second), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
          ++refused;
        } catch (const std::exception& e) {
          ADD_FAILURE() << file << ": expected a ConfigError but got: " << e.what();
        }
        continue;
      }
      Result r;
      try {
        r = run_case<float>(c, file, version, /*round_trip=*/true);
      } catch (const std::exception& e) {
        ADD_FAILURE() << file << ": " << e.what();
        continue;
      }
      EXPECT_GT(r.compared, 0);
      EXPECT_LE(r.max_diff, 1e-5) << file;
      std::printf("%-45s max |seqattn - Keras| = %.3g over %lld values, %lld mask steps\n", file.c_str(), r.max_diff,
                  static_cast<long long>(r.compared), static_cast<long long>(r.mask_checked));
      ++matched;
    }
  }
  std::printf("%d files match Keras, %d refused\n", matched, refused);
  EXPECT_GE(matched, 40);
#endif
}

#if SEQATTN_HAVE_KERAS_IMPORT
std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "keras_import_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// The message of the seqattn::Error of type E that importing `path` throws ("" when it does not throw it).
template <class E>
std::string import_error(const std::string& path) {
  try {
    import_keras<float>(path);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("other exception: ") + e.what();
  }
  return "no exception";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
#endif

TEST(KerasImport, MalformedFilesThrowWithThePath) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const std::string h5 = read_bytes(kDir + "/masking_dense.h5"), keras = read_bytes(kDir + "/masking_dense.keras");
  ASSERT_GT(h5.size(), 1000u);
  // wrong magic
  std::string p = write_temp("magic.h5", "not a model file at all");
  std::string m = import_error<FormatError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "neither the zip signature")) << m;
  // missing file
  m = import_error<FileError>(::testing::TempDir() + "keras_import_missing.h5");
  EXPECT_TRUE(contains(m, "keras_import_missing.h5") && contains(m, "cannot open")) << m;
  // truncated .h5 and .keras, at several lengths
  for (double part : {0.1, 0.5, 0.9, 0.99}) {
    p = write_temp("truncated.h5", h5.substr(0, static_cast<size_t>(static_cast<double>(h5.size()) * part)));
    m = import_error<Error>(p);
    EXPECT_TRUE(contains(m, p)) << part << ": " << m;
    p = write_temp("truncated.keras", keras.substr(0, static_cast<size_t>(static_cast<double>(keras.size()) * part)));
    m = import_error<Error>(p);
    EXPECT_TRUE(contains(m, p)) << part << ": " << m;
  }
  // a corrupted byte in the zip data: CRC mismatch or invalid compressed data
  std::string bad = keras;
  for (size_t i = 200; i < bad.size() - 200; i += 97) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  p = write_temp("corrupt.keras", bad);
  m = import_error<Error>(p);
  EXPECT_TRUE(contains(m, p)) << m;
  // an HDF5 file that is not a Keras model: the weights of a .keras alone
  // (model.weights.h5 holds no model_config)
#endif
}

TEST(KerasImport, UnknownLayerAndUnsupportedOptionAreRefusedByName) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  // The .h5 keeps its config as a JSON string attribute: edit it in place (same length).
  const std::string h5 = read_bytes(kDir + "/masking_dense.h5");
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string bytes = h5;
    const size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) bytes.replace(at, from.size(), to);
    // A longer value keeps the attribute's length by dropping the blanks after later ", " and ": " separators
    // of the JSON (a changed length corrupts the HDF5 heap).
    for (size_t extra = to.size() > from.size() ? to.size() - from.size() : 0, i = at + to.size(); extra > 0; ++i) {
      if (i + 2 >= bytes.size()) {
        ADD_FAILURE() << "no room to shorten the JSON for " << to;
        break;
      }
      if ((bytes[i] == ',' || bytes[i] == ':') && bytes[i + 1] == ' ' && bytes[i + 2] == '"') {
        bytes.erase(i + 1, 1);
        --extra;
      }
    }
    EXPECT_EQ(bytes.size(), h5.size());
    return bytes;
  };
  std::string p = write_temp("unknown_layer.h5", replaced("\"class_name\": \"Dense\"", "\"class_name\": \"Dxnse\""));
  std::string m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "(Dxnse) is not supported")) << m;
  p = write_temp("bad_activation.h5", replaced("\"activation\": \"relu\"", "\"activation\": \"relux\""));
  m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, "activation 'relux'") && contains(m, "(Activation)") && contains(m, "mish")) << m;
  p = write_temp("hard_sigmoid.h5", replaced("\"activation\": \"relu\"", "\"activation\": \"hard_sigmoid\""));
  m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, "'hard_sigmoid'") && contains(m, "Keras 2 and Keras 3")) << m;
  // Every other name of the activation table imports (layers/activation.hpp: the model-file names are Keras').
  for (const char* name : {"selu", "elu", "swish", "silu", "softplus", "mish", "leaky_relu"}) {
    p = write_temp(std::string("activation_") + name + ".h5",
                   replaced("\"activation\": \"relu\"",
                            "\"activation\":" + std::string(std::strlen(name) < 4 ? 5 - std::strlen(name) : 1, ' ') + "\"" + name + "\""));
    const Sequential<float> model = import_keras<float>(p);
    EXPECT_TRUE(contains(model.summary(), to_string(activation_from_string(name)))) << name << "\n" << model.summary();
  }
  p = write_temp("bad_json.h5", replaced("\"class_name\": \"Dense\"", "\"class_name\"} \"Dense\""));
  m = import_error<FormatError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "not valid JSON")) << m;
  p = write_temp("unknown_option.h5", replaced("\"use_bias\": true", "\"use_bixs\": true"));
  m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, "option 'use_bixs'") && contains(m, "not known")) << m;
#endif
}

// Keras writes Masking(mask_value=float("nan")) as the bare JSON token NaN: it imports as Masking's missing-value
// form (a step with a NaN feature is masked), and strings holding "NaN" are left alone.
TEST(KerasImport, MaskingNaNImportsAsMissingValues) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  EXPECT_EQ(detail::keras::quote_non_finite(R"({"a": NaN, "b": "x NaN \" NaN", "c": [-Infinity, Infinity]})"),
            R"({"a": "NaN", "b": "x NaN \" NaN", "c": ["-Infinity", "Infinity"]})");
  std::string bytes = read_bytes(kDir + "/masking_dense.h5");
  const size_t at = bytes.find("\"mask_value\": 0.0");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 17, "\"mask_value\": NaN");  // same length: the HDF5 attribute keeps its size
  const std::string p = write_temp("masking_nan.h5", bytes);
  Sequential<double> nan_model = import_keras<double>(p);
  EXPECT_TRUE(contains(nan_model.summary(), "Masking(mask_value=NaN)")) << nan_model.summary();
  Sequential<double> zero_model = import_keras<double>(kDir + "/masking_dense.h5");
  const json* c = nullptr;
  for (const json& k : manifest()["cases"])
    if (k["name"] == "masking_dense") c = &k;
  ASSERT_NE(c, nullptr);
  const std::vector<Index> shape = (*c)["input"]["shape"].get<std::vector<Index>>();
  const std::vector<double> values = (*c)["input"]["values"].get<std::vector<double>>();
  const std::vector<Index> lengths = (*c)["lengths"].get<std::vector<Index>>();
  Tensor3<double> x(shape[0], shape[1], shape[2]), x_nan(shape[0], shape[1], shape[2]);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = values[size_t(i)];
  x_nan = x;
  for (Index b = 0; b < shape[0]; ++b)  // padded steps: one NaN feature each (the rest garbage)
    for (Index t = lengths[size_t(b)]; t < shape[1]; ++t)
      for (Index f = 0; f < shape[2]; ++f) x_nan(b, t, f) = f == 0 ? std::nan("") : 7.0;
  const Tensor3<double> y = zero_model.predict(x), y_nan = nan_model.predict(x_nan);
  for (Index b = 0; b < shape[0]; ++b)
    for (Index t = 0; t < lengths[size_t(b)]; ++t)
      for (Index u = 0; u < y.dimension(2); ++u) EXPECT_EQ(y_nan(b, t, u), y(b, t, u)) << b << " " << t;
  EXPECT_GT(lengths[2], 0);
#endif
}

}  // namespace

TEST(KerasImport, GraphsOtherThanChainsAndResidualAddsAreRefused) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  // transformer_encoder.h5 (two residual Adds) imports; its config edited in place (same length) does not.
  const std::string h5 = read_bytes(kDir + "/transformer_encoder.h5");
  auto edited = [&](const std::string& name, const std::string& from, const std::string& to) {
    std::string bytes = h5;
    const size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    EXPECT_EQ(from.size(), to.size());
    if (at != std::string::npos) bytes.replace(at, from.size(), to);
    return write_temp(name, bytes);
  };
  // A merge other than Add (the first Add becomes a Dot).
  std::string p = edited("dot.h5", "\"class_name\": \"Add\"", "\"class_name\": \"Dot\"");
  std::string m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "layer 'mh_add' (Dot) takes 2 different inputs") &&
              contains(m, "residual blocks Add([x, f(x)])"))
      << m;
  // The second Add takes 'pos' (which then feeds three layers) instead of 'mh_norm'.
  p = edited("three_consumers.h5", "[[\"mh_norm\", 0, 0, {}], [\"ff_dropout\"",
             "[[\"pos\",     0, 0, {}], [\"ff_dropout\"");
  m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, "the output of 'pos' feeds 3 layers") && contains(m, "not a chain")) << m;
  // The second Add adds x and the FIRST layer of the branch, whose output also goes on: not x + f(x).
  p = edited("branch_middle.h5", "[\"ff_dropout\", 0, 0, {}]]", "[\"ff_1\",       0, 0, {}]]");
  m = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(m, "the output of 'ff_1' feeds more than the residual Add 'ff_add'")) << m;
#endif
}

TEST(KerasImport, BidirectionalMergeModesMatchKerasConcatHalves) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  // bidi_lstm_concat_seq_masked.h5 with its merge_mode edited: Keras' ave is (forward + backward) / 2 and mul is
  // forward * backward, the two halves of Keras' own concat output.
  const json* c = nullptr;
  for (const json& k : manifest()["cases"])
    if (k["name"] == "bidi_lstm_concat_seq_masked") c = &k;
  ASSERT_NE(c, nullptr);
  const std::string h5 = read_bytes(kDir + "/bidi_lstm_concat_seq_masked.h5");
  const json& in = (*c)["input"];
  const std::vector<Index> shape = in["shape"].get<std::vector<Index>>();
  const Index B = shape[0], T = shape[1], F = shape[2];
  Tensor3<float> x(B, T, F);
  const std::vector<double> values = in["values"].get<std::vector<double>>();
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(values[static_cast<size_t>(i)]);
  const std::vector<double> concat = (*c)["outputs"]["keras2"]["values"].get<std::vector<double>>();
  const Index U2 = (*c)["outputs"]["keras2"]["shape"][2].get<Index>(), U = U2 / 2;
  const std::string from = "\"merge_mode\": \"concat\"";
  for (const std::string mode : {"ave", "mul"}) {
    std::string bytes = h5;
    const size_t at = bytes.find(from);
    ASSERT_NE(at, std::string::npos);
    std::string to = "\"merge_mode\": \"" + mode + "\"";
    to.resize(from.size(), ' ');
    bytes.replace(at, from.size(), to);
    const std::string path = write_temp("bidi_" + mode + ".h5", bytes);
    Sequential<float> model = import_keras<float>(path);
    const Tensor3<float>& y = model.predict(x);
    ASSERT_EQ(y.dimension(2), U);
    double worst = 0;
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < (*c)["compare_lengths"][static_cast<size_t>(b)].get<Index>(); ++t)
        for (Index u = 0; u < U; ++u) {
          const double f = concat[static_cast<size_t>((b * T + t) * U2 + u)];
          const double r = concat[static_cast<size_t>((b * T + t) * U2 + U + u)];
          const double want = mode == "ave" ? (f + r) / 2 : f * r;
          worst = std::max(worst, std::fabs(static_cast<double>(y(b, t, u)) - want));
        }
    EXPECT_LE(worst, 1e-5) << mode;
    std::printf("bidi_lstm_concat_seq_masked.h5 as merge_mode %s: max |seqattn - Keras| = %.3g\n", mode.c_str(), worst);
  }
  std::string bytes = h5;
  bytes.replace(bytes.find(from), from.size(), "\"merge_mode\": null    ");
  const std::string path = write_temp("bidi_none.h5", bytes);
  const std::string m = import_error<ConfigError>(path);
  EXPECT_TRUE(contains(m, "layer 'bidi' (Bidirectional): merge_mode None") && contains(m, path)) << m;
#endif
}

TEST(KerasImport, EveryReferenceModelMatchesKerasInDouble) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  // import_keras<double> reads the float32 weights exactly and computes in double: Keras' float32 outputs are
  // within float rounding of it.
  int matched = 0;
  double worst = 0;
  for (const json& c : manifest()["cases"]) {
    if (refusals().count(c["name"].get<std::string>())) continue;
    for (const char* format : {"h5", "keras"}) {
      if (c["files"][format].is_null()) continue;
      const std::string file = c["files"][format];
      SCOPED_TRACE(file);
      try {
        const Result r = run_case<double>(c, file, std::string(format) == "h5" ? "keras2" : "keras3", true);
        EXPECT_GT(r.compared, 0);
        EXPECT_LE(r.max_diff, 1e-5);
        worst = std::max(worst, r.max_diff);
        ++matched;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    }
  }
  std::printf("%d files imported in double match Keras, max |seqattn - Keras| = %.3g\n", matched, worst);
  EXPECT_GE(matched, 55);
#endif
}

TEST(KerasImport, WrongWeightShapeAndNonFiniteWeightAreRefused) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const std::string h5 = read_bytes(kDir + "/masking_dense.h5");
  // The config says 6 units where the file's kernel has 5: refused before reading, naming the weight and shapes.
  std::string bytes = h5;
  const std::string units = "\"name\": \"dense_tanh\", \"trainable\": true, \"dtype\": \"float32\", \"units\": 5";
  const size_t at = bytes.find(units);
  ASSERT_NE(at, std::string::npos);
  bytes[at + units.size() - 1] = '6';
  std::string p = write_temp("wrong_shape.h5", bytes);
  std::string m = import_error<MismatchError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "dense_tanh/kernel:0' expected shape (4, 6) but the file has (4, 5)")) << m;
  // A NaN in the first Dense kernel (its first float found in the raw contiguous data): NonFiniteError, float and
  // double imports alike.
  Sequential<float> model = import_keras<float>(kDir + "/masking_dense.h5");
  const float w0 = model.layer(1).params()[0].value[0];
  const std::string w0_bytes(reinterpret_cast<const char*>(&w0), sizeof w0);
  ASSERT_NE(h5.find(w0_bytes), std::string::npos);
  ASSERT_EQ(h5.find(w0_bytes, h5.find(w0_bytes) + 1), std::string::npos) << "the weight's bytes are not unique";
  bytes = h5;
  const float nan = std::nanf("");
  bytes.replace(bytes.find(w0_bytes), sizeof nan, std::string(reinterpret_cast<const char*>(&nan), sizeof nan));
  p = write_temp("nan_weight.h5", bytes);
  m = import_error<NonFiniteError>(p);
  EXPECT_TRUE(contains(m, p) && contains(m, "dense_tanh/kernel:0' holds a non-finite value (nan) at element 0")) << m;
  try {
    import_keras<double>(p);
    ADD_FAILURE() << "import_keras<double> accepted a NaN weight";
  } catch (const NonFiniteError& e) {
    EXPECT_TRUE(contains(e.what(), "holds a non-finite value")) << e.what();
  }
#endif
}

// Keras weight rules (core/weight_rules.hpp): trainable, kernel_regularizer, kernel_constraint and bias_constraint
// of a Dense config are set on the imported layer, in Keras 2 and 3's serialized forms; a Conv1D-like layout that
// does not carry an axis over is refused (not tested here: no Conv1D in this file).
TEST(KerasImport, WeightRulesAndTrainableAreImported) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  std::string bytes = read_bytes(kDir + "/masking_dense.h5");
  const std::string from = "\"name\": \"dense_tanh\", \"trainable\": true,";
  const std::string to_end = "\"bias_constraint\": null";
  const size_t at = bytes.find(from), end = bytes.find(to_end, at);
  ASSERT_NE(at, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  std::string rules =
      "\"name\": \"dense_tanh\", \"trainable\": false, \"dtype\": \"float32\", \"units\": 5, \"activation\": \"tanh\", "
      "\"use_bias\": true, \"kernel_regularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L1L2\", "
      "\"config\": {\"l1\": 0.25, \"l2\": 0.5}, \"registered_name\": null}, \"bias_regularizer\": null, "
      "\"kernel_constraint\": {\"class_name\": \"MaxNorm\", \"config\": {\"max_value\": 1.5, \"axis\": 0}}, "
      "\"bias_constraint\": {\"class_name\": \"NonNeg\", \"config\": {}}";
  const size_t span = end + to_end.size() - at;
  ASSERT_LE(rules.size(), span);
  rules += std::string(span - rules.size(), ' ');  // same length: the HDF5 attribute keeps its size
  bytes.replace(at, span, rules);
  const std::string p = write_temp("weight_rules.h5", bytes);
  Sequential<double> model = import_keras<double>(p);
  const Layer<double>& dense = model.layer(1);
  ASSERT_EQ(dense.class_name(), "Dense");
  EXPECT_FALSE(dense.trainable());
  EXPECT_EQ(dense.weight_rules().regularizer(ParamRole::Kernel), (L1L2{0.25, 0.5}));
  EXPECT_EQ(dense.weight_rules().constraint(ParamRole::Kernel), Constraint::max_norm(1.5, 0));
  EXPECT_EQ(dense.weight_rules().constraint(ParamRole::Bias), Constraint::non_neg());
  EXPECT_TRUE(model.layer(model.size() - 1).trainable());
  // And they survive save_model / load_model.
  std::stringstream file_bytes;
  save_model(model, file_bytes);
  Sequential<double> loaded = load_model<double>(file_bytes);
  EXPECT_TRUE(loaded.layer(1).weight_rules() == dense.weight_rules());
  // A negative l1 names the Keras layer and the value.
  const size_t l1 = bytes.find("\"l1\": 0.25");
  ASSERT_NE(l1, std::string::npos);
  bytes.replace(l1, 10, "\"l1\": -0.2");
  const std::string bad = write_temp("weight_rules_bad.h5", bytes);
  const std::string m = import_error<ConfigError>(bad);
  EXPECT_TRUE(contains(m, "dense_tanh") && contains(m, "kernel_regularizer l1") && contains(m, "-0.2")) << m;
#endif
}

#if SEQATTN_HAVE_KERAS_IMPORT
namespace {

// `bytes` with the first `from` replaced by `to` padded with blanks to the same length (the HDF5 attribute holding
// the config keeps its size).
std::string same_length_edit(const std::string& bytes, const std::string& from, const std::string& to) {
  std::string out = bytes;
  const size_t at = out.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  EXPECT_LE(to.size(), from.size()) << to;
  if (at == std::string::npos || to.size() > from.size()) return out;
  out.replace(at, from.size(), to + std::string(from.size() - to.size(), ' '));
  return out;
}

// The span of `bytes` from `first` to the end of the next `last` after it, replaced by `to` (padded with blanks).
std::string replace_span(const std::string& bytes, const std::string& first, const std::string& last,
                         const std::string& to) {
  const size_t at = bytes.find(first), end = bytes.find(last, at);
  EXPECT_TRUE(at != std::string::npos && end != std::string::npos) << first << " .. " << last;
  if (at == std::string::npos || end == std::string::npos) return bytes;
  return same_length_edit(bytes, bytes.substr(at, end + last.size() - at), to);
}

const json& reference_case(const std::string& name) {
  for (const json& k : manifest()["cases"])
    if (k["name"] == name) return k;
  throw std::runtime_error("no reference case " + name);
}

}  // namespace
#endif

// keras-multi-head's MultiHeadAttention is one seqattn layer (activation on q, k, v AND output_activation), and its
// regularizers, constraints (axis included: its (F, F) kernels are seqattn's Wq .. Wo as they are) and trainable
// are imported.
TEST(KerasImport, MultiHeadPackageIsOneLayerWithItsWeightRules) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const std::string h5 = read_bytes(kDir + "/multi_head_masked.h5");
  Sequential<double> plain = import_keras<double>(kDir + "/multi_head_masked.h5");
  ASSERT_EQ(plain.size(), Index(3)) << plain.summary();  // Masking, MultiHeadAttention, Dense
  const auto* mha = dynamic_cast<const MultiHeadAttention<double>*>(&plain.layer(1));
  ASSERT_NE(mha, nullptr) << plain.summary();
  EXPECT_EQ(mha->options().activation(), Activation::ReLU);
  EXPECT_EQ(mha->options().output_activation(), Activation::ReLU);

  std::string bytes =
      same_length_edit(h5, "\"name\": \"mh\", \"trainable\": true,", "\"name\": \"mh\", \"trainable\":false,");
  bytes = replace_span(
      bytes, "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"GlorotNormal\"",
      "\"bias_constraint\": null",
      "\"kernel_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.0, \"l2\": 0.25}}, "
      "\"bias_regularizer\": null, \"kernel_constraint\": {\"class_name\": \"MaxNorm\", \"config\": "
      "{\"max_value\": 1.5, \"axis\": 0}}, \"bias_constraint\": {\"class_name\": \"NonNeg\", \"config\": {}}");
  std::string p = write_temp("mh_rules.h5", bytes);
  Sequential<double> model = import_keras<double>(p);
  ASSERT_EQ(model.size(), Index(3));
  const Layer<double>& m = model.layer(1);
  EXPECT_FALSE(m.trainable());
  EXPECT_EQ(m.weight_rules().regularizer(ParamRole::Kernel), (L1L2{0.0, 0.25}));
  EXPECT_EQ(m.weight_rules().constraint(ParamRole::Kernel), Constraint::max_norm(1.5, 0));
  EXPECT_EQ(m.weight_rules().constraint(ParamRole::Bias), Constraint::non_neg());
#endif
}

// Regularizers and constraints the importer does not map are refused with the key and the reason (they were
// silently dropped): a rule of another name, an activity regularizer, SeqSelfAttention's constraints.
TEST(KerasImport, UnmappedRegularizersAndConstraintsAreRefused) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const std::string h5 = read_bytes(kDir + "/multi_head_masked.h5");
  std::string bytes =
      replace_span(h5, "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"GlorotNormal\"",
                   "\"bias_constraint\": null", "\"query_constraint\": {\"class_name\": \"NonNeg\", \"config\": {}}");
  std::string p = write_temp("mh_unknown_rule.h5", bytes);
  std::string msg = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(msg, "layer 'mh' (MultiHeadAttention): option 'query_constraint'") &&
              contains(msg, "weight roles kernel, recurrent, bias, embeddings, gamma and beta"))
      << msg;
  // Dense's activity_regularizer (a loss on its output): refused, not ignored.
  const std::string dense = read_bytes(kDir + "/masking_dense.h5");
  bytes = replace_span(dense, "\"kernel_initializer\"", "\"activity_regularizer\": null",
                       "\"activity_regularizer\": {\"class_name\": \"L2\", \"config\": {\"l2\": 0.5}}");
  p = write_temp("dense_activity.h5", bytes);
  msg = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(msg, "option 'activity_regularizer'") && contains(msg, "no activity regularizers")) << msg;
  // SeqSelfAttention's constraints are not mapped: refused.
  const std::string ssa = read_bytes(kDir + "/ssa_additive_masked.h5");
  bytes = replace_span(ssa, "\"kernel_initializer\"", "\"kernel_constraint\": null",
                       "\"kernel_constraint\": {\"class_name\": \"NonNeg\", \"config\": {}}");
  p = write_temp("ssa_constraint.h5", bytes);
  msg = import_error<ConfigError>(p);
  EXPECT_TRUE(contains(msg, "(SeqSelfAttention): option kernel_constraint=") &&
              contains(msg, "constraints of SeqSelfAttention are not mapped"))
      << msg;
#endif
}

// PositionEmbedding mode expand: keras-pos-embd masks the steps whose position equals mask_zero (Python truthiness:
// True compares as 1, an integer n as n, false / 0 make no mask); its embeddings rules are imported. Keras' Dense
// after it computes every step from the table row alone, so Keras' outputs hold for any mask_zero at the kept steps.
TEST(KerasImport, PositionEmbeddingExpandMaskZeroVariants) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const json& c = reference_case("pos_embd_expand_mask_zero");
  const std::string h5 = read_bytes(kDir + "/pos_embd_expand_mask_zero.h5");
  const std::vector<Index> shape = c["input"]["shape"].get<std::vector<Index>>();
  const Index B = shape[0], T = shape[1];
  const std::vector<double> pos = c["input"]["values"].get<std::vector<double>>();
  const std::vector<double> want = c["outputs"]["keras2"]["values"].get<std::vector<double>>();
  const Index U = c["outputs"]["keras2"]["shape"][2].get<Index>();
  Tensor3<double> x(B, T, 1);
  for (Index i = 0; i < B * T; ++i) x.data()[i] = pos[static_cast<size_t>(i)];
  struct Variant {
    const char* json_value;  // replaces `"mask_zero": true}}` (same length)
    std::optional<double> masked;
  };
  for (const Variant& v :
       {Variant{"\"mask_zero\": true}}", 1.0}, Variant{"\"mask_zero\": 2   }}", 2.0},
        Variant{"\"mask_zero\": -1  }}", -1.0}, Variant{"\"mask_zero\":false}}", std::nullopt},
        Variant{"\"mask_zero\": 0   }}", std::nullopt}, Variant{"\"mask_zero\": null}}", std::nullopt}}) {
    SCOPED_TRACE(v.json_value);
    const std::string p = write_temp("pos_mask_zero.h5", same_length_edit(h5, "\"mask_zero\": true}}", v.json_value));
    Sequential<double> model = import_keras<double>(p);
    const Tensor3<double> y = model.predict(x);
    const Mask mask = model.output_mask();
    ASSERT_EQ(y.dimension(2), U);
    double worst = 0;
    Index kept = 0;
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        const bool keep = !v.masked || pos[static_cast<size_t>(b * T + t)] != *v.masked;
        EXPECT_EQ(mask.valid(b, t, T), keep) << b << " " << t;
        if (!keep) continue;
        ++kept;
        for (Index u = 0; u < U; ++u)
          worst = std::max(worst, std::fabs(y(b, t, u) - want[static_cast<size_t>((b * T + t) * U + u)]));
      }
    EXPECT_LE(worst, 1e-6);
    if (v.masked)
      EXPECT_LT(kept, B * T);
    else
      EXPECT_EQ(kept, B * T);
  }
  std::string m = import_error<ConfigError>(
      write_temp("pos_mask_float.h5", same_length_edit(h5, "\"mask_zero\": true}}", "\"mask_zero\": 1.5 }}")));
  EXPECT_TRUE(contains(m, "layer 'pos_expand' (PositionEmbedding): mask_zero=1.5 is not supported")) << m;
  // embeddings_regularizer / embeddings_constraint (axis 1: one norm per row, as Keras' on the same (rows, d) table).
  std::string bytes =
      replace_span(h5, "\"embeddings_initializer\": {", "\"embeddings_constraint\": null",
                   "\"embeddings_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.5, "
                   "\"l2\": 0.0}}, \"embeddings_constraint\": {\"class_name\": \"MaxNorm\", \"config\": "
                   "{\"max_value\": 2.0, \"axis\": 1}}");
  Sequential<double> ruled = import_keras<double>(write_temp("pos_rules.h5", bytes));
  EXPECT_EQ(ruled.layer(0).weight_rules().regularizer(ParamRole::Embeddings), (L1L2{0.5, 0.0}));
  EXPECT_EQ(ruled.layer(0).weight_rules().constraint(ParamRole::Embeddings), Constraint::max_norm(2.0, 1));
  bytes = replace_span(h5, "\"embeddings_initializer\": {", "\"activity_regularizer\": null",
                       "\"activity_regularizer\": {\"class_name\": \"L2\", \"config\": {\"l2\": 0.5}}");
  m = import_error<ConfigError>(write_temp("pos_activity.h5", bytes));
  EXPECT_TRUE(contains(m, "(PositionEmbedding): option activity_regularizer=") && contains(m, "activity regularizers"))
      << m;
  // Mode expand needs the model input of positions: after another layer (a (B, T, F) input) it is refused.
  const std::string trig = read_bytes(kDir + "/trig_pos_add_concat.h5");
  m = import_error<ConfigError>(
      write_temp("trig_expand_3d.h5", same_length_edit(trig, "\"mode\": \"concat\"", "\"mode\": \"expand\"")));
  EXPECT_TRUE(contains(m, "(TrigPosEmbedding): mode 'expand' takes the model's input (batch, time) of positions")) << m;
#endif
}

// The rules of the layer a Bidirectional wraps are set on both directions (they were dropped before).
TEST(KerasImport, BidirectionalWrappedLayerRulesAreImported) {
  SKIP_WITHOUT_IMPORT();
#if SEQATTN_HAVE_KERAS_IMPORT
  const std::string h5 = read_bytes(kDir + "/bidi_lstm_concat_seq_masked.h5");
  const std::string bytes =
      replace_span(h5, "\"kernel_initializer\"", "\"recurrent_regularizer\": null",
                   "\"recurrent_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.0, \"l2\": 0.125}}");
  Sequential<double> model = import_keras<double>(write_temp("bidi_rules.h5", bytes));
  Bidirectional<double>* bi = nullptr;
  for (Index i = 0; i < model.size() && !bi; ++i) bi = dynamic_cast<Bidirectional<double>*>(&model.layer(i));
  ASSERT_NE(bi, nullptr) << model.summary();
  for (Layer<double>* l : {&bi->forward_layer(), &bi->backward_layer()})
    EXPECT_EQ(l->weight_rules().regularizer(ParamRole::Recurrent), (L1L2{0.0, 0.125})) << l->describe();
  EXPECT_GT(model.regularization_loss(), 0.0);
  std::stringstream file_bytes;
  save_model(model, file_bytes);
  Sequential<double> loaded = load_model<double>(file_bytes);
  EXPECT_DOUBLE_EQ(loaded.regularization_loss(), model.regularization_loss());
#endif
}
