// The memory limit (issue 19, item 4). A global SeqSelfAttention at T = 50,000 was killed by the system at 24 GB
// (or threw a bare std::bad_alloc under a limit). Layers with caches that grow faster than the input now state
// what a batch needs (cache_bytes) and Layer::forward throws MemoryError before any work when it exceeds
// memory_limit(), naming the layer, the shape, the bytes and the remedy. MultiHeadAttention's attention_window
// (issue 20) bounds what a long causal sequence needs.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <new>
#include <string>

#include "seqattn/core/memory_limit.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/sequential.hpp"

using namespace seqattn;

namespace {

constexpr std::size_t kGiB = std::size_t{1} << 30;

// Sets a limit for one test and restores the default afterwards.
struct LimitScope {
  explicit LimitScope(std::size_t bytes) { set_memory_limit(bytes); }
  ~LimitScope() { reset_memory_limit(); }
};

std::string memory_error(Layer<float>& layer, Index B, Index T, Index F) {
  Tensor3<float> x(B, T, F);
  x.setZero();
  try {
    layer.forward(x);
  } catch (const MemoryError& e) {
    return e.what();
  }
  return "no MemoryError";
}

void expect_contains(const std::string& what, const std::string& needle) {
  EXPECT_NE(what.find(needle), std::string::npos) << "'" << needle << "' not in: " << what;
}

TEST(MemoryLimit, DefaultIsHalfOfTheUsableMemoryAndSettable) {
  const std::size_t usable = detail::usable_memory_bytes();
  ASSERT_GT(usable, std::size_t{0});
  EXPECT_EQ(memory_limit(), usable == kNoMemoryLimit ? kNoMemoryLimit : usable / 2);
  {
    LimitScope scope(3 * kGiB);
    EXPECT_EQ(memory_limit(), 3 * kGiB);
  }
  EXPECT_EQ(memory_limit(), usable == kNoMemoryLimit ? kNoMemoryLimit : usable / 2);
  EXPECT_THROW(set_memory_limit(0), ConfigError);
}

TEST(MemoryLimit, GlobalSeqSelfAttentionOnAVeryLongSequenceThrowsBeforeAllocating) {
  LimitScope scope(1 * kGiB);
  SeqSelfAttention<float> layer(8);
  const std::string what = memory_error(layer, 1, 50000, 8);
  expect_contains(what, "SeqSelfAttention(");
  expect_contains(what, "(1, 50000, 8)");
  expect_contains(what, "GiB for its output, input gradient and caches, above the memory limit of 1.00 GiB");
  expect_contains(what, "set attention_width");
  // Its caches: scores and probabilities (2 x 50000^2 floats) and the dense (T, T) scratch.
  EXPECT_GE(layer.cache_bytes(1, 50000), std::size_t{3} * 50000 * 50000 * sizeof(float));
  // With a window the same sequence fits: memory B x T x width.
  SeqSelfAttention<float> windowed(8, SeqSelfAttentionOptions().attention_width(15).units(8));
  EXPECT_LT(windowed.cache_bytes(1, 50000), std::size_t{64} << 20);
  Tensor3<float> x(1, 50000, 8);
  x.setConstant(0.01f);
  EXPECT_NO_THROW(windowed.forward(x));
}

TEST(MemoryLimit, MultiHeadAttentionAndContainersNameTheLayerThatNeedsTheMost) {
  LimitScope scope(256u << 20);
  MultiHeadAttention<float> mha(16, 4);
  std::string what = memory_error(mha, 2, 8192, 16);
  expect_contains(what, "MultiHeadAttention(heads=4)");
  expect_contains(what, "heads x T x T");
  EXPECT_GE(mha.cache_bytes(2, 8192), std::size_t{2} * 4 * 8192 * 8192 * sizeof(float));

  Sequential<float> model(16);
  model.add<Dense<float>>(16);
  model.add<TransformerEncoderBlock<float>>(4, 32);
  auto& residual = model.add<Residual<float>>();
  residual.body().add<SeqSelfAttention<float>>();
  EXPECT_EQ(model.cache_bytes(2, 4096), model.layer(1).cache_bytes(2, 4096) + model.layer(2).cache_bytes(2, 4096));
  what = memory_error(model, 2, 4096, 16);
  expect_contains(what, "Sequential(layers=3): a batch of shape (2, 4096, 16) needs");
  // The block's attention (2 x 4 heads x 4096^2 floats) needs more than the global SeqSelfAttention.
  expect_contains(what, "layer 1 TransformerEncoderBlock(d_model=16, heads=4, ff_dim=32, post-norm) needs 515.00 MiB");
  expect_contains(what, "heads x T x T");
  // Alone, the residual SeqSelfAttention names its own remedy.
  expect_contains(memory_error(model.layer(2), 2, 4096, 16), "set attention_width");
  // Small batches pass the same model.
  Tensor3<float> x(2, 64, 16);
  x.setConstant(0.1f);
  EXPECT_NO_THROW(model.predict(x));
}

// A causal sliding window (attention_window) keeps B x heads x T x w probabilities: a (1, 20000, 16) batch with
// 4 heads and w = 64 needs 28 MB where global attention needs 6.4 GB, and runs forward and backward under a
// 256 MiB limit. cache_bytes grows linearly in T and in w.
TEST(MemoryLimit, WindowedMultiHeadAttentionOnALongSequenceFitsWhereGlobalAttentionDoesNot) {
  LimitScope scope(256u << 20);
  const Index T = 20000, w = 64, H = 4, D = 16;
  MultiHeadAttention<float> global(D, H, MultiHeadAttentionOptions().causal(true));
  const std::string what = memory_error(global, 1, T, D);
  expect_contains(what, "MultiHeadAttention(heads=4, causal=true)");
  expect_contains(what, "heads x T x T");
  expect_contains(what, "set attention_window");

  MultiHeadAttention<float> mha(D, H, MultiHeadAttentionOptions().causal(true).attention_window(w).seed(3));
  // probabilities (1, 4, T, w) and the projections with their gradients (1, 3T, 2 x 16), in floats
  EXPECT_EQ(mha.cache_bytes(1, T), sizeof(float) * std::size_t(H * T * w + 3 * T * 2 * D));
  EXPECT_EQ(mha.cache_bytes(1, 2 * T), 2 * mha.cache_bytes(1, T));
  MultiHeadAttention<float> wider(D, H, MultiHeadAttentionOptions().causal(true).attention_window(2 * w));
  EXPECT_EQ(wider.cache_bytes(1, T) - mha.cache_bytes(1, T), sizeof(float) * std::size_t(H * T * w));
  EXPECT_LT(mha.cache_bytes(1, T), std::size_t{32} << 20);

  Tensor3<float> x(1, T, D), dy(1, T, D);
  Rng rng(4);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (Index i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  const Tensor3<float>& y = mha.forward(x, Mask(), Mode::Train);
  for (Index i = 0; i < y.size(); ++i) ASSERT_TRUE(std::isfinite(y.data()[i])) << i;
  const Tensor3<float>& dx = mha.backward(x, Mask(), dy);
  for (Index i = 0; i < dx.size(); ++i) ASSERT_TRUE(std::isfinite(dx.data()[i])) << i;
  EXPECT_EQ(mha.attention_band().dimensions(), (Eigen::DSizes<Index, 3>(H, T, w)));
  // The dense (4, T, T) map that attention() would build is refused, pointing at the band.
  try {
    mha.attention();
    ADD_FAILURE() << "no MemoryError";
  } catch (const MemoryError& e) {
    expect_contains(e.what(), "attention() builds the dense (B*H, Tq, Tk) = (4, 20000, 20000) map");
    expect_contains(e.what(), "attention_band()");
  }

  // The transformer block counts the same band and names the window in its remedy.
  TransformerEncoderBlock<float> block(D, H, 32, TransformerEncoderOptions().causal(true).attention_window(w));
  EXPECT_EQ(block.cache_bytes(1, T), mha.cache_bytes(1, T));
  expect_contains(block.memory_remedy(1, T), "attention_window");
  EXPECT_NO_THROW(block.forward(x));
}

TEST(MemoryLimit, SizesThatOverflowSaturateAndAreRefused) {
  SeqSelfAttention<float> layer(4);
  EXPECT_EQ(layer.cache_bytes(Index{1} << 40, Index{1} << 40), kNoMemoryLimit);
  EXPECT_EQ(detail::saturating_bytes(8, {Index{1} << 62, 4}), kNoMemoryLimit);
  EXPECT_EQ(detail::saturating_add(kNoMemoryLimit - 1, 5), kNoMemoryLimit);
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(12), "12 bytes");
}

// A std::bad_alloc inside a layer becomes a MemoryError naming the layer and the shape.
class Allocating final : public Layer<float> {
 public:
  explicit Allocating(Index in) : Layer<float>(in) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "allocating"; }
  std::string describe() const override { return "Allocating()"; }
  std::unique_ptr<Layer<float>> clone() const override { return std::make_unique<Allocating>(*this); }

 protected:
  void do_forward(const Tensor3<float>&, const Mask&, Mode, Tensor3<float>&) override { throw std::bad_alloc(); }
  void do_backward(const Tensor3<float>&, const Mask&, const Tensor3<float>&, Tensor3<float>&) override {}
};

TEST(MemoryLimit, BadAllocInALayerBecomesAMemoryErrorNamingIt) {
  Sequential<float> model(3);
  model.add<Dense<float>>(3);
  model.add(std::make_unique<Allocating>(3));
  const std::string what = memory_error(model, 2, 5, 3);
  expect_contains(what, "Allocating(): out of memory in forward for a batch of shape (2, 5, 3) (std::bad_alloc)");
}

}  // namespace
