// Model files (io/model_file.hpp) and layer configs (core/layer_config.hpp, model/layer_registry.hpp):
//   - every built-in layer, with non-default values of every option (initializers of each kind, seeds above
//     INT64_MAX, regularizers), rebuilds from its entry to the same entry and describe();
//   - a user layer registered with register_layer round-trips through a model file; a layer without config() and
//     a registered-nowhere class are refused at save, naming the layer;
//   - each check of load_model fails with its own message (magic, version, size, checksum, JSON, unknown class,
//     unknown option, option types, in_features, nesting, sizes beyond what the file's tensors justify,
//     tensors that do not fit), float64 files load into float models (and the reverse) with converted values.
// (Random models of every layer type round-trip bitwise in test_property_io.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "seqattn/io/model_file.hpp"
#include "support/error_text.hpp"

using namespace seqattn;

namespace {

using seqattn::testing::error_of;

// A file in the model format with the given architecture text, the tensors of `weights`, the declared input
// features and version.
std::string make_file(const std::string& json, Sequential<float>& weights, std::uint64_t in_features,
                      std::uint32_t version = 1) {
  detail::ByteWriter w;
  w.raw("SEQATTNM", 8);
  w.u32(version);
  w.u32(1);
  w.u64(0);
  w.u64(in_features);
  w.u64(json.size());
  w.raw(json.data(), json.size());
  detail::tensor_records::write_records(w, weights, false, "test");
  w.patch_u64(16, w.size() + 4);
  w.u32(detail::crc32(w.bytes().data(), w.size()));
  return std::string(w.bytes().begin(), w.bytes().end());
}

std::string arch(const std::string& layers, int in = 3) {
  return R"({"seqattn_version":"0.1.0","model":{"class_name":"Sequential","config":{"layers":[)" + layers +
         R"(]},"in_features":)" + std::to_string(in) + "}}";
}

std::string dense_entry(const std::string& config, int in = 3) {
  return R"({"class_name":"Dense","config":)" + config + R"(,"in_features":)" + std::to_string(in) + "}";
}

Sequential<float> load_bytes(const std::string& bytes) {
  std::stringstream in(bytes);
  return load_model<float>(in);
}

std::string save_bytes(Sequential<float>& model) {
  std::stringstream out;
  save_model(model, out);
  return out.str();
}

// Entry -> layer -> entry, and the same describe().
template <class S>
void expect_round_trip(const Layer<S>& layer) {
  SCOPED_TRACE(layer.describe());
  const Config entry = layer_entry(layer);
  ASSERT_TRUE(LayerRegistry<S>::instance().contains(layer.class_name()));
  const std::unique_ptr<Layer<S>> rebuilt = build_layer<S>(entry, layer.in_features());
  EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump() << "\n" << layer_entry(*rebuilt).dump();
  EXPECT_EQ(rebuilt->describe(), layer.describe());
  EXPECT_EQ(rebuilt->class_name(), layer.class_name());
}

TEST(LayerConfig, EveryLayerWithEveryOptionRebuildsFromItsEntry) {
  using F = float;
  const std::uint64_t big_seed = std::numeric_limits<std::uint64_t>::max() - 5;  // written as a string
  expect_round_trip(Dense<F>(3, 4,
                             DenseOptions()
                                 .activation(Activation::GELU)
                                 .use_bias(false)
                                 .kernel_init(Init::uniform(-0.3, 0.7))
                                 .bias_init(Init::constant(0.25))
                                 .seed(big_seed)));
  for (const Init& init : {Init::zeros(), Init::ones(), Init::normal(0.3), Init::glorot_uniform(),
                           Init::glorot_normal(), Init::he_uniform(), Init::he_normal(), Init::orthogonal(1.5)})
    expect_round_trip(Dense<F>(3, 2, DenseOptions().kernel_init(init).bias_init(init)));
  expect_round_trip(ActivationLayer<F>(3, Activation::Softmax));
  expect_round_trip(Dropout<F>(3, 0.3, DropoutOptions().seed(7)));
  expect_round_trip(LayerNorm<F>(3, LayerNormOptions().eps(1e-3).scale(false).center(false)));
  expect_round_trip(BatchNorm<F>(3, BatchNormOptions().momentum(0.01).eps(1e-3).scale(false).center(true)));
  expect_round_trip(Embedding<F>(1, 9, 4, EmbeddingOptions().mask_zero(true).init(Init::normal(0.1)).seed(3)));
  expect_round_trip(SinusoidalPositionalEncoding<F>(3, SinusoidalOptions().mode(PositionMode::Concat).output_dim(4)));
  expect_round_trip(PositionEmbedding<F>(
      3, 11,
      PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2).embeddings_init(Init::he_normal()).seed(9)));
  expect_round_trip(Conv1D<F>(3, 5, 3,
                              Conv1DOptions()
                                  .stride(2)
                                  .dilation(2)
                                  .padding(Padding::Causal)
                                  .use_bias(false)
                                  .activation(Activation::Tanh)
                                  .seed(4)));
  expect_round_trip(MaxPool1D<F>(3, 3, PoolOptions().stride(2).partial_windows(true)));
  expect_round_trip(AvgPool1D<F>(3, 2));
  expect_round_trip(GlobalMaxPool<F>(3));
  expect_round_trip(GlobalAvgPool<F>(3));
  expect_round_trip(LastStep<F>(3));
  expect_round_trip(LastStepAttention<F>(3, LastStepAttentionOptions().units(4).seed(6)));
  expect_round_trip(LastStepAttention<F>(
      3, LastStepAttentionOptions().score(AttentionScore::Bahdanau).units(2).kernel_init(Init::he_normal()).seed(7)));
  expect_round_trip(ScaledDotProductAttention<F>(3, ScaledDotProductAttentionOptions().history_only(true)));
  expect_round_trip(ResidualScaledDotProductAttention<F>(3, ScaledDotProductAttentionOptions().value_features(3)));
  expect_round_trip(LSTM<F>(3, 4,
                            LSTMOptions()
                                .return_sequences(true)
                                .activation(Activation::Sigmoid)
                                .recurrent_activation(Activation::Tanh)
                                .use_bias(false)
                                .unit_forget_bias(false)
                                .recurrent_init(Init::orthogonal(0.5))
                                .seed(1)));
  expect_round_trip(GRU<F>(3, 4, GRUOptions().return_sequences(true).kernel_init(Init::he_uniform()).seed(2)));
  expect_round_trip(Bidirectional<F>(3, 4, GRUOptions().seed(5), BidirectionalOptions().merge_mode(MergeMode::Sum)));
  expect_round_trip(Bidirectional<F>(3, 2, LSTMOptions().return_sequences(true)));
  SeqSelfAttentionOptions so;
  so.units(5)
      .attention_type(AttentionType::Multiplicative)
      .attention_width(3)
      .history_only(true)
      .attention_activation(Activation::Sigmoid)
      .use_additive_bias(false)
      .use_attention_bias(false)
      .attention_regularizer_weight(0.125)
      .kernel_init(Init::glorot_uniform())
      .bias_init(Init::constant(-1))
      .kernel_regularizer({0.01, 0.02})
      .bias_regularizer({0.0, 0.5})
      .seed(8);
  expect_round_trip(SeqSelfAttention<F>(3, so));
  expect_round_trip(SeqWeightedAttention<F>(3, SeqWeightedAttentionOptions().use_bias(false).seed(2)));
  expect_round_trip(MultiHeadAttention<F>(4, 2,
                                          MultiHeadAttentionOptions()
                                              .head_size(3)
                                              .key_features(5)
                                              .output_features(6)
                                              .use_bias(false)
                                              .causal(true)
                                              .attention_window(2)
                                              .attention_dropout(0.1)
                                              .activation(Activation::ReLU)
                                              .seed(6)));
  expect_round_trip(MultiHeadAttention<F>(
      4, 2, MultiHeadAttentionOptions().output_activation(Activation::GELU).need_weights(false).seed(7)));
  expect_round_trip(FeatureAttention<F>(3, FeatureAttentionOptions().shared(true).use_bias(false).seed(1)));
  expect_round_trip(TemporalAttention<F>(3, 5, TemporalAttentionOptions().shared(true).use_bias(false).seed(1)));
  expect_round_trip(TransformerEncoderBlock<F>(4, 2, 8,
                                               TransformerEncoderOptions()
                                                   .dropout(0.1)
                                                   .attention_dropout(0.2)
                                                   .activation(Activation::ReLU)
                                                   .norm_first(true)
                                                   .causal(true)
                                                   .attention_window(3)
                                                   .layer_norm_eps(1e-6)
                                                   .seed(3)));
  Sequential<F> body(3);
  body.add<Dense<F>>(3);
  expect_round_trip(Residual<F>(3, body));
  Sequential<F> nested(3);
  nested.add<Dense<F>>(5);
  nested.add(std::make_unique<Sequential<F>>(5));  // an empty nested model
  nested.add<Dense<F>>(3);
  nested.add<Residual<F>>(body);
  expect_round_trip(nested);
  expect_round_trip(Dense<double>(3, 4));
}

// A user layer: y = factor * x * w, one parameter "w" (F).
template <class S>
class Scale final : public Layer<S> {
 public:
  Scale(Index in_features, double factor) : Layer<S>(in_features), factor_(factor), w_(Vector<S>::Ones(in_features)) {
    w_.setLinSpaced(in_features, S(0.5), S(1.5));
    dw_ = Vector<S>::Zero(in_features);
  }
  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "scale"; }
  std::string describe() const override { return detail::cat("Scale(factor=", factor_, ")"); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Scale>(*this); }
  std::string class_name() const override { return "Scale"; }
  Config config() const override {
    Config c = Config::object();
    c.set("factor", factor_);
    return c;
  }
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Scale config");
    const double factor = r.read<double>("factor");
    r.finish();
    return std::make_unique<Scale>(in_features, factor);
  }
  Vector<S>& weights() { return w_; }

 protected:
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override {
    as_matrix(y) = (as_matrix(x).array().rowwise() * (S(factor_) * w_.transpose().array())).matrix();
  }
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    as_matrix(dx) = as_matrix(dy);
  }
  void collect_params(ParamList<S>& list) override { list.push_back(vector_param<S>("w", w_, &dw_)); }

 private:
  double factor_;
  Vector<S> w_, dw_;
};

// Scale with class_name() "Unregistered": never registered.
template <class S>
class Unregistered final : public Layer<S> {
 public:
  explicit Unregistered(Index in) : Layer<S>(in) {}
  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "unregistered"; }
  std::string describe() const override { return "Unregistered()"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Unregistered>(*this); }
  std::string class_name() const override { return "Unregistered"; }
  Config config() const override { return Config::object(); }

 protected:
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override { y = x; }
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override { dx = dy; }
};

// A layer that keeps the defaults (no class_name(), no config()).
template <class S>
class Opaque final : public Layer<S> {
 public:
  explicit Opaque(Index in) : Layer<S>(in) {}
  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "opaque"; }
  std::string describe() const override { return "Opaque(7)"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Opaque>(*this); }

 protected:
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override { y = x; }
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override { dx = dy; }
};

TEST(ModelFile, UserLayersRoundTripOnceRegistered) {
  Sequential<float> model(3);
  model.add<Dense<float>>(4, DenseOptions().seed(1));
  model.add<Scale<float>>(2.5).weights()(1) = 7.0f;
  model.add<Residual<float>>().body().add<Scale<float>>(-1.0);
  EXPECT_CONTAINS(error_of<ConfigError>([&] { save_bytes(model); }),
                  "layer class 'Scale' is not registered, so the file would not load");
  register_layer<Scale>("Scale");
  const std::string bytes = save_bytes(model);
  Sequential<float> loaded = load_bytes(bytes);
  EXPECT_EQ(loaded.summary(), model.summary());
  Tensor3<float> x(2, 4, 3);
  x.setRandom();
  const Tensor3<float> y = model.predict(x);
  EXPECT_EQ(std::memcmp(y.data(), loaded.predict(x).data(), y.size() * sizeof(float)), 0);
  std::stringstream in(bytes);
  Sequential<double> as_double = load_model<double>(in);  // registered for double too
  EXPECT_EQ(as_double.layer_as<Scale<double>>(1).weights()(1), 7.0);
}

TEST(ModelFile, LayersThatCannotBeSavedAreNamed) {
  Sequential<float> model(3);
  model.add<Dense<float>>(3);
  model.add<Opaque<float>>();
  EXPECT_CONTAINS(error_of<ConfigError>([&] { save_bytes(model); }),
                  "save_model(stream): Opaque(7): cannot be saved to a model file");
  Sequential<float> other(3);
  other.add<Residual<float>>().body().add<Unregistered<float>>();
  EXPECT_CONTAINS(error_of<ConfigError>([&] { save_bytes(other); }), "layer class 'Unregistered' is not registered");
}

TEST(ModelFile, SavesToAPathAtomicallyAndConvertsScalarTypes) {
  Sequential<double> model(3);
  model.add<Dense<double>>(4, DenseOptions().seed(1).activation(Activation::Tanh));
  model.add<BatchNorm<double>>();
  model.layer_as<Dense<double>>(0).kernel()(0, 0) = 1e-300;  // below float's range: rounds to 0
  const std::string path = ::testing::TempDir() + "model_file_test.sqm";
  save_model(model, path);
  Sequential<double> same = load_model<double>(path);
  EXPECT_EQ(same.layer_as<Dense<double>>(0).kernel(), model.layer_as<Dense<double>>(0).kernel());
  Sequential<float> as_float = load_model<float>(path);
  const Matrix<double>& k = model.layer_as<Dense<double>>(0).kernel();
  const Matrix<float>& kf = as_float.layer_as<Dense<float>>(0).kernel();
  for (Index i = 0; i < k.size(); ++i) EXPECT_EQ(kf.data()[i], static_cast<float>(k.data()[i]));
  model.layer_as<Dense<double>>(0).kernel()(0, 1) = 1e300;  // Inf as float
  save_model(model, path);
  EXPECT_CONTAINS(error_of<NonFiniteError>([&] { load_model<float>(path); }),
                  "holds Inf at element 1 = (0, 1) (converted from the file's float64)");
  EXPECT_NO_THROW(load_model<double>(path));
  std::remove(path.c_str());
}

TEST(ModelFile, EachCheckFailsWithItsMessage) {
  Sequential<float> model(3);
  model.add<Dense<float>>(2, DenseOptions().seed(1));
  const std::string good = save_bytes(model);
  ASSERT_NO_THROW(load_bytes(good));
  // Header, size, checksum.
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes("SEQATTNW" + good.substr(8)); }),
                  "load_model(stream): not a seqattn model file: magic expected \"SEQATTNM\" but found \"SEQATTNW\"");
  std::string newer = good;
  newer[8] = 2;
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(newer); }),
                  "format version 2 is not supported: this seqattn (" + std::string(version_string()) +
                      ") reads version 1; the file was written by a newer seqattn");
  const std::string path = ::testing::TempDir() + "model_file_truncated.sqm";
  { std::ofstream(path, std::ios::binary) << good.substr(0, good.size() - 9); }
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_model<float>(path); }), "truncated file: expected");
  std::remove(path.c_str());
  std::string flipped = good;
  flipped[60] ^= 1;
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(flipped); }), "checksum mismatch");
  // The architecture.
  Sequential<float> weights(3);
  weights.add<Dense<float>>(2, DenseOptions().seed(1));
  const std::string dense = R"({"units":2,"activation":"linear","use_bias":true,"seed":1})";
  ASSERT_NO_THROW(load_bytes(make_file(arch(dense_entry(dense)), weights, 3)));
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(dense)) + "x", weights, 3)); }),
                  "the architecture is not valid JSON");
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(make_file(std::string(200, '['), weights, 3)); }),
                  "the architecture JSON nests deeper than");
  EXPECT_CONTAINS(error_of<FormatError>([&] {
                    load_bytes(make_file(arch(R"({"class_name":"Dense2","config":{},"in_features":3})"), weights, 3));
                  }),
                  "Sequential layer 0: unknown layer class 'Dense2' (registered: Activation, AvgPool1D,");
  EXPECT_CONTAINS(
      error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(R"({"units":2,"unitz":3})")), weights, 3)); }),
      "Dense config: unknown option 'unitz'");
  EXPECT_CONTAINS(
      error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(R"({"units":-3})")), weights, 3)); }),
      "Dense config: 'units' expected a positive integer but got -3");
  EXPECT_CONTAINS(error_of<FormatError>(
                      [&] { load_bytes(make_file(arch(dense_entry(R"({"units":2,"use_bias":"yes"})")), weights, 3)); }),
                  "Dense config: 'use_bias' expected true or false but got \"yes\"");
  EXPECT_CONTAINS(error_of<FormatError>([&] {
                    load_bytes(make_file(arch(dense_entry(R"({"units":2,"activation":"swich"})")), weights, 3));
                  }),
                  "Dense config: 'activation' expected one of \"linear\", \"relu\"");
  EXPECT_CONTAINS(
      error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(R"({"units":2})", 4)), weights, 3)); }),
      "Dense: in_features expected 3 (the features of its input in the model) but the entry says 4");
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(dense), 5), weights, 3)); }),
                  "Sequential: in_features expected 3");
  // Sizes the file's tensors cannot justify: refused before allocating.
  EXPECT_CONTAINS(
      error_of<MemoryError>([&] { load_bytes(make_file(arch(dense_entry(R"({"units":100000000})")), weights, 3)); }),
      "more than the tensors of the model file justify");
  // Tensors that do not fit the architecture.
  EXPECT_CONTAINS(error_of<MismatchError>(
                      [&] { load_bytes(make_file(arch(dense_entry(R"({"units":2,"use_bias":false})")), weights, 3)); }),
                  "the file has tensor '0.dense.b' (parameter, shape (2,)) that the model does not have");
  EXPECT_CONTAINS(error_of<FormatError>([&] { load_bytes(make_file(arch(dense_entry(dense)), weights, 0)); }),
                  "input feature count expected 1..");
}

TEST(ModelFile, SaveRefusesNonFiniteWeightsAndNonFiniteOptions) {
  Sequential<float> model(3);
  model.add<Dense<float>>(2, DenseOptions().seed(1)).kernel()(1, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CONTAINS(error_of<NonFiniteError>([&] { save_bytes(model); }), "tensor '0.dense.W'");
  Sequential<float> init(3);
  init.add<Dense<float>>(2, DenseOptions().bias_init(Init::constant(std::numeric_limits<double>::infinity())));
  EXPECT_CONTAINS(error_of<ConfigError>([&] { save_bytes(init); }), "a model file stores finite numbers only");
}

}  // namespace
