// MultiHeadAttention invariances, compared BITWISE in float and double:
//  - valid outputs and attention weights do not change when the batch is padded to more steps (query and
//    key/value side), when padded values change, or when a sample is run alone instead of in a batch;
//  - causal outputs at steps <= t do not change when later steps change;
//  - both with attention_window (banded storage: the band's width and offsets change with T).
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

namespace {

template <class S>
Tensor3<S> random3(Index B, Index T, Index F, std::uint64_t seed) {
  const Tensor3<double> t = seqattn::testing::random_tensor(B, T, F, seed);
  return t.cast<S>();
}

// x padded (or cut) to T steps: steps < lengths[b] copied from x, the others filled with random junk.
template <class S>
Tensor3<S> repad(const Tensor3<S>& x, const std::vector<Index>& lengths, Index T, std::uint64_t seed) {
  Tensor3<S> out = random3<S>(x.dimension(0), T, x.dimension(2), seed);
  for (Index b = 0; b < x.dimension(0); ++b)
    for (Index t = 0; t < lengths[static_cast<size_t>(b)]; ++t)
      for (Index f = 0; f < x.dimension(2); ++f) out(b, t, f) = x(b, t, f) * S(1);
  return out;
}

// Rows t < lq(b) of a (B, T, F) tensor, and attention rows of valid queries over valid keys, as bytes.
template <class S>
std::vector<S> valid_rows(const Tensor3<S>& y, const std::vector<Index>& lq) {
  std::vector<S> out;
  for (Index b = 0; b < y.dimension(0); ++b)
    for (Index t = 0; t < lq[static_cast<size_t>(b)]; ++t)
      for (Index f = 0; f < y.dimension(2); ++f) out.push_back(y(b, t, f));
  return out;
}
template <class S>
std::vector<S> valid_attention(const MultiHeadAttention<S>& mha, const std::vector<Index>& lq,
                               const std::vector<Index>& lk) {
  std::vector<S> out;
  for (Index b = 0; b < static_cast<Index>(lq.size()); ++b)
    for (Index h = 0; h < mha.heads(); ++h)
      for (Index t = 0; t < lq[static_cast<size_t>(b)]; ++t)
        for (Index s = 0; s < lk[static_cast<size_t>(b)]; ++s) out.push_back(mha.attention(b, h)(t, s));
  return out;
}
template <class S>
bool bitwise_equal(const std::vector<S>& a, const std::vector<S>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0;
}

template <class S>
void check_padding_invariance(bool causal, Activation activation, std::optional<Index> window = std::nullopt) {
  SCOPED_TRACE(causal ? "causal" : "not causal");
  SCOPED_TRACE(window ? "window " + std::to_string(*window) : "no window");
  MultiHeadAttention<S> mha(12, 3,
                            MultiHeadAttentionOptions()
                                .causal(causal)
                                .attention_window(window)
                                .activation(activation)
                                .seed(4)
                                .bias_init(Init::uniform(-0.2, 0.2)));
  // The last sample is full length, so its rows are the tail rows of every GEMM of the unpadded batch.
  const std::vector<Index> lengths{23, 1, 2, 70, 9, 0, 37};
  const Index B = 7, T0 = 70;
  const Tensor3<S> x = random3<S>(B, T0, 12, 7);
  const Mask mask = Mask::from_lengths(lengths);
  const std::vector<S> y0 = valid_rows(mha.forward(x, mask), lengths);
  const std::vector<S> a0 = valid_attention(mha, lengths, lengths);
  for (Index T : {71, 73, 77, 86, 87, 133}) {
    const Tensor3<S> xp = repad(x, lengths, T, 100 + T);
    EXPECT_TRUE(bitwise_equal(y0, valid_rows(mha.forward(xp, mask), lengths))) << "padded to " << T;
    EXPECT_TRUE(bitwise_equal(a0, valid_attention(mha, lengths, lengths))) << "padded to " << T;
  }
  // new padded values at the same T
  const Tensor3<S> xj = repad(x, lengths, T0, 555);
  EXPECT_TRUE(bitwise_equal(y0, valid_rows(mha.forward(xj, mask), lengths)));
  // every sample alone, unpadded
  for (Index b = 0; b < B; ++b) {
    const Index L = lengths[static_cast<size_t>(b)];
    if (L == 0) continue;
    Tensor3<S> xb(1, L, 12);
    for (Index t = 0; t < L; ++t)
      for (Index f = 0; f < 12; ++f) xb(0, t, f) = x(b, t, f);
    const std::vector<S> yb = valid_rows(mha.forward(xb), {L});
    size_t offset = 0;
    for (Index c = 0; c < b; ++c) offset += static_cast<size_t>(lengths[static_cast<size_t>(c)] * 12);
    const std::vector<S> expected(y0.begin() + static_cast<long>(offset),
                                  y0.begin() + static_cast<long>(offset + static_cast<size_t>(L * 12)));
    EXPECT_TRUE(bitwise_equal(expected, yb)) << "sample " << b << " alone";
  }
}

TEST(MultiHeadAttentionInvariance, PaddingNeverChangesValidOutputsFloat) {
  check_padding_invariance<float>(false, Activation::Linear);
  check_padding_invariance<float>(true, Activation::Tanh);
}

TEST(MultiHeadAttentionInvariance, PaddingNeverChangesValidOutputsDouble) {
  check_padding_invariance<double>(false, Activation::Tanh);
  check_padding_invariance<double>(true, Activation::Linear);
}

// Windows below, between and above the lengths: 70 steps pad to 71..133, so w = 71 and 100 switch between the
// band layout (w < T) and the dense one (w >= T) as the batch is padded.
TEST(MultiHeadAttentionInvariance, WindowedPaddingNeverChangesValidOutputs) {
  for (Index w : {1, 5, 30, 71, 100}) {
    check_padding_invariance<float>(true, w % 2 ? Activation::Linear : Activation::Tanh, w);
    check_padding_invariance<double>(true, Activation::Linear, w);
  }
}

TEST(MultiHeadAttentionInvariance, WindowedCrossAttentionPaddingOnBothSides) {
  MultiHeadAttention<float> mha(8, 2,
                                MultiHeadAttentionOptions().key_features(5).causal(true).attention_window(4).seed(15));
  const std::vector<Index> lq{5, 17, 1}, lk{40, 3, 1};
  const Tensor3<float> xq = random3<float>(3, 17, 8, 1), xkv = random3<float>(3, 40, 5, 2);
  const Mask mq = Mask::from_lengths(lq), mkv = Mask::from_lengths(lk);
  const std::vector<float> y0 = valid_rows(mha.forward(xq, mq, xkv, mkv), lq);
  const std::vector<float> a0 = valid_attention(mha, lq, lk);
  for (Index extra : {1, 2, 9, 40}) {
    const Tensor3<float> xq2 = repad(xq, lq, 17 + extra, 40 + extra), xkv2 = repad(xkv, lk, 40 + 2 * extra, 50 + extra);
    EXPECT_TRUE(bitwise_equal(y0, valid_rows(mha.forward(xq2, mq, xkv2, mkv), lq))) << "extra " << extra;
    EXPECT_TRUE(bitwise_equal(a0, valid_attention(mha, lq, lk))) << "extra " << extra;
  }
}

TEST(MultiHeadAttentionInvariance, CrossAttentionPaddingOnBothSides) {
  MultiHeadAttention<float> mha(8, 2, MultiHeadAttentionOptions().key_features(5).output_features(6).seed(12));
  const std::vector<Index> lq{5, 17, 1}, lk{40, 3, 1};
  const Tensor3<float> xq = random3<float>(3, 17, 8, 1), xkv = random3<float>(3, 40, 5, 2);
  const Mask mq = Mask::from_lengths(lq), mkv = Mask::from_lengths(lk);
  const std::vector<float> y0 = valid_rows(mha.forward(xq, mq, xkv, mkv), lq);
  const std::vector<float> a0 = valid_attention(mha, lq, lk);
  for (Index extra : {1, 2, 3, 9, 16}) {
    const Tensor3<float> xq2 = repad(xq, lq, 17 + extra, 40 + extra), xkv2 = repad(xkv, lk, 40 + 2 * extra, 50 + extra);
    EXPECT_TRUE(bitwise_equal(y0, valid_rows(mha.forward(xq2, mq, xkv2, mkv), lq))) << "extra " << extra;
    EXPECT_TRUE(bitwise_equal(a0, valid_attention(mha, lq, lk))) << "extra " << extra;
  }
}

TEST(MultiHeadAttentionInvariance, LongKeysSplitIntoSeveralBlocks) {
  MultiHeadAttention<float> mha(4, 1, MultiHeadAttentionOptions().key_features(3).seed(14));
  const std::vector<Index> lq{100, 37}, lk{1500, 1100};
  const Tensor3<float> xq = random3<float>(2, 100, 4, 1), xkv = random3<float>(2, 1500, 3, 2);
  const Mask mq = Mask::from_lengths(lq), mkv = Mask::from_lengths(lk);
  const std::vector<float> y0 = valid_rows(mha.forward(xq, mq, xkv, mkv), lq);
  const std::vector<float> a0 = valid_attention(mha, lq, lk);
  const Tensor3<float> xq2 = repad(xq, lq, 103, 3), xkv2 = repad(xkv, lk, 1517, 4);
  EXPECT_TRUE(bitwise_equal(y0, valid_rows(mha.forward(xq2, mq, xkv2, mkv), lq)));
  EXPECT_TRUE(bitwise_equal(a0, valid_attention(mha, lq, lk)));
}

template <class S>
void check_causal_future(Index t0, std::optional<Index> window = std::nullopt) {
  SCOPED_TRACE(t0);
  MultiHeadAttention<S> mha(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(window).seed(13));
  const Index T = 100;
  const Tensor3<S> x = random3<S>(2, T, 8, 3);
  const Tensor3<S> y0 = mha.forward(x);
  Tensor3<S> x2 = x;
  const Tensor3<S> junk = random3<S>(2, T, 8, 77);
  for (Index b = 0; b < 2; ++b)
    for (Index t = t0 + 1; t < T; ++t)
      for (Index f = 0; f < 8; ++f) x2(b, t, f) = junk(b, t, f);
  const Tensor3<S>& y2 = mha.forward(x2);
  bool later_changed = false;
  for (Index b = 0; b < 2; ++b) {
    EXPECT_EQ(std::memcmp(&y0(b, 0, 0), &y2(b, 0, 0), sizeof(S) * static_cast<size_t>((t0 + 1) * 8)), 0);
    later_changed = later_changed || std::memcmp(&y0(b, t0 + 1, 0), &y2(b, t0 + 1, 0), sizeof(S) * 8) != 0;
  }
  EXPECT_TRUE(later_changed);  // the check can fail: the changed steps do reach the outputs after t0
}

TEST(MultiHeadAttentionInvariance, CausalOutputsIgnoreFutureSteps) {
  for (Index t0 : {0, 40, 63, 64, 70}) {
    check_causal_future<float>(t0);
    check_causal_future<double>(t0);
    for (Index w : {1, 7, 64}) check_causal_future<float>(t0, w);
  }
}

}  // namespace
