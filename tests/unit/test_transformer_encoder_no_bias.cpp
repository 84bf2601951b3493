// TransformerEncoderBlock with use_bias(false) (torch's TransformerEncoderLayer(bias=False)): no bias tensor in
// params() (attention, feed-forward, LayerNorm beta); gradients match finite differences in double for the input
// and every parameter (post- and pre-norm, GELU and ReLU, causal, window, padded batches and step masks); outputs
// and gradients equal torch's with the same weights (tests/reference/gen_transformer_encoder.py writes
// tests/data/transformer_encoder_no_bias.txt); the option survives a model-file entry and shows in describe();
// the torch (safetensors) mapping exports and imports a state_dict without biases and refuses one with them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::data_path;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {

struct NoBiasCase {
  const char* name;
  bool norm_first;
  Activation activation;
  bool causal;
  std::optional<Index> window;
};

TransformerEncoderBlock<double> no_bias_block(const NoBiasCase& c, std::uint64_t seed) {
  TransformerEncoderBlock<double> block(4, 2, 6,
                                        TransformerEncoderOptions()
                                            .norm_first(c.norm_first)
                                            .activation(c.activation)
                                            .causal(c.causal)
                                            .attention_window(c.window)
                                            .use_bias(false)
                                            .seed(seed));
  seqattn::Rng rng(seed + 100);  // gammas away from 1
  for (auto& p : block.params())
    for (Index i = 0; i < p.size(); ++i) p.value[i] += rng.uniform(-0.2, 0.2);
  return block;
}

class TransformerEncoderNoBiasGradient : public ::testing::TestWithParam<NoBiasCase> {};

TEST_P(TransformerEncoderNoBiasGradient, MatchesFiniteDifferencesWithLengths) {
  auto block = no_bias_block(GetParam(), 5);
  // Padded steps hold random values (not zeros): without biases a zero step sits on ReLU's kink.
  const auto result = check_layer_gradients(block, random_tensor(3, 4, 4, 17), Mask::from_lengths({4, 2, 0}));
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST_P(TransformerEncoderNoBiasGradient, MatchesFiniteDifferencesWithStepMasks) {
  auto block = no_bias_block(GetParam(), 6);
  ASSERT_TRUE(block.supports_step_masks());
  const Mask mask = random_step_mask(4, 6, 9);
  ASSERT_TRUE(mask.has_holes());
  const auto result = check_layer_gradients(block, random_tensor(4, 6, 4, 3), mask);
  EXPECT_TRUE(result.passed()) << result.report();
}

INSTANTIATE_TEST_SUITE_P(Modes, TransformerEncoderNoBiasGradient,
                         ::testing::Values(NoBiasCase{"post_relu", false, Activation::ReLU, false, std::nullopt},
                                           NoBiasCase{"pre_gelu", true, Activation::GELU, false, std::nullopt},
                                           NoBiasCase{"post_gelu_causal", false, Activation::GELU, true, std::nullopt},
                                           NoBiasCase{"pre_relu_window", true, Activation::ReLU, true, Index{2}}),
                         [](const ::testing::TestParamInfo<NoBiasCase>& info) { return std::string(info.param.name); });

TEST(TransformerEncoderNoBias, ListsNoBiasTensors) {
  TransformerEncoderBlock<float> block(8, 2, 16, TransformerEncoderOptions().use_bias(false).seed(1));
  std::set<std::string> names;
  for (const auto& p : block.params()) names.insert(p.name);
  const std::set<std::string> expected = {"mha.Wq",    "mha.Wk", "mha.Wv", "mha.Wo",
                                          "ln1.gamma", "ffn1.W", "ffn2.W", "ln2.gamma"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(block.param_count(), 4 * 8 * 8 + 2 * 8 * 16 + 2 * 8);
  TransformerEncoderBlock<float> with_bias(8, 2, 16, TransformerEncoderOptions().seed(1));
  EXPECT_EQ(with_bias.params().size(), 16u);
}

TEST(TransformerEncoderNoBias, ConfigRoundTripAndDescription) {
  const TransformerEncoderBlock<float> block(4, 2, 8, TransformerEncoderOptions().use_bias(false).causal(true).seed(3));
  EXPECT_NE(block.describe().find(", use_bias=false"), std::string::npos) << block.describe();
  const Config config = block.config();
  ASSERT_NE(config.find("use_bias"), nullptr);
  EXPECT_EQ(*config.find("use_bias"), Config(false));
  const Config entry = layer_entry(block);
  const auto rebuilt = build_layer<float>(entry, 4);
  EXPECT_EQ(rebuilt->describe(), block.describe());
  EXPECT_EQ(layer_entry(*rebuilt), entry);
  EXPECT_EQ(rebuilt->params().size(), 8u);
  // The default says nothing in describe(); a config without the key (older model files) means true.
  const TransformerEncoderBlock<float> biased(4, 2, 8, TransformerEncoderOptions().seed(3));
  EXPECT_EQ(biased.describe().find("use_bias"), std::string::npos) << biased.describe();
  const Config old = biased.config();
  Config without = Config::object();
  for (std::size_t i = 0; i < old.keys().size(); ++i)
    if (old.keys()[i] != "use_bias") without.set(old.keys()[i], old.elements()[i]);
  ASSERT_EQ(without.size() + 1, old.size());
  EXPECT_EQ(TransformerEncoderBlock<float>::from_config(4, without)->params().size(), 16u);
}

// A state_dict of nn.Sequential(TransformerEncoderLayer(8, 2, 16, bias=False)) has exactly these tensors.
TEST(TransformerEncoderNoBias, TorchMappingWithoutBiases) {
  Sequential<float> model(8);
  model.add<TransformerEncoderBlock<float>>(2, 16, TransformerEncoderOptions().use_bias(false).seed(4));
  std::stringstream file;
  save_safetensors(model, file);
  std::set<std::string> names;
  for (const auto& [name, tensor] : read_safetensors(file).tensors) names.insert(name);
  const std::set<std::string> torch_names = {"0.self_attn.in_proj_weight", "0.self_attn.out_proj.weight",
                                             "0.linear1.weight",           "0.linear2.weight",
                                             "0.norm1.weight",             "0.norm2.weight"};
  EXPECT_EQ(names, torch_names);
  // Import into another block: the same predictions.
  Sequential<float> other(8);
  other.add<TransformerEncoderBlock<float>>(2, 16, TransformerEncoderOptions().use_bias(false).seed(5));
  const Tensor3<float> x = random_tensor(2, 5, 8, 1).cast<float>();
  const Tensor3<float> before = other.predict(x);
  file.clear();
  file.seekg(0);
  load_safetensors(other, file);
  const Tensor3<float> y = model.predict(x), y_other = other.predict(x);
  double moved = 0;
  for (Index i = 0; i < y.size(); ++i) {
    EXPECT_EQ(y.data()[i], y_other.data()[i]);
    moved = std::max(moved, static_cast<double>(std::abs(before.data()[i] - y.data()[i])));
  }
  EXPECT_GT(moved, 1e-3);
  // A state_dict with biases does not fit a block without them (and the reverse), with the tensor named.
  Sequential<float> biased(8);
  biased.add<TransformerEncoderBlock<float>>(2, 16, TransformerEncoderOptions().seed(4));
  std::stringstream biased_file;
  save_safetensors(biased, biased_file);
  try {
    load_safetensors(other, biased_file);
    FAIL() << "biases were accepted";
  } catch (const std::exception& e) {
    // the first unmapped bias tensor in the file's order (in_proj_bias, out_proj.bias, linear1/2.bias, ...)
    const std::string what = e.what();
    EXPECT_NE(what.find("that no model tensor maps to"), std::string::npos) << what;
    EXPECT_TRUE(what.find("0.self_attn.in_proj_bias") != std::string::npos ||
                what.find("0.self_attn.out_proj.bias") != std::string::npos ||
                what.find("0.linear1.bias") != std::string::npos || what.find("0.linear2.bias") != std::string::npos ||
                what.find("0.norm1.bias") != std::string::npos || what.find("0.norm2.bias") != std::string::npos)
        << what;
  }
  file.clear();
  file.seekg(0);
  try {
    load_safetensors(biased, file);
    FAIL() << "missing biases were accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

const NoBiasCase kTorchCases[] = {{"post_relu", false, Activation::ReLU, false, std::nullopt},
                                  {"pre_gelu", true, Activation::GELU, false, std::nullopt},
                                  {"pre_relu_causal", true, Activation::ReLU, true, std::nullopt}};

// The worst |ours - torch| over y (valid rows), dx and the parameter gradients.
template <class S>
double torch_error(const ReferenceData& ref, const NoBiasCase& c) {
  SCOPED_TRACE(c.name);
  const std::string p = c.name;
  TransformerEncoderBlock<S> block(
      8, 2, 16,
      TransformerEncoderOptions().norm_first(c.norm_first).activation(c.activation).causal(c.causal).use_bias(false));
  EXPECT_EQ(block.params().size(), 8u);
  for (auto& param : block.params()) {
    const auto& v = ref.values(p + ".param." + param.name);
    EXPECT_EQ(static_cast<Index>(v.size()), param.size()) << param.name;
    for (Index i = 0; i < param.size(); ++i) param.value[i] = static_cast<S>(v[static_cast<size_t>(i)]);
  }
  const Mask mask = Mask::from_lengths({5, 3});
  const Tensor3<S> x = ref.tensor<S>(p + ".x");
  double worst = 0;
  auto track = [&worst](double ours, double theirs) { worst = std::max(worst, std::abs(ours - theirs)); };
  const Tensor3<S>& y = block.forward(x, mask, Mode::Train);
  const auto& y_ref = ref.values(p + ".y");
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < mask.length(b, 5); ++t)
      for (Index f = 0; f < 8; ++f) track(y(b, t, f), y_ref[static_cast<size_t>((b * 5 + t) * 8 + f)]);
  block.zero_grad();
  const Tensor3<S>& dx = block.backward(x, mask, ref.tensor<S>(p + ".R"));
  const auto& dx_ref = ref.values(p + ".dx");
  for (Index i = 0; i < dx.size(); ++i) track(dx.data()[i], dx_ref[static_cast<size_t>(i)]);
  for (auto& param : block.params()) {
    const auto& g = ref.values(p + ".grad." + param.name);
    for (Index i = 0; i < param.size(); ++i) track(param.grad[i], g[static_cast<size_t>(i)]);
  }
  return worst;
}

TEST(TransformerEncoderNoBias, MatchesTorchInDouble) {
  const ReferenceData ref(data_path("transformer_encoder_no_bias.txt"));
  for (const auto& c : kTorchCases) EXPECT_LT(torch_error<double>(ref, c), 1e-10) << c.name;
}

TEST(TransformerEncoderNoBias, MatchesTorchInFloat) {
  const ReferenceData ref(data_path("transformer_encoder_no_bias.txt"));
  for (const auto& c : kTorchCases) EXPECT_LT(torch_error<float>(ref, c), 2e-4) << c.name;
}

}  // namespace
