// set_num_threads / num_threads, and that results do not depend on the thread count: the layers that OpenMP
// threads share (Dense, MultiHeadAttention, LayerNorm, GlobalMaxPool, sinusoidal positions) give bitwise the
// same y, dx and parameter gradients with 1, 2 and 3 threads, on batches of several row chunks (B*T >
// kChunkRows, so parameter gradients are reduced from partials) with masks; so does a whole classifier over
// several training steps (losses, gradients and weights). The test build links OpenMP into this binary when
// CMake finds it; without OpenMP the multi-threaded checks are skipped (nothing runs in parallel then).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "seqattn/core/threads.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/adam.hpp"

using namespace seqattn;

namespace {

// Restores one thread after each test so the order of tests does not matter.
class Threads : public ::testing::Test {
 protected:
  void TearDown() override { set_num_threads(1); }
};

Tensor3<float> random_float(Index B, Index T, Index F, std::uint64_t seed) {
  Rng rng(seed);
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

// Everything a run produces, by name: y, dx, every parameter gradient (and more for the model).
struct Outputs {
  std::vector<std::string> names;
  std::vector<std::vector<float>> values;
  void add(const std::string& name, const float* data, Index size) {
    names.push_back(name);
    values.emplace_back(data, data + size);
  }
};

template <class L>
Outputs forward_backward(const L& prototype, int threads, const Tensor3<float>& x, const Mask& mask,
                         const Tensor3<float>& dy) {
  set_num_threads(threads);
  L layer = prototype;  // the same weights every time
  layer.zero_grad();
  Outputs run;
  const Tensor3<float>& y = layer.forward(x, mask, Mode::Train);
  run.add("y", y.data(), y.size());
  const Tensor3<float>& dx = layer.backward(x, mask, dy);
  run.add("dx", dx.data(), dx.size());
  for (const auto& p : layer.params()) run.add("d" + p.name, p.grad, p.size());
  return run;
}

void expect_bitwise_equal(const Outputs& a, const Outputs& b, const std::string& what) {
  ASSERT_EQ(a.names, b.names);
  for (size_t i = 0; i < a.values.size(); ++i) {
    ASSERT_EQ(a.values[i].size(), b.values[i].size());
    EXPECT_EQ(std::memcmp(a.values[i].data(), b.values[i].data(), a.values[i].size() * sizeof(float)), 0)
        << what << ": " << a.names[i] << " differs in its bits";
  }
}

// 1 thread against 2 and 3, and 2 threads run to run.
template <class L>
void expect_thread_count_independent(const L& layer, const Tensor3<float>& x, const Mask& mask,
                                     const Tensor3<float>& dy, const std::string& what) {
  const Outputs one = forward_backward(layer, 1, x, mask, dy);
  const Outputs two = forward_backward(layer, 2, x, mask, dy);
  expect_bitwise_equal(one, two, what + ", 1 vs 2 threads");
  expect_bitwise_equal(one, forward_backward(layer, 3, x, mask, dy), what + ", 1 vs 3 threads");
  expect_bitwise_equal(two, forward_backward(layer, 2, x, mask, dy), what + ", 2 threads run to run");
}

// 3 chunks of rows (B*T = 2400 > 2 * kChunkRows), the last one ragged; lengths including 0 and 1.
constexpr Index kB = 15, kT = 160;
Mask ragged_mask() { return Mask::from_lengths({160, 17, 1, 0, 160, 99, 160, 33, 160, 2, 150, 160, 7, 160, 80}); }

}  // namespace

TEST_F(Threads, RecordsTheCountAndKeepsEigenSingleThreaded) {
  EXPECT_EQ(Eigen::nbThreads(), 1);  // from including seqattn (static initialization), before any call
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  EXPECT_EQ(Eigen::nbThreads(), 1);  // the layers parallelize above Eigen's products
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  EXPECT_EQ(Eigen::nbThreads(), 1);
}

TEST_F(Threads, RejectsACountBelowOne) {
  set_num_threads(2);
  for (int bad : {0, -4}) {
    try {
      set_num_threads(bad);
      FAIL() << "expected ConfigError for " << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("set_num_threads: expected a thread count >= 1 but got " +
                                           std::to_string(bad)),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(num_threads(), 2);  // unchanged by the rejected calls
}

TEST_F(Threads, ChunksDependOnTheRowCountOnly) {
  EXPECT_EQ(detail::kChunkRows % detail::kRowQuantum, 0);
  EXPECT_EQ(detail::chunk_count(0), 0);
  EXPECT_EQ(detail::chunk_count(1), 1);
  EXPECT_EQ(detail::chunk_count(detail::kChunkRows), 1);
  EXPECT_EQ(detail::chunk_count(detail::kChunkRows + 1), 2);
  EXPECT_EQ(detail::chunk_rows(detail::kChunkRows + 5, 1), 5);
  set_num_threads(1);
  EXPECT_EQ(detail::parallel_threads(8, 1e9), 1);
  set_num_threads(2);
  EXPECT_EQ(detail::parallel_threads(8, 1e9), has_openmp() ? 2 : 1);
  EXPECT_EQ(detail::parallel_threads(1, 1e9), 1);   // one piece
  EXPECT_EQ(detail::parallel_threads(8, 100), 1);   // too little work to wake a thread
}

TEST_F(Threads, DenseIsBitwiseIdenticalForAnyThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: everything runs on one thread";
  const auto x = random_float(kB, kT, 48, 1), dy = random_float(kB, kT, 96, 2);
  expect_thread_count_independent(Dense<float>(48, 96, DenseOptions().activation(Activation::GELU).seed(3)), x,
                                  ragged_mask(), dy, "Dense GELU");
  expect_thread_count_independent(Dense<float>(48, 96, DenseOptions().seed(4)), x, Mask(), dy, "Dense linear");
}

TEST_F(Threads, MultiHeadAttentionIsBitwiseIdenticalForAnyThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: everything runs on one thread";
  const auto x = random_float(kB, kT, 64, 3), dy = random_float(kB, kT, 64, 4);
  expect_thread_count_independent(MultiHeadAttention<float>(64, 4, MultiHeadAttentionOptions().seed(5)), x,
                                  ragged_mask(), dy, "MHA");
  expect_thread_count_independent(
      MultiHeadAttention<float>(64, 8, MultiHeadAttentionOptions().causal(true).activation(Activation::Tanh).seed(6)),
      x, Mask(), dy, "MHA causal tanh");
}

TEST_F(Threads, CrossAttentionIsBitwiseIdenticalForAnyThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: everything runs on one thread";
  const MultiHeadAttention<float> prototype(32, 4, MultiHeadAttentionOptions().key_features(24).seed(7));
  const auto xq = random_float(kB, 90, 32, 5), xkv = random_float(kB, kT, 24, 6), dy = random_float(kB, 90, 32, 7);
  const Mask mq = Mask::from_lengths({90, 1, 0, 45, 90, 90, 3, 90, 90, 20, 90, 90, 90, 60, 9});
  auto run = [&](int threads) {
    set_num_threads(threads);
    MultiHeadAttention<float> mha = prototype;
    Outputs out;
    const Tensor3<float>& y = mha.forward(xq, mq, xkv, ragged_mask(), Mode::Train);
    out.add("y", y.data(), y.size());
    const Tensor3<float>& dxq = mha.backward_cross(xq, mq, xkv, ragged_mask(), dy);
    out.add("dxq", dxq.data(), dxq.size());
    out.add("dxkv", mha.key_input_grad().data(), mha.key_input_grad().size());
    for (const auto& p : mha.params()) out.add("d" + p.name, p.grad, p.size());
    return out;
  };
  const Outputs one = run(1);
  expect_bitwise_equal(one, run(2), "cross-attention, 1 vs 2 threads");
  expect_bitwise_equal(one, run(3), "cross-attention, 1 vs 3 threads");
}

TEST_F(Threads, NormalizationPoolingAndPositionsAreBitwiseIdenticalForAnyThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: everything runs on one thread";
  const auto x = random_float(kB, kT, 64, 8), dy = random_float(kB, kT, 64, 9), dy1 = random_float(kB, 1, 64, 10);
  expect_thread_count_independent(LayerNorm<float>(64), x, ragged_mask(), dy, "LayerNorm");
  expect_thread_count_independent(GlobalMaxPool<float>(64), x, ragged_mask(), dy1, "GlobalMaxPool");
  expect_thread_count_independent(SinusoidalPositionalEncoding<float>(64), x, ragged_mask(), dy, "Sinusoidal");
}

// The classifier of benchmarks/classifier_model.hpp (Dense, sinusoidal positions, MHA, LayerNorm, max pool,
// Dense; cross-entropy, Adam), 4 training steps on B*T = 2400 masked rows: the losses, every gradient of the
// last step and every weight after it are bitwise the same with 1 and 2 threads.
TEST_F(Threads, ClassifierTrainingIsBitwiseIdenticalForAnyThreadCount) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: everything runs on one thread";
  const auto x = random_float(kB, kT, 8, 11);
  std::vector<int> labels;
  for (Index b = 0; b < kB; ++b) labels.push_back(static_cast<int>(b % 2));
  auto train = [&](int threads) {
    set_num_threads(threads);
    Sequential<float> model(8);
    model.add<Dense<float>>(64, DenseOptions().seed(1));
    model.add<SinusoidalPositionalEncoding<float>>();
    model.add<MultiHeadAttention<float>>(4, MultiHeadAttentionOptions().seed(2));
    model.add<LayerNorm<float>>();
    model.add<GlobalMaxPool<float>>();
    model.add<Dense<float>>(2, DenseOptions().seed(3));
    SoftmaxCrossEntropy<float> loss;
    Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
    Outputs out;
    std::vector<float> losses;
    for (int step = 0; step < 4; ++step) {
      model.zero_grad();
      losses.push_back(loss.forward(model.forward(x, ragged_mask(), Mode::Train), labels));
      model.backward(loss.grad());
      if (step == 3)
        for (const auto& p : model.params()) out.add("d" + p.name, p.grad, p.size());
      adam.step();
    }
    out.add("losses", losses.data(), static_cast<Index>(losses.size()));
    for (const auto& p : model.params()) out.add(p.name, p.value, p.size());
    return out;
  };
  const Outputs one = train(1);
  const std::vector<float>& losses = one.values[one.names.size() - 1 - one.names.size() / 2];  // "losses"
  ASSERT_EQ(one.names[one.names.size() - 1 - one.names.size() / 2], "losses");
  EXPECT_NE(losses.front(), losses.back());  // training moved the weights
  expect_bitwise_equal(one, train(2), "classifier, 1 vs 2 threads");
}
