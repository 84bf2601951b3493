// MultiHeadAttention: configuration and shape errors (messages name the layer, expected and received
// values), parameter names and shapes, cross-attention shapes (Tq != Tk), rows without any valid key,
// per-head attention weights, attention dropout (Infer == no dropout, seeded Train reproducible), clone;
// attention_window: its errors, its banded storage and dense map, w >= T bitwise equal to causal attention, and
// thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

namespace {

Tensor3<float> rnd(Index B, Index T, Index F, std::uint64_t seed) {
  return seqattn::testing::random_tensor(B, T, F, seed).cast<float>();
}

template <class E, class F>
void expect_error(F&& f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << text;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(MultiHeadAttentionApi, ConfigErrorsNameTheLayer) {
  expect_error<ConfigError>([] { MultiHeadAttention<float>(30, 4); },
                            "MultiHeadAttention(heads=4): input features 30 not divisible by heads");
  expect_error<ConfigError>([] { MultiHeadAttention<float>(8, 0); },
                            "MultiHeadAttention: heads must be positive but got 0");
  expect_error<ConfigError>([] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().head_size(0)); },
                            "MultiHeadAttention(heads=2, head_size=0): head_size must be positive but got 0");
  expect_error<ConfigError>([] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().attention_dropout(1.0)); },
                            "attention_dropout must be in [0, 1) but got 1");
  expect_error<ConfigError>(
      [] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().activation(Activation::Softmax)); },
      "activation must be elementwise but got softmax");
  expect_error<ConfigError>([] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().key_features(0)); },
                            "key_features must be positive but got 0");
  expect_error<ConfigError>(
      [] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(0)); },
      "MultiHeadAttention(heads=2, causal=true, attention_window=0): attention_window must be at least 1 but got 0");
  expect_error<ConfigError>(
      [] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(-3)); },
      "attention_window must be at least 1 but got -3");
  expect_error<ConfigError>([] { MultiHeadAttention<float>(8, 2, MultiHeadAttentionOptions().attention_window(4)); },
                            "MultiHeadAttention(heads=2, attention_window=4): attention_window needs causal (a window "
                            "of past keys [t - w + 1, t]) but causal is false");
  MultiHeadAttention<float> windowed(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(16));
  EXPECT_EQ(windowed.describe(), "MultiHeadAttention(heads=2, causal=true, attention_window=16)");
  MultiHeadAttention<float> ok(30, 4, MultiHeadAttentionOptions().head_size(8));  // head_size lifts divisibility
  EXPECT_EQ(ok.head_size(), 8);
  EXPECT_EQ(ok.describe(), "MultiHeadAttention(heads=4, head_size=8)");
}

TEST(MultiHeadAttentionApi, ParametersHaveKerasNamesAndShapes) {
  MultiHeadAttention<float> mha(6, 2, MultiHeadAttentionOptions().head_size(5).key_features(3).output_features(4));
  const auto params = mha.params();
  const std::vector<std::string> names{"Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"};
  const std::vector<std::vector<Index>> shapes{{6, 10}, {10}, {3, 10}, {10}, {3, 10}, {10}, {10, 4}, {4}};
  ASSERT_EQ(params.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(params[i].name, names[i]);
    EXPECT_EQ(params[i].shape, shapes[i]) << names[i];
  }
  EXPECT_EQ(mha.param_count(), 60 + 30 + 30 + 40 + 10 + 10 + 10 + 4);
  EXPECT_EQ(mha.name(), "multi_head_attention");
}

TEST(MultiHeadAttentionApi, ShapeErrorsNameExpectedAndReceived) {
  MultiHeadAttention<float> self(8, 2);
  expect_error<ShapeError>([&] { self.forward(rnd(2, 3, 7, 1)); },
                           "MultiHeadAttention(heads=2): input features expected 8 but got 7");
  MultiHeadAttention<float> cross(8, 2, MultiHeadAttentionOptions().key_features(5));
  const auto xq = rnd(2, 3, 8, 1), xkv = rnd(2, 6, 5, 2);
  expect_error<ShapeError>([&] { cross.forward(xq, Mask(), rnd(2, 6, 4, 3), Mask()); },
                           "MultiHeadAttention(heads=2, key_features=5): key/value features expected 5 but got 4");
  expect_error<ShapeError>([&] { cross.forward(xq, Mask(), rnd(3, 6, 5, 3), Mask()); },
                           "key/value batch expected 2 (the query batch) but got 3");
  expect_error<ShapeError>(
      [&] {
        cross.forward(xq, Mask(), xkv, Mask::from_lengths({9, 1}));
      },
      "MultiHeadAttention(heads=2, key_features=5) key/value: mask length of sequence 0 is 9 but "
      "the input has only 6 steps");
  expect_error<ShapeError>([&] { cross.forward(xq); },
                           "self-attention needs key_features == input features (8) but key_features is 5");
  cross.forward(xq, Mask(), xkv, Mask());
  const Tensor3<float> dy = rnd(2, 3, 8, 4);
  expect_error<ShapeError>([&] { cross.backward(xq, Mask(), dy); }, "backward after a cross-attention forward");
  expect_error<ShapeError>(
      [&] { cross.backward_cross(xq, Mask(), rnd(2, 5, 5, 3), Mask(), dy); },
      "backward key/value input expected (2, 6, 5) (the shape of the last forward) but got (2, 5, 5)");
  expect_error<ShapeError>([&] { cross.attention(2, 0); }, "attention(b, h) expected b in [0, 2) and h in [0, 2)");
  self.forward(rnd(2, 3, 8, 5));
  expect_error<ShapeError>([&] { self.backward_cross(xq, Mask(), xq, Mask(), dy); },
                           "backward_cross called after a self-attention forward");
}

TEST(MultiHeadAttentionApi, CrossAttentionShapesAndDeadRows) {
  // bo != 0, yet rows without any valid key (kv length 0) and padded query rows output exactly 0.
  MultiHeadAttention<float> mha(
      4, 2, MultiHeadAttentionOptions().key_features(3).output_features(5).bias_init(Init::constant(0.5)));
  const auto xq = rnd(3, 4, 4, 6), xkv = rnd(3, 7, 3, 7);
  const Mask mq = Mask::from_lengths({4, 2, 3}), mkv = Mask::from_lengths({7, 3, 0});
  const Tensor3<float>& y = mha.forward(xq, mq, xkv, mkv);
  EXPECT_EQ(y.dimensions(), (Eigen::DSizes<Index, 3>(3, 4, 5)));
  EXPECT_EQ(mha.attention().dimensions(), (Eigen::DSizes<Index, 3>(6, 4, 7)));
  for (Index t = 0; t < 4; ++t)
    for (Index o = 0; o < 5; ++o) {
      EXPECT_EQ(y(2, t, o), 0.0f);  // no key at all
      if (t >= 2) {
        EXPECT_EQ(y(1, t, o), 0.0f);  // padded query
      } else {
        EXPECT_NE(y(1, t, o), 0.0f);
      }
    }
  for (Index h = 0; h < 2; ++h) {
    for (Index t = 0; t < 2; ++t) EXPECT_NEAR(mha.attention(1, h).row(t).sum(), 1.0f, 1e-6f);
    EXPECT_EQ(mha.attention(1, h).rightCols(4).cwiseAbs().maxCoeff(), 0.0f);  // keys 3.. are padding
    EXPECT_EQ(mha.attention(2, h).cwiseAbs().maxCoeff(), 0.0f);
  }
  EXPECT_GT((mha.attention(0, 0) - mha.attention(0, 1)).cwiseAbs().maxCoeff(), 1e-3f);  // per head, not averaged
  const Tensor3<float>& dxq = mha.backward_cross(xq, mq, xkv, mkv, rnd(3, 4, 5, 8));
  EXPECT_EQ(mha.key_input_grad().dimensions(), xkv.dimensions());
  EXPECT_EQ(&mha.query_input_grad(), &dxq);  // the cross-attention name of the returned dxq
  EXPECT_EQ(mha.query_input_grad().dimensions(), xq.dimensions());
  for (Index i = 0; i < dxq.size(); ++i) ASSERT_TRUE(std::isfinite(dxq.data()[i]));
  for (Index f = 0; f < 4; ++f) EXPECT_EQ(dxq(2, 0, f), 0.0f);
}

TEST(MultiHeadAttentionApi, AllPaddingBatchGivesZerosNotNaN) {
  MultiHeadAttention<float> mha(4, 2, MultiHeadAttentionOptions().causal(true).bias_init(Init::constant(1.0)));
  const auto x = rnd(2, 3, 4, 9);
  const Mask mask = Mask::from_lengths({0, 0});
  const Tensor3<float>& y = mha.forward(x, mask, Mode::Train);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], 0.0f);
  const Tensor3<float>& dx = mha.backward(x, mask, rnd(2, 3, 4, 10));
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0f);
  for (const auto& p : mha.params()) EXPECT_EQ(p.grads().cwiseAbs().maxCoeff(), 0.0f) << p.name;
}

TEST(MultiHeadAttentionApi, DropoutIsIdentityInInferAndSeededInTrain) {
  const auto x = rnd(2, 20, 8, 11);
  const Mask mask = Mask::from_lengths({20, 13});
  MultiHeadAttention<float> plain(8, 2, MultiHeadAttentionOptions().seed(21));
  MultiHeadAttention<float> drop(8, 2, MultiHeadAttentionOptions().seed(21).attention_dropout(0.5));
  const Tensor3<float> y_plain = plain.forward(x, mask, Mode::Infer);
  const Tensor3<float> y_plain_train = plain.forward(x, mask, Mode::Train);
  const Tensor3<float> y_infer = drop.forward(x, mask, Mode::Infer);
  EXPECT_EQ(std::memcmp(y_plain.data(), y_infer.data(), sizeof(float) * size_t(y_plain.size())), 0);
  EXPECT_EQ(std::memcmp(y_plain.data(), y_plain_train.data(), sizeof(float) * size_t(y_plain.size())), 0);

  MultiHeadAttention<float> twin(8, 2, MultiHeadAttentionOptions().seed(21).attention_dropout(0.5));
  const Tensor3<float> y_train = drop.forward(x, mask, Mode::Train);
  const Tensor3<float> y_twin = twin.forward(x, mask, Mode::Train);
  EXPECT_EQ(std::memcmp(y_train.data(), y_twin.data(), sizeof(float) * size_t(y_train.size())), 0);
  EXPECT_GT(Eigen::Map<const Vector<float>>(y_train.data(), y_train.size())
                .cwiseNotEqual(Eigen::Map<const Vector<float>>(y_infer.data(), y_infer.size()))
                .count(),
            0);
  const Tensor3<float> y_train2 = drop.forward(x, mask, Mode::Train);  // the next mask differs
  EXPECT_NE(std::memcmp(y_train.data(), y_train2.data(), sizeof(float) * size_t(y_train.size())), 0);
  drop.set_dropout_seed(77);
  const Tensor3<float> r1 = drop.forward(x, mask, Mode::Train);
  drop.set_dropout_seed(77);
  const Tensor3<float> r2 = drop.forward(x, mask, Mode::Train);
  EXPECT_EQ(std::memcmp(r1.data(), r2.data(), sizeof(float) * size_t(r1.size())), 0);
  // padded query rows stay 0 under dropout
  for (Index t = 13; t < 20; ++t)
    for (Index f = 0; f < 8; ++f) EXPECT_EQ(r1(1, t, f), 0.0f);
}

// v = 1 and Wo = I make y[b, t, h] = sum_s Ad[b, h, t, s]; at t = 0 of a causal layer the only weight is 1,
// so y[b, 0, h] is keep / (1 - rate): the fraction of zeros estimates the drop rate.
TEST(MultiHeadAttentionApi, DropoutDropsAtTheConfiguredRate) {
  MultiHeadAttention<float> mha(2, 2, MultiHeadAttentionOptions().causal(true).attention_dropout(0.2).seed(5));
  for (auto& p : mha.params()) {
    if (p.name == "Wv" || p.name == "bo") p.values().setZero();
    if (p.name == "bv") p.values().setOnes();
    if (p.name == "Wo") p.values() << 1, 0, 0, 1;
  }
  const Index B = 500;
  const Tensor3<float>& y = mha.forward(rnd(B, 3, 2, 13), Mask(), Mode::Train);
  Index zeros = 0;
  double mean_later = 0;
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < 2; ++h) {
      ASSERT_TRUE(y(b, 0, h) == 0.0f || std::abs(y(b, 0, h) - 1.25f) < 1e-6f) << y(b, 0, h);
      zeros += y(b, 0, h) == 0.0f;
      mean_later += (y(b, 1, h) + y(b, 2, h)) / (4.0 * B);
    }
  EXPECT_NEAR(double(zeros) / (2 * B), 0.2, 0.04);
  EXPECT_NEAR(mean_later, 1.0, 0.05);  // inverted dropout keeps the expected weight sum
}

// With OpenMP the (b, h) pairs run on several threads; results must not depend on the thread count.
TEST(MultiHeadAttentionApi, ThreadCountDoesNotChangeResults) {
  if (!has_openmp()) GTEST_SKIP() << "built without OpenMP: one thread only";
  const int saved = num_threads();
  MultiHeadAttention<float> mha(32, 4, MultiHeadAttentionOptions().causal(true).seed(3));
  const auto x = rnd(6, 90, 32, 14), dy = rnd(6, 90, 32, 15);
  const Mask mask = Mask::from_lengths({90, 1, 0, 45, 77, 90});
  auto run = [&](int threads, std::vector<float>& out) {
    set_num_threads(threads);
    mha.zero_grad();
    const Tensor3<float>& y = mha.forward(x, mask, Mode::Train);
    out.assign(y.data(), y.data() + y.size());
    const Tensor3<float>& dx = mha.backward(x, mask, dy);
    out.insert(out.end(), dx.data(), dx.data() + dx.size());
    for (const auto& p : mha.params()) out.insert(out.end(), p.grad, p.grad + p.size());
  };
  std::vector<float> one, two;
  run(1, one);
  run(2, two);
  set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
}

// With attention_window the probabilities are kept as a band (B*H, T, min(w, T)); attention() builds the dense
// (B*H, T, T) map, zero outside each window, and attention(b, h) reads it.
TEST(MultiHeadAttentionApi, WindowKeepsABandAndGivesTheDenseMap) {
  const Index w = 3, T = 8;
  MultiHeadAttention<float> mha(8, 2, MultiHeadAttentionOptions().causal(true).attention_window(w).seed(6));
  const auto x = rnd(2, T, 8, 16);
  const Mask mask = Mask::from_lengths({8, 5});
  mha.forward(x, mask);
  EXPECT_EQ(mha.attention_band().dimensions(), (Eigen::DSizes<Index, 3>(4, T, w)));
  EXPECT_EQ(mha.attention().dimensions(), (Eigen::DSizes<Index, 3>(4, T, T)));
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 2; ++h)
      for (Index t = 0; t < T; ++t) {
        const bool valid = t < mask.length(b, T);
        float sum = 0;
        for (Index s = 0; s < T; ++s) {
          const float a = mha.attention(b, h)(t, s);
          const bool inside = valid && s <= t && s > t - w && s < mask.length(b, T);
          if (inside) {
            EXPECT_GT(a, 0.0f) << b << " " << h << " " << t << " " << s;
          } else {
            EXPECT_EQ(a, 0.0f) << b << " " << h << " " << t << " " << s;
          }
          sum += a;
        }
        EXPECT_NEAR(sum, valid ? 1.0f : 0.0f, 1e-6f);
        for (Index j = 0; j < w; ++j) {  // the band holds the same values
          const Index s = mha.band_key(t, j);
          EXPECT_EQ(s, t - w + 1 + j);
          const float band = mha.attention_band()((b * 2 + h), t, j);
          EXPECT_EQ(band, s >= 0 ? mha.attention(b, h)(t, s) : 0.0f);
        }
      }
  // the next forward replaces the dense map
  const Tensor3<float> before = mha.attention();
  mha.forward(rnd(2, T, 8, 17), mask);
  EXPECT_NE(std::memcmp(before.data(), mha.attention().data(), sizeof(float) * size_t(before.size())), 0);
}

// Every window w >= T gives each query the keys [0, t]: bitwise the outputs, weights and gradients of causal
// attention, whatever w (the band's zero terms leave each sum's bits unchanged).
TEST(MultiHeadAttentionApi, WindowOfAtLeastTIsBitwiseCausalAttention) {
  const auto x = rnd(3, 70, 16, 18), dy = rnd(3, 70, 16, 19);
  const Mask mask = Mask::from_lengths({70, 33, 1});
  auto run = [&](std::optional<Index> window) {
    MultiHeadAttention<float> mha(16, 2, MultiHeadAttentionOptions().causal(true).attention_window(window).seed(8));
    std::vector<float> out;
    const Tensor3<float>& y = mha.forward(x, mask, Mode::Train);
    out.assign(y.data(), y.data() + y.size());
    out.insert(out.end(), mha.attention().data(), mha.attention().data() + mha.attention().size());
    const Tensor3<float>& dx = mha.backward(x, mask, dy);
    out.insert(out.end(), dx.data(), dx.data() + dx.size());
    for (const auto& p : mha.params()) out.insert(out.end(), p.grad, p.grad + p.size());
    return out;
  };
  const std::vector<float> causal = run(std::nullopt);
  for (Index w : {Index{70}, Index{71}, Index{1000}, Index{1} << 40}) {
    const std::vector<float> windowed = run(w);
    ASSERT_EQ(windowed.size(), causal.size());
    EXPECT_EQ(std::memcmp(windowed.data(), causal.data(), causal.size() * sizeof(float)), 0) << "window " << w;
  }
  const std::vector<float> narrower = run(69);  // the last query loses key 0
  EXPECT_NE(std::memcmp(narrower.data(), causal.data(), causal.size() * sizeof(float)), 0);
}

TEST(MultiHeadAttentionApi, WindowedResultsDoNotDependOnTheThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "built without OpenMP: one thread only";
  const int saved = num_threads();
  MultiHeadAttention<float> mha(32, 4, MultiHeadAttentionOptions().causal(true).attention_window(20).seed(3));
  const auto x = rnd(6, 90, 32, 14), dy = rnd(6, 90, 32, 15);
  const Mask mask = Mask::from_lengths({90, 1, 0, 45, 77, 90});
  auto run = [&](int threads) {
    set_num_threads(threads);
    mha.zero_grad();
    const Tensor3<float>& y = mha.forward(x, mask, Mode::Train);
    std::vector<float> out(y.data(), y.data() + y.size());
    const Tensor3<float>& dx = mha.backward(x, mask, dy);
    out.insert(out.end(), dx.data(), dx.data() + dx.size());
    for (const auto& p : mha.params()) out.insert(out.end(), p.grad, p.grad + p.size());
    return out;
  };
  const std::vector<float> one = run(1), two = run(2);
  set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
}

TEST(MultiHeadAttentionApi, CloneComputesTheSame) {
  MultiHeadAttention<float> mha(8, 4, MultiHeadAttentionOptions().causal(true));
  const auto x = rnd(2, 5, 8, 12);
  const Tensor3<float> y = mha.forward(x);
  auto copy = mha.clone();
  const Tensor3<float>& y2 = copy->forward(x);
  EXPECT_EQ(std::memcmp(y.data(), y2.data(), sizeof(float) * size_t(y.size())), 0);
  EXPECT_EQ(copy->describe(), "MultiHeadAttention(heads=4, causal=true)");
}

}  // namespace
