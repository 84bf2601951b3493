// TransformerDecoderBlock: finite-difference gradient checks in double of dx, dmemory and every parameter (post- and
// pre-norm, ReLU and GELU, use_bias, causal or not, padded targets and memories, step masks with holes on both, a
// memory of other width) through testing::check_inputs_gradients on the node call (test_gradient_check shows that
// check fails on wrong gradients), and the node call bitwise the direct call; padding: valid outputs bitwise
// unchanged by the values at padded / masked target and memory steps, dx and dmemory exactly 0 there, masked memory
// steps weight 0 in the cross-attention map; the single-input calls and shape errors name the block; the model-file
// round trip (the registry entry, the weights); clone / assign; dropout only in Train.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/io/model_file.hpp"
#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_inputs_gradients;
using seqattn::testing::masked_nonzero;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

TransformerDecoderOptions options_of(bool norm_first, Activation activation, bool use_bias, bool causal) {
  return TransformerDecoderOptions()
      .norm_first(norm_first)
      .activation(activation)
      .use_bias(use_bias)
      .causal(causal)
      .memory_features(6)
      .seed(5);
}

// d = 4, 2 heads, ff 6, memory of 6 features; parameters moved off their initial values (gammas away from 1,
// biases away from 0: a zero step would sit on ReLU's kink).
TransformerDecoderBlock<double> decoder(const TransformerDecoderOptions& options) {
  TransformerDecoderBlock<double> block(4, 2, 6, options);
  seqattn::Rng rng(9);
  for (auto& p : block.params())
    for (Index i = 0; i < p.size(); ++i) p.value[i] += rng.uniform(-0.2, 0.2);
  return block;
}

struct GradCase {
  const char* name;
  bool norm_first;
  Activation activation;
  bool use_bias;
  bool causal;
};

class TransformerDecoderGradient : public ::testing::TestWithParam<GradCase> {};

// Padded targets (one sequence of one step) and padded memories (one of length 0: its cross-attention outputs 0).
TEST_P(TransformerDecoderGradient, MatchesFiniteDifferencesWithLengths) {
  const GradCase& c = GetParam();
  auto block = decoder(options_of(c.norm_first, c.activation, c.use_bias, c.causal));
  const auto result = check_inputs_gradients(block, {random_tensor(3, 4, 4, 17), random_tensor(3, 5, 6, 18)},
                                             {Mask::from_lengths({4, 1, 3}), Mask::from_lengths({5, 2, 0})});
  // bk shifts every score of a query row equally: its gradient is 0 up to rounding
  EXPECT_TRUE(result.passed({"self_mha.bk", "cross_mha.bk"})) << result.report();
  std::printf("[ decoder lengths %s ] %s\n", c.name, result.report().c_str());
}

// Step masks with holes and left padding on both the targets and the memory.
TEST_P(TransformerDecoderGradient, MatchesFiniteDifferencesWithStepMasks) {
  const GradCase& c = GetParam();
  auto block = decoder(options_of(c.norm_first, c.activation, c.use_bias, c.causal));
  ASSERT_TRUE(block.supports_step_masks());
  const Mask mx = random_step_mask(4, 6, 9), mm = random_step_mask(4, 5, 11);
  ASSERT_TRUE(mx.has_holes() && mm.has_holes());
  const auto result = check_inputs_gradients(block, {random_tensor(4, 6, 4, 3), random_tensor(4, 5, 6, 4)}, {mx, mm});
  EXPECT_TRUE(result.passed({"self_mha.bk", "cross_mha.bk"})) << result.report();
  std::printf("[ decoder step masks %s ] %s\n", c.name, result.report().c_str());
}

INSTANTIATE_TEST_SUITE_P(Modes, TransformerDecoderGradient,
                         ::testing::Values(GradCase{"post_relu_causal", false, Activation::ReLU, true, true},
                                           GradCase{"pre_gelu_causal", true, Activation::GELU, true, true},
                                           GradCase{"post_gelu", false, Activation::GELU, true, false},
                                           GradCase{"pre_relu", true, Activation::ReLU, true, false},
                                           GradCase{"post_relu_causal_no_bias", false, Activation::ReLU, false, true},
                                           GradCase{"pre_gelu_causal_no_bias", true, Activation::GELU, false, true}),
                         [](const ::testing::TestParamInfo<GradCase>& info) { return std::string(info.param.name); });

// The gradient checks above run the node call: it is bitwise the direct call (y, dx, dmemory, parameter gradients).
TEST(TransformerDecoder, NodeCallIsTheDirectCall) {
  auto direct = decoder(options_of(false, Activation::GELU, true, true));
  auto node = decoder(options_of(false, Activation::GELU, true, true));
  const Tensor3<double> x = random_tensor(2, 4, 4, 17), memory = random_tensor(2, 5, 6, 18);
  const Tensor3<double> dy = random_tensor(2, 4, 4, 19);
  const Mask mx = random_step_mask(2, 4, 23), mm = Mask::from_lengths({5, 3});
  const Tensor3<double> y = direct.forward(x, mx, memory, mm, Mode::Train);
  const Tensor3<double> dx = direct.backward(x, mx, memory, mm, dy);
  const LayerInputs<double> inputs{{&x, &mx}, {&memory, &mm}};
  const Tensor3<double>& y_node = node.forward(inputs, Mode::Train);
  node.backward(inputs, dy);
  ASSERT_EQ(y_node.dimensions(), y.dimensions());
  for (Index i = 0; i < y.size(); ++i) ASSERT_EQ(y_node.data()[i], y.data()[i]) << i;
  for (Index i = 0; i < dx.size(); ++i) ASSERT_EQ(node.input_grad(0).data()[i], dx.data()[i]) << i;
  for (Index i = 0; i < memory.size(); ++i) ASSERT_EQ(node.input_grad(1).data()[i], direct.memory_grad().data()[i]) << i;
  const ParamList<double> pd = direct.params(), pn = node.params();
  ASSERT_EQ(pd.size(), pn.size());
  for (std::size_t k = 0; k < pd.size(); ++k)
    for (Index i = 0; i < pd[k].size(); ++i) ASSERT_EQ(pn[k].grad[i], pd[k].grad[i]) << pd[k].name << "[" << i << "]";
}

// With attention_window, and with L2 penalties on sub-layers' weights (the cross-attention, ffn1): their gradient
// joins the backward and their value regularization_loss().
TEST(TransformerDecoder, AttentionWindowAndRegularizerGradients) {
  auto block = decoder(TransformerDecoderOptions().attention_window(2).memory_features(6).seed(7));
  block.cross_attention_layer().set_regularizer(ParamRole::Kernel, L1L2{0.0, 0.3});
  block.ffn1().set_regularizer(ParamRole::Kernel, L1L2{0.0, 0.2});
  EXPECT_GT(block.regularization_loss(), 0.0);
  const auto result = check_inputs_gradients(block, {random_tensor(3, 5, 4, 21), random_tensor(3, 4, 6, 22)},
                                             {Mask::from_lengths({5, 4, 2}), Mask::from_lengths({4, 1, 3})});
  EXPECT_TRUE(result.passed({"self_mha.bk", "cross_mha.bk"})) << result.report();
}

// Valid outputs are bitwise those of the sequences alone, whatever the padded / masked target and memory steps hold;
// dx and dmemory are exactly 0 there (dy is 0 at padded targets), the cross-attention gives masked memory steps 0.
TEST(TransformerDecoder, PaddingNeverReachesValidOutputs) {
  for (const bool pre : {false, true}) {
    SCOPED_TRACE(pre ? "pre-norm" : "post-norm");
    TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().norm_first(pre).seed(3));
    const Mask mx = Mask::from_lengths({3, 2}), mm = Mask::from_lengths({4, 2});
    const auto x = random_tensor(2, 3, 4, 1), memory = random_tensor(2, 4, 4, 2);
    const Tensor3<double> y = block.forward(x, mx, memory, mm);
    auto longer_x = random_tensor(2, 6, 4, 5), longer_memory = random_tensor(2, 7, 4, 6);  // other padded values
    for (Index b = 0; b < 2; ++b) {
      for (Index t = 0; t < 3; ++t)
        for (Index f = 0; f < 4; ++f) longer_x(b, t, f) = x(b, t, f);
      for (Index t = 0; t < 4; ++t)
        for (Index f = 0; f < 4; ++f) longer_memory(b, t, f) = memory(b, t, f);
    }
    const Tensor3<double> y2 = block.forward(longer_x, mx, longer_memory, mm);
    for (Index b = 0; b < 2; ++b)
      for (Index t = 0; t < mx.length(b, 3); ++t)
        for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(b, t, f), y2(b, t, f)) << "b=" << b << " t=" << t;
    for (Index b = 0; b < 2; ++b)
      for (Index h = 0; h < 2; ++h) {
        const Matrix<double> map = block.cross_attention_map(b, h);
        ASSERT_EQ(map.cols(), 7);
        for (Index t = 0; t < mx.length(b, 6); ++t) {
          EXPECT_NEAR(map.row(t).sum(), 1.0, 1e-12);
          for (Index s = mm.length(b, 7); s < 7; ++s) EXPECT_EQ(map(t, s), 0.0);
        }
      }
    // dy 0 at the padded targets: dx 0 there; dmemory 0 at the padded memory steps
    Tensor3<double> dy = random_tensor(2, 6, 4, 7);
    dy = with_masked_values(dy, mx, [](Index) { return 0.0; });
    const Tensor3<double>& dx = block.backward(longer_x, mx, longer_memory, mm, dy);
    EXPECT_EQ(masked_nonzero(dx, mx), "");
    EXPECT_EQ(masked_nonzero(block.memory_grad(), mm), "");
    ASSERT_EQ(block.memory_grad().dimension(1), 7);
  }
}

TEST(TransformerDecoder, StepMasksOnBothInputsIgnoreMaskedValues) {
  for (const bool pre : {false, true}) {
    SCOPED_TRACE(pre ? "pre-norm" : "post-norm");
    TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().norm_first(pre).seed(4));
    const Mask mx = random_step_mask(4, 6, 9), mm = random_step_mask(4, 5, 12);
    const auto x = random_tensor(4, 6, 4, 3), memory = random_tensor(4, 5, 4, 8);
    const Tensor3<double> y0 = block.forward(x, mx, memory, mm);
    for (const double g : {1e3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      const auto gx = with_masked_values(x, mx, [g](Index) { return g; });
      const auto gm = with_masked_values(memory, mm, [g](Index) { return -g; });
      const Tensor3<double> y = block.forward(gx, mx, gm, mm);
      EXPECT_TRUE(same_kept_steps(y0, mx, y, mx)) << g;
    }
    for (Index b = 0; b < 4; ++b)
      for (Index h = 0; h < 2; ++h) {
        const Matrix<double> map = block.cross_attention_map(b, h);
        for (Index t = 0; t < 6; ++t)
          for (Index s = 0; s < 5; ++s)
            if (!mm.valid(b, s, 5)) {
              EXPECT_EQ(map(t, s), 0.0) << b << " " << h << " " << t << " " << s;
            }
      }
    // finite garbage: the gradients stay finite; dx 0 at masked targets (dy 0 there), dmemory 0 at masked memory
    const auto gx = with_masked_values(x, mx, [](Index i) { return 5.0 + i; });
    const auto gm = with_masked_values(memory, mm, [](Index i) { return -3.0 - i; });
    block.forward(gx, mx, gm, mm);
    const Tensor3<double> dy = with_masked_values(random_tensor(4, 6, 4, 9), mx, [](Index) { return 0.0; });
    const Tensor3<double>& dx = block.backward(gx, mx, gm, mm, dy);
    EXPECT_EQ(masked_nonzero(dx, mx), "");
    EXPECT_EQ(masked_nonzero(block.memory_grad(), mm), "");
  }
}

TEST(TransformerDecoder, CausalOutputsIgnoreLaterTargets) {
  TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().seed(3));
  EXPECT_TRUE(block.options().causal());  // the default of a decoder
  auto x = random_tensor(1, 5, 4, 1);
  const auto memory = random_tensor(1, 3, 4, 2);
  const Tensor3<double> y = block.forward(x, Mask(), memory, Mask());
  const Matrix<double> self_map = block.attention_map(0, 1);
  for (Index t = 0; t < 5; ++t)
    for (Index s = t + 1; s < 5; ++s) EXPECT_EQ(self_map(t, s), 0.0);
  for (Index f = 0; f < 4; ++f) x(0, 4, f) += 1.0;
  const Tensor3<double>& y2 = block.forward(x, Mask(), memory, Mask());
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 4; ++f) EXPECT_EQ(y(0, t, f), y2(0, t, f));
  EXPECT_NE(y(0, 4, 0), y2(0, 4, 0));
  EXPECT_EQ(block.attention_heads(), 2);
}

TEST(TransformerDecoder, SingleInputCallsAndShapeErrorsNameTheBlock) {
  TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().memory_features(3).seed(3));
  const std::string name =
      "TransformerDecoderBlock(d_model=4, heads=2, ff_dim=8, post-norm, causal, memory_features=3)";
  EXPECT_EQ(block.describe(), name);
  const auto x = random_tensor(2, 5, 4, 1), memory = random_tensor(2, 6, 3, 2);
  auto expect_error = [&](auto&& call, const std::vector<std::string>& parts, bool config) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_TRUE(config) << e.what();
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    } catch (const ShapeError& e) {
      EXPECT_FALSE(config) << e.what();
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_error([&] { block.forward(x, Mask()); }, {name, "takes 2 or more inputs", "forward(inputs, mode)"}, true);
  block.forward(x, Mask(), memory, Mask());
  expect_error([&] { block.backward(x, Mask(), x); }, {name, "needs a memory input"}, true);
  expect_error([&] { block.forward(x, Mask(), random_tensor(3, 6, 3, 4), Mask()); },
               {name, "memory batch expected 2", "(3, 6, 3)"}, false);
  expect_error([&] { block.forward(x, Mask(), random_tensor(2, 6, 4, 4), Mask()); },
               {name, "memory features expected 3 but got 4", "(2, 6, 4)"}, false);
  expect_error([&] { block.forward(random_tensor(2, 5, 3, 4), Mask(), memory, Mask()); },
               {name, "input features expected 4 but got 3"}, false);
  block.forward(x, Mask(), memory, Mask());
  expect_error([&] { block.backward(x, Mask(), random_tensor(2, 7, 3, 4), Mask(), x); },
               {name, "backward memory expected (2, 6, 3)", "(2, 7, 3)"}, false);
  expect_error([&] { block.forward(x, Mask(), memory, Mask::from_lengths({6, 7})); }, {name, "memory"}, false);
}

TEST(TransformerDecoder, RejectsBadOptions) {
  EXPECT_THROW(TransformerDecoderBlock<double>(6, 4, 8), ConfigError);  // 6 not divisible by 4 heads
  EXPECT_THROW(TransformerDecoderBlock<double>(4, 2, 0), ConfigError);
  auto message = [](auto&& build) -> std::string {
    try {
      build();
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message([] {
              TransformerDecoderBlock<double>(4, 2, 8, TransformerDecoderOptions().activation(Activation::Tanh));
            }).find("TransformerDecoderBlock: activation must be gelu, gelu_tanh or relu but got tanh"),
            std::string::npos);
  EXPECT_NE(message([] {
              TransformerDecoderBlock<double>(4, 2, 8, TransformerDecoderOptions().memory_features(0));
            }).find("TransformerDecoderBlock: memory_features must be positive but got 0"),
            std::string::npos);
  EXPECT_NE(message([] {
              TransformerDecoderBlock<double>(4, 2, 8, TransformerDecoderOptions().causal(false).attention_window(2));
            }).find("TransformerDecoderBlock: attention_window needs causal"),
            std::string::npos);
  EXPECT_NE(message([] {
              TransformerDecoderBlock<double>(4, 2, 8, TransformerDecoderOptions().dropout(1.0));
            }).find("TransformerDecoderBlock: dropout must be in [0, 1) but got 1"),
            std::string::npos);
}

TEST(TransformerDecoder, ParameterNamesAndCounts) {
  TransformerDecoderBlock<float> block(8, 2, 16, TransformerDecoderOptions().memory_features(5).seed(1));
  std::vector<std::string> names;
  for (const auto& p : block.params()) names.push_back(p.name);
  const std::vector<std::string> expected = {
      "self_mha.Wq",  "self_mha.bq",  "self_mha.Wk",  "self_mha.bk",  "self_mha.Wv",  "self_mha.bv",  "self_mha.Wo",
      "self_mha.bo",  "ln1.gamma",    "ln1.beta",     "cross_mha.Wq", "cross_mha.bq", "cross_mha.Wk", "cross_mha.bk",
      "cross_mha.Wv", "cross_mha.bv", "cross_mha.Wo", "cross_mha.bo", "ln2.gamma",    "ln2.beta",     "ffn1.W",
      "ffn1.b",       "ffn2.W",       "ffn2.b",       "ln3.gamma",    "ln3.beta"};
  EXPECT_EQ(std::multiset<std::string>(names.begin(), names.end()),
            std::multiset<std::string>(expected.begin(), expected.end()));
  EXPECT_EQ(names.front(), "self_mha.Wq");
  EXPECT_EQ(names.back(), "ln3.beta");
  EXPECT_EQ(block.param_count(), (4 * 8 * 8 + 4 * 8) + (2 * 8 * 8 + 2 * 5 * 8 + 4 * 8) + (2 * 8 * 16 + 16 + 8) + 6 * 8);
  TransformerDecoderBlock<float> no_bias(8, 2, 16, TransformerDecoderOptions().use_bias(false).seed(1));
  EXPECT_EQ(no_bias.params().size(), 13u);
  EXPECT_EQ(no_bias.param_count(), 8 * 8 * 8 + 2 * 8 * 16 + 3 * 8);
}

TEST(TransformerDecoder, ModelFileRoundTrip) {
  const TransformerDecoderOptions options =
      TransformerDecoderOptions().norm_first(true).activation(Activation::ReLU).memory_features(6).dropout(0.1).seed(3);
  TransformerDecoderBlock<double> block(4, 2, 8, options);
  const Config entry = layer_entry(block);
  const auto rebuilt = build_layer<double>(entry, 4);
  EXPECT_EQ(rebuilt->describe(), block.describe());
  EXPECT_EQ(layer_entry(*rebuilt), entry);
  const Config config = block.config();
  for (const char* key : {"num_heads", "ff_dim", "memory_features", "causal", "norm_first", "use_bias", "dropout"})
    EXPECT_NE(config.find(key), nullptr) << key;
  // a model file (architecture and weights) with the block in a Sequential
  Sequential<double> model(4);
  model.add<TransformerDecoderBlock<double>>(2, 8, options);
  std::stringstream file;
  save_model(model, file);
  Sequential<double> loaded = load_model<double>(file);
  ASSERT_EQ(loaded.size(), 1);
  auto* decoder_loaded = dynamic_cast<TransformerDecoderBlock<double>*>(&loaded.layer(0));
  ASSERT_NE(decoder_loaded, nullptr);
  auto* decoder_saved = dynamic_cast<TransformerDecoderBlock<double>*>(&model.layer(0));
  const auto x = random_tensor(2, 3, 4, 1), memory = random_tensor(2, 5, 6, 2);
  const Tensor3<double> y = decoder_saved->forward(x, Mask::from_lengths({3, 1}), memory, Mask::from_lengths({5, 2}));
  const Tensor3<double>& y2 =
      decoder_loaded->forward(x, Mask::from_lengths({3, 1}), memory, Mask::from_lengths({5, 2}));
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], y2.data()[i]);
  // a bad option in an entry names the block
  Config bad = entry;
  Config bad_config = block.config();
  bad_config.set("memory_features", Index{0});
  bad.set("config", bad_config);
  try {
    build_layer<double>(bad, 4);
    FAIL() << "memory_features 0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TransformerDecoderBlock"), std::string::npos) << e.what();
  }
}

// A state_dict of nn.Sequential(TransformerDecoderLayer(8, 2, 16)) has exactly these tensors; an export imports
// into another block as the same function.
TEST(TransformerDecoder, TorchStateDictNames) {
  Sequential<double> model(8);
  model.add<TransformerDecoderBlock<double>>(2, 16, TransformerDecoderOptions().seed(4));
  std::stringstream file;
  save_safetensors(model, file);
  std::set<std::string> names;
  for (const auto& [name, tensor] : read_safetensors(file).tensors) names.insert(name);
  std::set<std::string> torch_names;
  for (const char* attn : {"0.self_attn.", "0.multihead_attn."})
    for (const char* t : {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"})
      torch_names.insert(std::string(attn) + t);
  for (const char* m : {"0.linear1.", "0.linear2.", "0.norm1.", "0.norm2.", "0.norm3."})
    for (const char* t : {"weight", "bias"}) torch_names.insert(std::string(m) + t);
  EXPECT_EQ(names, torch_names);
  Sequential<double> other(8);
  other.add<TransformerDecoderBlock<double>>(2, 16, TransformerDecoderOptions().seed(5));
  file.clear();
  file.seekg(0);
  load_safetensors(other, file);
  const auto x = random_tensor(2, 3, 8, 1), memory = random_tensor(2, 4, 8, 2);
  auto& a = dynamic_cast<TransformerDecoderBlock<double>&>(model.layer(0));
  auto& b = dynamic_cast<TransformerDecoderBlock<double>&>(other.layer(0));
  const Tensor3<double> ya = a.forward(x, Mask(), memory, Mask());
  const Tensor3<double>& yb = b.forward(x, Mask(), memory, Mask());
  for (Index i = 0; i < ya.size(); ++i) EXPECT_EQ(ya.data()[i], yb.data()[i]);
}

// Frozen (set_trainable(false)): backward still gives dx and dmemory, the parameter gradients stay as they were.
TEST(TransformerDecoder, FrozenKeepsParameterGradients) {
  TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().seed(2));
  const auto x = random_tensor(2, 3, 4, 1), memory = random_tensor(2, 4, 4, 2), dy = random_tensor(2, 3, 4, 3);
  block.forward(x, Mask(), memory, Mask(), Mode::Train);
  const Tensor3<double> dx = block.backward(x, Mask(), memory, Mask(), dy);
  const Tensor3<double> dmemory = block.memory_grad();
  block.zero_grad();
  block.set_trainable(false);
  EXPECT_FALSE(block.cross_attention_layer().trainable());
  block.forward(x, Mask(), memory, Mask(), Mode::Train);
  const Tensor3<double>& dx_frozen = block.backward(x, Mask(), memory, Mask(), dy);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], dx_frozen.data()[i]);
  for (Index i = 0; i < dmemory.size(); ++i) EXPECT_EQ(dmemory.data()[i], block.memory_grad().data()[i]);
  for (const auto& p : block.params())
    for (Index i = 0; i < p.size(); ++i) ASSERT_EQ(p.grad[i], 0.0) << p.name;
}

TEST(TransformerDecoder, CloneAndAssign) {
  TransformerDecoderBlock<double> a(4, 2, 8, TransformerDecoderOptions().seed(1));
  TransformerDecoderBlock<double> b(4, 2, 8, TransformerDecoderOptions().seed(2));
  const auto x = random_tensor(2, 3, 4, 1), memory = random_tensor(2, 4, 4, 2);
  const Tensor3<double> ya = a.forward(x, Mask(), memory, Mask());
  const auto copy = a.clone();
  auto* c = dynamic_cast<TransformerDecoderBlock<double>*>(copy.get());
  ASSERT_NE(c, nullptr);
  const Tensor3<double>& yc = c->forward(x, Mask(), memory, Mask());
  for (Index i = 0; i < ya.size(); ++i) EXPECT_EQ(ya.data()[i], yc.data()[i]);
  const double* storage = b.params()[0].value;
  b.assign(a);
  EXPECT_EQ(b.params()[0].value, storage);
  const Tensor3<double>& yb = b.forward(x, Mask(), memory, Mask());
  for (Index i = 0; i < ya.size(); ++i) EXPECT_EQ(ya.data()[i], yb.data()[i]);
}

TEST(TransformerDecoder, DropoutOnlyInTrain) {
  TransformerDecoderBlock<double> block(4, 2, 8, TransformerDecoderOptions().dropout(0.5).seed(3));
  TransformerDecoderBlock<double> plain(4, 2, 8, TransformerDecoderOptions().seed(3));
  const auto x = random_tensor(2, 3, 4, 1), memory = random_tensor(2, 4, 4, 2);
  const Tensor3<double> infer = block.forward(x, Mask(), memory, Mask(), Mode::Infer);
  const Tensor3<double>& ref = plain.forward(x, Mask(), memory, Mask(), Mode::Infer);
  for (Index i = 0; i < infer.size(); ++i) EXPECT_EQ(infer.data()[i], ref.data()[i]);
  const Tensor3<double>& train = block.forward(x, Mask(), memory, Mask(), Mode::Train);
  double diff = 0;
  for (Index i = 0; i < train.size(); ++i) diff += std::abs(train.data()[i] - ref.data()[i]);
  EXPECT_GT(diff, 1e-3);
}

// The cross-attention's B x heads x T x Tm probabilities count against the memory limit: a long memory is refused
// before any work with a MemoryError naming the block and the shape.
TEST(TransformerDecoder, MemoryLimitCountsTheMemorySteps) {
  TransformerDecoderBlock<float> block(8, 2, 16, TransformerDecoderOptions().seed(1));
  EXPECT_GT(block.cache_bytes(2, 10), 0u);
  EXPECT_GT(block.cache_bytes(2, 20), block.cache_bytes(2, 10));
  EXPECT_THROW(block.open_stream(1, StreamOptions()), ConfigError);
  const Tensor3<float> x = random_tensor(1, 4, 8, 1).cast<float>();
  const Tensor3<float> short_memory = random_tensor(1, 4, 8, 2).cast<float>();
  const Tensor3<float> long_memory = random_tensor(1, 20000, 8, 3).cast<float>();
  set_memory_limit(std::size_t{1} << 20);  // 1 MiB: 1 x 2 x 4 x 20000 probabilities and the projections exceed it
  block.forward(x, Mask(), short_memory, Mask());
  try {
    block.forward(x, Mask(), long_memory, Mask());
    ADD_FAILURE() << "a 20000-step memory fit in 1 MiB";
  } catch (const MemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("TransformerDecoderBlock(d_model=8"), std::string::npos) << e.what();
  }
  reset_memory_limit();
  EXPECT_EQ(block.forward(x, Mask(), long_memory, Mask()).dimension(1), 4);
}

}  // namespace
