// MultiHeadAttention with need_weights=false keeps no attention probabilities (issue 25): backward computes each
// block of query rows again (detail/multi_head_attention_kernels.hpp, "Probabilities not kept").
//   - float, sizes with several blocks of query rows (dense blocks of about 128K scores, causal blocks of 64
//     rows), head sizes read in place and copied: outputs, input and parameter gradients are bitwise those of
//     need_weights=true, for self- and cross-attention, causal, padding, step masks, attention dropout (its masks
//     drawn again from the forward's random state, over two training steps), qkv_dropout and a projection
//     activation (1 and 2 threads: test_determinism_threads trains a need_weights=false layer);
//   - finite differences in double over several causal blocks, with padding and with attention dropout;
//   - memory: cache_bytes() counts no probabilities (one sequence of 16384 steps, 4 heads: under 64 MiB of
//     caches instead of 4 GiB), the memory limit refuses the kept mode and not this one, and the accessors of the
//     probabilities refuse with a UsageError;
//   - TransformerEncoderBlock and TransformerDecoderBlock pass need_weights to their attentions: bitwise the same
//     training step (with dropout), the option in config() and from_config(), fewer cache bytes, maps refused.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "seqattn/core/memory_limit.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/error_text.hpp"
#include "support/mha_inputs.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::error_of;
using seqattn::testing::random_tensor;

namespace {

struct Case {
  const char* name;
  Index features, heads;  // head size features / heads: 16 (in place) or 8 (copied panels)
  Index Tq, Tk;           // Tk != Tq: cross-attention
  bool causal = false, steps = false;
  double attention_dropout = 0.0, qkv_dropout = 0.0;
  Activation activation = Activation::Linear;
};

const Case kCases[] = {
    {"dense, padded", 32, 2, 700, 700},
    {"causal, padded", 32, 2, 300, 300, true},
    {"causal, step masks, head size 8", 24, 3, 260, 260, true, true},
    {"cross, padded", 32, 2, 260, 900},
    {"cross causal, step masks", 24, 3, 200, 330, true, true},
    {"dense, attention dropout", 32, 2, 520, 520, false, false, 0.2},
    {"causal, both dropouts, tanh", 24, 3, 300, 300, true, false, 0.1, 0.1, Activation::Tanh},
};

MultiHeadAttentionOptions options_of(const Case& c, bool need_weights) {
  return MultiHeadAttentionOptions()
      .causal(c.causal)
      .attention_dropout(c.attention_dropout)
      .qkv_dropout(c.qkv_dropout)
      .activation(c.activation)
      .need_weights(need_weights)
      .seed(11);
}

Mask mask_of(const Case& c, Index B, Index T, std::uint64_t seed) {
  if (c.steps) return seqattn::testing::random_step_mask(B, T, seed);
  return Mask::from_lengths({T, T - 37, T / 3});
}

// Everything one training step produces: y, dxq, dxkv and every parameter gradient, as float bits.
struct StepResult {
  std::vector<float> values;
  void append(const float* p, Index n) { values.insert(values.end(), p, p + n); }
};

std::vector<StepResult> run_steps(const Case& c, bool need_weights) {
  const bool cross = c.Tk != c.Tq;
  const Index B = 3;
  MultiHeadAttention<float> mha(c.features, c.heads, options_of(c, need_weights));
  const Tensor3<float> xq = random_tensor(B, c.Tq, c.features, 1).cast<float>();
  const Tensor3<float> xkv = cross ? random_tensor(B, c.Tk, c.features, 2).cast<float>() : xq;
  const Tensor3<float> dy = random_tensor(B, c.Tq, c.features, 3).cast<float>();
  const Mask mq = mask_of(c, B, c.Tq, 4), mkv = cross ? mask_of(c, B, c.Tk, 5) : mq;
  std::vector<StepResult> steps;
  for (int step = 0; step < 2; ++step) {  // the second step's dropout masks follow the first's draws
    StepResult r;
    mha.zero_grad();
    const Tensor3<float>& y = cross ? mha.forward(xq, mq, xkv, mkv, Mode::Train) : mha.forward(xq, mq, Mode::Train);
    r.append(y.data(), y.size());
    const Tensor3<float>& dx = cross ? mha.backward_cross(xq, mq, xkv, mkv, dy) : mha.backward(xq, mq, dy);
    r.append(dx.data(), dx.size());
    if (cross) r.append(mha.key_input_grad().data(), mha.key_input_grad().size());
    for (const auto& p : mha.params()) r.append(p.grad, p.size());
    const Tensor3<float>& yi = cross ? mha.forward(xq, mq, xkv, mkv, Mode::Infer) : mha.forward(xq, mq, Mode::Infer);
    r.append(yi.data(), yi.size());
    steps.push_back(std::move(r));
  }
  return steps;
}

bool same_bits(const std::vector<StepResult>& a, const std::vector<StepResult>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].values.size() != b[i].values.size() ||
        std::memcmp(a[i].values.data(), b[i].values.data(), a[i].values.size() * sizeof(float)) != 0)
      return false;
  return true;
}

TEST(MultiHeadAttentionMemory, NotKeptIsBitwiseTheKeptMode) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(same_bits(run_steps(c, true), run_steps(c, false)));
  }
}

// The recomputed blocks draw their dropout masks from a copy of the forward's state, not from the layer's live
// random sequence: restarting it between forward and backward changes nothing. (Drawing from the live sequence
// instead fails this test and the dropout cases above.)
TEST(MultiHeadAttentionMemory, BackwardRedrawsTheForwardsDropoutMasks) {
  const Case c = kCases[5];
  MultiHeadAttention<float> a(c.features, c.heads, options_of(c, false));
  MultiHeadAttention<float> b(c.features, c.heads, options_of(c, false));
  const Tensor3<float> x = random_tensor(2, 200, c.features, 1).cast<float>();
  const Tensor3<float> dy = random_tensor(2, 200, c.features, 3).cast<float>();
  const Mask m = Mask::from_lengths({200, 150});
  a.forward(x, m, Mode::Train);
  b.forward(x, m, Mode::Train);
  b.set_dropout_seed(99);  // does not touch the state the backward replays
  const Tensor3<float> da = a.backward(x, m, dy);
  const Tensor3<float> db = b.backward(x, m, dy);
  EXPECT_EQ(std::memcmp(da.data(), db.data(), sizeof(float) * size_t(da.size())), 0);
}

TEST(MultiHeadAttentionMemory, FiniteDifferencesOverSeveralCausalBlocks) {
  for (const double rate : {0.0, 0.3}) {
    SCOPED_TRACE(rate);
    MultiHeadAttention<double> mha(
        4, 2, MultiHeadAttentionOptions().causal(true).attention_dropout(rate).need_weights(false).seed(3));
    seqattn::testing::MhaInputs in;
    in.xq = in.xk = in.xv = random_tensor(2, 140, 4, 1);  // 140 queries: causal blocks of 64, 64 and 12 rows
    in.mq = in.mkv = Mask::from_lengths({140, 97});
    in.dy = random_tensor(2, 140, 4, 5);
    const auto forward = [&]() -> const Tensor3<double>& {
      mha.set_dropout_seed(21);  // the same masks for every evaluation
      in.xk = in.xv = in.xq;     // the check perturbs xq in place
      return mha.forward(in.xq, in.mq, Mode::Train);
    };
    const auto result = seqattn::testing::check_mha_gradients(mha, in, forward);
    EXPECT_TRUE(result.passed({"bk"})) << result.report();
  }
}

TEST(MultiHeadAttentionMemory, CachesCountNoProbabilities) {
  MultiHeadAttention<float> kept(64, 4, MultiHeadAttentionOptions().seed(1));
  MultiHeadAttention<float> not_kept(64, 4, MultiHeadAttentionOptions().need_weights(false).seed(1));
  const std::size_t GiB = std::size_t(1) << 30, MiB = std::size_t(1) << 20;
  EXPECT_GE(kept.cache_bytes(1, 16384), 4 * GiB);  // 4 heads x 16384^2 floats
  EXPECT_LT(not_kept.cache_bytes(1, 16384), 64 * MiB);
  // still kept: the band of attention_window (already linear in T), explicit masks, extra keys
  MultiHeadAttention<float> windowed(
      64, 4, MultiHeadAttentionOptions().causal(true).attention_window(128).need_weights(false).seed(1));
  EXPECT_GE(windowed.cache_bytes(1, 16384), std::size_t(4) * 16384 * 128 * sizeof(float));
}

TEST(MultiHeadAttentionMemory, MemoryLimitRefusesOnlyTheKeptMode) {
  const Index T = 4096;
  const Tensor3<float> x = random_tensor(1, T, 16, 1).cast<float>();
  const Mask m = Mask::from_lengths({T});
  set_memory_limit(std::size_t(96) << 20);  // the kept mode needs 2 heads x 4096^2 floats = 128 MiB
  MultiHeadAttention<float> kept(16, 2, MultiHeadAttentionOptions().seed(1));
  MultiHeadAttention<float> not_kept(16, 2, MultiHeadAttentionOptions().need_weights(false).seed(1));
  EXPECT_THROW(kept.forward(x, m, Mode::Train), MemoryError);
  EXPECT_NO_THROW(not_kept.forward(x, m, Mode::Train));
  EXPECT_NO_THROW(not_kept.backward(x, m, x));
  reset_memory_limit();
}

TEST(MultiHeadAttentionMemory, AccessorsOfTheProbabilitiesRefuse) {
  MultiHeadAttention<float> mha(8, 2, MultiHeadAttentionOptions().need_weights(false).seed(1));
  const Tensor3<float> x = random_tensor(2, 6, 8, 1).cast<float>();
  mha.forward(x, Mask::from_lengths({6, 4}), Mode::Infer);
  const std::string text = error_of<UsageError>([&] { mha.attention(1, 1); });
  EXPECT_NE(text.find("attention(b, h) is not available with need_weights=false"), std::string::npos) << text;
  EXPECT_THROW(mha.attention_map(0, 0), UsageError);
  EXPECT_THROW(mha.attention_band(), UsageError);
}

std::vector<double> bits_of(const Tensor3<double>& y, const Tensor3<double>& dx, const ParamList<double>& params) {
  std::vector<double> out(y.data(), y.data() + y.size());
  out.insert(out.end(), dx.data(), dx.data() + dx.size());
  for (const auto& p : params) out.insert(out.end(), p.grad, p.grad + p.size());
  return out;
}

TEST(MultiHeadAttentionMemory, EncoderBlockPassesNeedWeights) {
  const Tensor3<double> x = random_tensor(2, 70, 8, 1), dy = random_tensor(2, 70, 8, 2);
  const Mask m = Mask::from_lengths({70, 41});
  std::vector<std::vector<double>> runs;
  for (const bool need : {true, false}) {
    TransformerEncoderBlock<double> block(
        8, 2, 16,
        TransformerEncoderOptions().causal(true).attention_dropout(0.2).dropout(0.1).need_weights(need).seed(3));
    const Tensor3<double> y = block.forward(x, m, Mode::Train);
    const Tensor3<double> dx = block.backward(x, m, dy);
    runs.push_back(bits_of(y, dx, block.params()));
    if (need) continue;
    EXPECT_THROW(block.attention_map(0, 0), UsageError);
    EXPECT_NE(block.describe().find("need_weights=false"), std::string::npos) << block.describe();
    const auto copy = TransformerEncoderBlock<double>::from_config(8, block.config());
    EXPECT_EQ(copy->describe(), block.describe());
    TransformerEncoderBlock<double> kept(8, 2, 16, TransformerEncoderOptions().causal(true).seed(3));
    EXPECT_LT(block.cache_bytes(2, 4096), kept.cache_bytes(2, 4096) / 10);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(MultiHeadAttentionMemory, DecoderBlockPassesNeedWeightsToBothAttentions) {
  const Tensor3<double> x = random_tensor(2, 70, 8, 1), dy = random_tensor(2, 70, 8, 2);
  const Tensor3<double> memory = random_tensor(2, 90, 8, 3);
  const Mask mx = Mask::from_lengths({70, 41}), mm = Mask::from_lengths({90, 23});
  std::vector<std::vector<double>> runs;
  for (const bool need : {true, false}) {
    TransformerDecoderBlock<double> block(
        8, 2, 16, TransformerDecoderOptions().attention_dropout(0.2).dropout(0.1).need_weights(need).seed(3));
    const Tensor3<double> y = block.forward(x, mx, memory, mm, Mode::Train);
    const Tensor3<double> dx = block.backward(x, mx, memory, mm, dy);
    std::vector<double> bits = bits_of(y, dx, block.params());
    bits.insert(bits.end(), block.memory_grad().data(), block.memory_grad().data() + block.memory_grad().size());
    runs.push_back(bits);
    if (need) continue;
    EXPECT_THROW(block.attention_map(0, 0), UsageError);
    EXPECT_THROW(block.cross_attention_map(0, 0), UsageError);
    const auto copy = TransformerDecoderBlock<double>::from_config(8, block.config());
    EXPECT_EQ(copy->describe(), block.describe());
    TransformerDecoderBlock<double> kept(8, 2, 16, TransformerDecoderOptions().seed(3));
    EXPECT_LT(block.cache_bytes(2, 4096), kept.cache_bytes(2, 4096) / 10);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

}  // namespace
