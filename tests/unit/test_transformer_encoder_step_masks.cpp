// TransformerEncoderBlock with step masks (holes, left padding): honored exactly when every sub-layer honors them
// (MultiHeadAttention does; the position-wise LayerNorm, Dense and Dropout answer for themselves). While one refuses,
// forward refuses the step mask with a ConfigError naming that sub-layer; once all accept, the block passes the
// finite-difference check with a random step mask (post- and pre-norm, causal, window) and its kept outputs are
// bitwise unchanged by garbage (NaN, Inf) at masked steps.
#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <string>

#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

struct BlockCase {
  const char* name;
  bool norm_first, causal;
  std::optional<Index> window;
};

class TransformerEncoderStepMask : public ::testing::TestWithParam<BlockCase> {};

TEST_P(TransformerEncoderStepMask, HonoredWhenEverySubLayerIs) {
  const BlockCase& c = GetParam();
  TransformerEncoderBlock<double> block(
      4, 2, 6,
      TransformerEncoderOptions().norm_first(c.norm_first).causal(c.causal).attention_window(c.window).seed(5));
  const Mask mask = random_step_mask(4, 6, 9);
  ASSERT_TRUE(mask.has_holes());
  const auto x = random_tensor(4, 6, 4, 3);
  const bool sub_layers = block.attention_layer().supports_step_masks() && block.norm1().supports_step_masks() &&
                          block.ffn1().supports_step_masks();
  EXPECT_TRUE(block.attention_layer().supports_step_masks());
  if (!block.supports_step_masks()) {
    EXPECT_FALSE(sub_layers && block.norm2().supports_step_masks() && block.ffn2().supports_step_masks());
    try {
      block.forward(x, mask);
      FAIL() << "a step mask was accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("TransformerEncoderBlock(d_model=4"), std::string::npos) << what;
      EXPECT_NE(what.find("its sub-layer "), std::string::npos) << what;
    }
    return;
  }
  const auto result = check_layer_gradients(block, x, mask);
  EXPECT_TRUE(result.passed({"mha.bk"})) << result.report();
  const Tensor3<double> y0 = block.forward(x, mask);
  for (const double g : {1e3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    const Tensor3<double>& y = block.forward(with_masked_values(x, mask, [g](Index) { return g; }), mask);
    EXPECT_TRUE(same_kept_steps(y0, mask, y, mask)) << g;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, TransformerEncoderStepMask,
                         ::testing::Values(BlockCase{"post_norm", false, false, std::nullopt},
                                           BlockCase{"pre_norm_causal", true, true, std::nullopt},
                                           BlockCase{"post_norm_window", false, true, Index{2}}),
                         [](const ::testing::TestParamInfo<BlockCase>& info) { return std::string(info.param.name); });

}  // namespace
