// Models trained in PyTorch (tests/reference/gen_safetensors.py) load from safetensors with the default name
// mapping and predict what PyTorch predicts within 1e-5, in float and double; exporting the loaded model
// writes back the same tensors (names, shapes, values) PyTorch wrote.
#include <gtest/gtest.h>

#include <sstream>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

namespace {

// nn.Sequential(Linear(6, 8), Tanh, Linear(8, 3))
template <class S>
Sequential<S> dense_model() {
  Sequential<S> model(6);
  model.template add<Dense<S>>(8);
  model.template add<ActivationLayer<S>>(Activation::Tanh);
  model.template add<Dense<S>>(3);
  return model;
}

// The nn.Sequential of gen_safetensors.py, index for index.
template <class S>
Sequential<S> full_model() {
  Sequential<S> model(1);
  model.template add<Embedding<S>>(11, 8);                     // 0 Embedding(11, 8)
  model.template add<SinusoidalPositionalEncoding<S>>();       // 1 sinusoidal, add
  model.template add<Dense<S>>(8);                             // 2 Linear(8, 8)
  model.template add<ActivationLayer<S>>(Activation::Tanh);   // 3 Tanh
  model.template add<MultiHeadAttention<S>>(2);                // 4 MultiheadAttention(8, 2)
  model.template add<LayerNorm<S>>();                          // 5 LayerNorm(8)
  model.template add<Conv1D<S>>(5, 3);                         // 6 Conv1d(8, 5, 3), valid
  model.template add<BatchNorm<S>>();                          // 7 BatchNorm1d(5)
  model.template add<Dense<S>>(3);                             // 8 Linear(5, 3)
  return model;
}

// nn.Sequential(Linear(4, 8), TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, batch_first), Linear(8, 2))
template <class S>
Sequential<S> transformer_model() {
  Sequential<S> model(4);
  model.template add<Dense<S>>(8);
  model.template add<TransformerEncoderBlock<S>>(2, 16, TransformerEncoderOptions().activation(Activation::GELU));
  model.template add<Dense<S>>(2);
  return model;
}

template <class S>
double max_abs_diff(const Tensor3<S>& y, const Tensor3<double>& expected) {
  EXPECT_EQ(y.dimensions(), expected.dimensions());
  double worst = 0;
  for (Index i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(y.data()[i]) - expected.data()[i]));
  return worst;
}

template <class S, class Model>
void expect_matches_torch(Model model, const std::string& name) {
  const ReferenceData ref(data_path(name + ".txt"));
  load_safetensors(model, data_path(name + ".safetensors"));
  const Tensor3<double> expected = ref.tensor<double>("y");
  const double diff = max_abs_diff(model.predict(ref.tensor<S>("x")), expected);
  EXPECT_LT(diff, 1e-5) << name;
  double scale = 0;
  for (Index i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(expected.data()[i]));
  EXPECT_GT(scale, 0.1) << "outputs should not be trivially small";
}

}  // namespace

template <class S>
class TorchImport : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(TorchImport, Scalars);

TYPED_TEST(TorchImport, DenseModelPredictsLikePyTorch) {
  expect_matches_torch<TypeParam>(dense_model<TypeParam>(), "io_torch_dense");
}

TYPED_TEST(TorchImport, ModelWithEveryMappedLayerPredictsLikePyTorch) {
  expect_matches_torch<TypeParam>(full_model<TypeParam>(), "io_torch_full");
}

TYPED_TEST(TorchImport, TransformerEncoderLayerPredictsLikePyTorch) {
  expect_matches_torch<TypeParam>(transformer_model<TypeParam>(), "io_torch_transformer");
}

TYPED_TEST(TorchImport, ImportedWeightsDifferFromFreshOnes) {
  // The comparison above is meaningful only if loading changed the model.
  auto fresh = full_model<TypeParam>();
  auto loaded = full_model<TypeParam>();
  load_safetensors(loaded, data_path("io_torch_full.safetensors"));
  const ReferenceData ref(data_path("io_torch_full.txt"));
  const auto x = ref.tensor<TypeParam>("x");
  EXPECT_GT(max_abs_diff(fresh.predict(x), ref.tensor<double>("y")), 1e-2);
  EXPECT_NE(loaded.template layer_as<BatchNorm<TypeParam>>(7).running_var(),
            fresh.template layer_as<BatchNorm<TypeParam>>(7).running_var());
}

TEST(TorchExport, WritesBackTheTensorsPyTorchWrote) {
  for (const std::string name : {"io_torch_dense", "io_torch_full", "io_torch_transformer"}) {
    const std::string path = data_path(name + ".safetensors");
    std::stringstream out;
    auto round_trip = [&](auto model) {
      load_safetensors(model, path);
      save_safetensors(model, out);
    };
    if (name == "io_torch_dense") round_trip(dense_model<float>());
    if (name == "io_torch_full") round_trip(full_model<float>());
    if (name == "io_torch_transformer") round_trip(transformer_model<float>());
    const SafetensorsContents torch = read_safetensors(path), ours = read_safetensors(out);
    EXPECT_EQ(ours.metadata, torch.metadata);
    std::size_t compared = 0;
    for (const auto& [tensor, t] : torch.tensors) {
      if (default_torch_ignore(tensor)) {
        EXPECT_EQ(ours.tensors.count(tensor), 0u) << tensor;
        continue;
      }
      ASSERT_EQ(ours.tensors.count(tensor), 1u) << name << ": " << tensor;
      const SafetensorsTensor& o = ours.tensors.at(tensor);
      EXPECT_EQ(o.dtype, "F32") << tensor;
      EXPECT_EQ(o.shape, t.shape) << tensor;
      EXPECT_EQ(o.values, t.values) << tensor;  // bit-exact: float32 in, float32 out
      ++compared;
    }
    EXPECT_EQ(compared, ours.tensors.size()) << name << ": no extra tensor";
    EXPECT_EQ(compared, name == "io_torch_dense" ? 4u : name == "io_torch_full" ? 17u : 16u) << name;
  }
}
