// safetensors export and import: round trips are exact, the file layout follows the format (8-byte length,
// JSON header padded to 8, tiled buffer), and the default name mapping puts every tensor where PyTorch keeps
// it (Dense and MultiHeadAttention transposed and packed, Conv1D (filters, in, k), norms, nested models,
// single layers); custom mappings; dtype conversion; inconsistent mappings throw ConfigError.
#include <gtest/gtest.h>

#include <sstream>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"
#include "support/io_model.hpp"

using namespace seqattn;
using seqattn::testing::make_dense_model;
using seqattn::testing::make_io_model;
using seqattn::testing::snapshot;

namespace {

template <class S>
Param<S> param(Layer<S>& model, const std::string& name) {
  for (auto& list : {model.params(), model.buffers()})
    for (const auto& p : list)
      if (p.name == name) return p;
  throw std::runtime_error("no parameter " + name);
}

template <class S>
SafetensorsContents exported(Layer<S>& model, const SafetensorsOptions& options = SafetensorsOptions()) {
  std::stringstream s;
  save_safetensors(model, s, options);
  return read_safetensors(s);
}

template <class S>
std::string config_error(Layer<S>& model, const SafetensorsOptions& options) {
  try {
    std::stringstream s;
    save_safetensors(model, s, options);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

}  // namespace

template <class S>
class SafetensorsRoundTrip : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SafetensorsRoundTrip, Scalars);

TYPED_TEST(SafetensorsRoundTrip, ExportThenImportIsBitExact) {
  using S = TypeParam;
  seqattn::testing::ScratchDir dir;
  auto model = make_io_model<S>(1);
  save_safetensors(model, dir.file("m.safetensors"));
  EXPECT_EQ(dir.files(), std::vector<std::string>{"m.safetensors"});
  auto other = make_io_model<S>(2);
  ASSERT_NE(snapshot(model), snapshot(other));
  load_safetensors(other, dir.file("m.safetensors"));
  EXPECT_EQ(snapshot(model), snapshot(other));
  const auto contents = read_safetensors(dir.file("m.safetensors"));
  for (const auto& [name, t] : contents.tensors) EXPECT_EQ(t.dtype, sizeof(S) == 4 ? "F32" : "F64") << name;
}

TYPED_TEST(SafetensorsRoundTrip, StreamHoldsSeveralFilesBackToBack) {
  using S = TypeParam;
  auto a = make_io_model<S>(1), b = make_io_model<S>(2);
  std::stringstream s;
  save_safetensors(a, s);
  save_safetensors(b, s);
  auto a2 = make_io_model<S>(3), b2 = make_io_model<S>(4);
  load_safetensors(a2, s);
  load_safetensors(b2, s);
  EXPECT_EQ(snapshot(a), snapshot(a2));
  EXPECT_EQ(snapshot(b), snapshot(b2));
}

TEST(SafetensorsFormat, HeaderIsPaddedJsonAndOffsetsTileTheBuffer) {
  auto model = make_dense_model<float>(1);
  std::stringstream s;
  save_safetensors(model, s);
  const auto bytes = seqattn::testing::to_bytes(s.str());
  const std::uint64_t n = seqattn::testing::get_u64(bytes, 0);
  EXPECT_EQ(n % 8, 0u);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"0.weight\":{\"dtype\":\"F32\",\"shape\":[8,6],"
                         "\"data_offsets\":[0,192]}",
                         0),
            0u)
      << header;
  EXPECT_EQ(bytes.size(), 8 + n + 4 * static_cast<std::size_t>(model.param_count()));
}

TEST(SafetensorsMapping, DenseWeightIsTransposedAndIndexedLikeNnSequential) {
  auto model = make_dense_model<float>(1);  // 0 dense(tanh), 1 dropout, 2 dense(no bias), 3 dense
  const auto c = exported(model);
  std::vector<std::string> names;
  for (const auto& [name, t] : c.tensors) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.bias", "0.weight", "2.weight", "3.bias", "3.weight"}));
  const auto W = param(model, "2.dense.W");  // (8, 5)
  const auto& t = c.tensors.at("2.weight");
  EXPECT_EQ(t.shape, (std::vector<Index>{5, 8}));
  for (Index i = 0; i < 8; ++i)
    for (Index j = 0; j < 5; ++j) EXPECT_EQ(t.values[static_cast<std::size_t>(j * 8 + i)], W.value[i * 5 + j]);
  EXPECT_EQ(c.metadata, (SafetensorsMetadata{{"format", "pt"}}));
}

TEST(SafetensorsMapping, MultiHeadAttentionPacksInProjection) {
  Sequential<double> model(4);
  model.add<Dense<double>>(4, DenseOptions().seed(1));
  model.add<MultiHeadAttention<double>>(2, MultiHeadAttentionOptions().seed(2).bias_init(Init::uniform(-1, 1)));
  const auto c = exported(model);
  const auto& w = c.tensors.at("1.in_proj_weight");
  const auto& b = c.tensors.at("1.in_proj_bias");
  EXPECT_EQ(w.shape, (std::vector<Index>{12, 4}));
  EXPECT_EQ(b.shape, (std::vector<Index>{12}));
  const char* names[3] = {"Wq", "Wk", "Wv"};
  for (int part = 0; part < 3; ++part) {
    const auto W = param<double>(model, std::string("1.multi_head_attention.") + names[part]);
    const auto B = param<double>(model, std::string("1.multi_head_attention.b") + char(names[part][1]));
    for (Index r = 0; r < 4; ++r) {
      EXPECT_EQ(b.values[static_cast<std::size_t>(part * 4 + r)], B.value[r]);
      for (Index col = 0; col < 4; ++col)  // in_proj_weight[part*d + r, col] = W[col, r]
        EXPECT_EQ(w.values[static_cast<std::size_t>((part * 4 + r) * 4 + col)], W.value[col * 4 + r]);
    }
  }
  const auto Wo = param<double>(model, "1.multi_head_attention.Wo");
  EXPECT_EQ(c.tensors.at("1.out_proj.weight").values[1], Wo.value[4]);  // [0, 1] = Wo[1, 0]
  EXPECT_EQ(c.tensors.at("1.out_proj.bias").values, std::vector<double>(
                                                         param<double>(model, "1.multi_head_attention.bo").values().data(),
                                                         param<double>(model, "1.multi_head_attention.bo").values().data() + 4));
}

TEST(SafetensorsMapping, Conv1DWeightIsFiltersInputKernel) {
  Sequential<double> model(3);
  model.add<Conv1D<double>>(4, 2, Conv1DOptions().seed(3));  // W (2*3, 4): row j*in + c
  const auto c = exported(model);
  const auto& t = c.tensors.at("0.weight");
  ASSERT_EQ(t.shape, (std::vector<Index>{4, 3, 2}));
  const auto W = param<double>(model, "0.conv1d.W");
  for (Index f = 0; f < 4; ++f)
    for (Index ch = 0; ch < 3; ++ch)
      for (Index j = 0; j < 2; ++j)
        EXPECT_EQ(t.values[static_cast<std::size_t>((f * 3 + ch) * 2 + j)], W.value[(j * 3 + ch) * 4 + f]);
  EXPECT_EQ(c.tensors.at("0.bias").shape, (std::vector<Index>{4}));
}

TEST(SafetensorsMapping, NormsNestedModelsAndSingleLayers) {
  Sequential<float> inner(5);
  inner.add<LayerNorm<float>>();
  inner.add<BatchNorm<float>>();
  Sequential<float> model(5);
  model.add<Dense<float>>(5, DenseOptions().seed(1));
  model.add(std::make_unique<Sequential<float>>(inner));
  const auto c = exported(model);
  for (const char* name : {"0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.1.weight", "1.1.bias", "1.1.running_mean",
                           "1.1.running_var"})
    EXPECT_EQ(c.tensors.count(name), 1u) << name;
  EXPECT_EQ(c.tensors.size(), 8u);

  Dense<float> alone(3, 2, DenseOptions().seed(1));
  const auto single = exported(alone);
  EXPECT_EQ(single.tensors.at("weight").shape, (std::vector<Index>{2, 3}));
  EXPECT_EQ(single.tensors.count("bias"), 1u);
  Dense<float> other(3, 2, DenseOptions().seed(2));
  std::stringstream s;
  save_safetensors(alone, s);
  load_safetensors(other, s);
  EXPECT_EQ(snapshot(alone), snapshot(other));
}

TEST(SafetensorsMapping, CustomMappingRenamesAndFallsBack) {
  auto model = make_dense_model<float>(1);
  const auto options = SafetensorsOptions().name_map([](const TensorRef& t) {
    if (t.path == "3") return TorchName{"head." + t.param, {}, false, 0, 1};
    return default_torch_name(t);
  });
  const auto c = exported(model, options);
  EXPECT_EQ(c.tensors.count("head.W"), 1u);
  EXPECT_EQ(c.tensors.at("head.W").shape, (std::vector<Index>{5, 3}));  // not transposed
  EXPECT_EQ(c.tensors.count("0.weight"), 1u);
  auto other = make_dense_model<float>(2);
  std::stringstream s;
  save_safetensors(model, s, options);
  load_safetensors(other, s, options);
  EXPECT_EQ(snapshot(model), snapshot(other));
}

TEST(SafetensorsMapping, FloatFileLoadsIntoDoubleModelAndBack) {
  auto f = make_io_model<float>(1);
  auto d = make_io_model<double>(2);
  std::stringstream s;
  save_safetensors(f, s);
  load_safetensors(d, s);
  const auto pf = f.params();
  const auto pd = d.params();
  for (std::size_t i = 0; i < pf.size(); ++i)
    for (Index k = 0; k < pf[i].size(); ++k) EXPECT_EQ(static_cast<double>(pf[i].value[k]), pd[i].value[k]);
  std::stringstream back;
  save_safetensors(d, back);  // F64, exactly representable in float
  auto f2 = make_io_model<float>(3);
  load_safetensors(f2, back);
  EXPECT_EQ(snapshot(f), snapshot(f2));
}

TEST(SafetensorsMapping, InconsistentMappingsAreConfigErrors) {
  auto model = make_dense_model<float>(1);
  const std::string same = config_error(model, SafetensorsOptions().name_map([](const TensorRef& t) {
    TorchName n = default_torch_name(t);
    if (t.name == "3.dense.W") n.name = "0.weight";
    return n;
  }));
  EXPECT_NE(same.find("mapping of '3.dense.W' to '0.weight': its part shape (3, 5) x 1 differs from that of "
                      "'0.dense.W' transposed: (8, 6) x 1"),
            std::string::npos)
      << same;
  const std::string range = config_error(model, SafetensorsOptions().name_map([](const TensorRef& t) {
    TorchName n = default_torch_name(t);
    n.part = 2;
    return n;
  }));
  EXPECT_NE(range.find("mapping of '0.dense.W' to '0.weight': part 2 of 1 is out of range"), std::string::npos) << range;
  for (const std::vector<Index>& view : {std::vector<Index>{-6, -8}, {48, 0}, {1LL << 40, 1LL << 40, 1LL << 40}}) {
    const std::string bad_view = config_error(model, SafetensorsOptions().name_map([&view](const TensorRef& t) {
      TorchName n = default_torch_name(t);
      n.view = view;
      return n;
    }));
    EXPECT_NE(bad_view.find("mapping of '0.dense.W' to '0.weight': view ("), std::string::npos) << bad_view;
    EXPECT_NE(bad_view.find(") does not have the 48 elements of the tensor (6, 8)"), std::string::npos) << bad_view;
  }

  Sequential<float> cross(4);  // key_features != in_features: torch does not pack in_proj; needs a custom map
  cross.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().key_features(3).seed(1));
  const std::string packed = config_error(cross, SafetensorsOptions());
  EXPECT_NE(packed.find("mapping of '0.multi_head_attention.Wk' to '0.in_proj_weight': its part shape (4, 3) x 3 "
                        "differs from that of '0.multi_head_attention.Wq' transposed: (4, 4) x 3"),
            std::string::npos)
      << packed;
  Sequential<float> missing(4);
  missing.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().seed(1));
  const std::string gap = config_error(missing, SafetensorsOptions().name_map([](const TensorRef& t) {
    TorchName n = default_torch_name(t);
    if (t.param == "Wv") n.name = "0.v_proj_weight", n.part = 0, n.parts = 1;
    return n;
  }));
  EXPECT_NE(gap.find("PyTorch tensor '0.in_proj_weight' has no seqattn tensor for part 2 of 3 (mapped: "
                     "'0.multi_head_attention.Wq' transposed, '0.multi_head_attention.Wk' transposed)"),
            std::string::npos)
      << gap;
  const std::string taken = config_error(missing, SafetensorsOptions().name_map([](const TensorRef& t) {
    TorchName n = default_torch_name(t);
    n.part = 0;
    return n;
  }));
  EXPECT_NE(taken.find("mapping of '0.multi_head_attention.Wk' to '0.in_proj_weight': part 0 is already taken by "
                       "'0.multi_head_attention.Wq'"),
            std::string::npos)
      << taken;
}
