// set_num_threads / num_threads, and what Eigen's GEMM threads do to the bits of a Dense and a
// MultiHeadAttention forward + backward. The test build links OpenMP into this binary when CMake finds it;
// without OpenMP the multi-threaded checks are skipped (nothing can run in parallel then).
// Proves: (1) products whose inner dimension fits one Eigen cache block (k <= ~288 for float) give the same
// bits with 1 and 2 threads, in every output, input gradient and parameter gradient; (2) a thread count is
// deterministic run to run; (3) deeper products (weight gradients over B*T > kc rows) agree to float
// rounding with 1 and 2 threads (Eigen blocks k differently for several threads, see core/threads.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "seqattn/core/threads.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/multi_head_attention.hpp"

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

// Everything one forward + backward produces: y, dx and every parameter gradient, in that order.
struct Outputs {
  std::vector<std::string> names;
  std::vector<std::vector<float>> values;
};

template <class L>
Outputs forward_backward(const L& prototype, int threads, const Tensor3<float>& x, const Mask& mask,
                     const Tensor3<float>& dy) {
  set_num_threads(threads);
  L layer = prototype;  // the same weights every time
  layer.zero_grad();
  const Tensor3<float>& y = layer.forward(x, mask, Mode::Train);
  Outputs run;
  run.names.push_back("y");
  run.values.emplace_back(y.data(), y.data() + y.size());
  const Tensor3<float>& dx = layer.backward(x, mask, dy);
  run.names.push_back("dx");
  run.values.emplace_back(dx.data(), dx.data() + dx.size());
  for (const auto& p : layer.params()) {
    run.names.push_back("d" + p.name);
    run.values.emplace_back(p.grad, p.grad + p.size());
  }
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

// |a - b| <= tol * (1 + max |a|) for every value of every tensor.
void expect_close(const Outputs& a, const Outputs& b, double tol, const std::string& what) {
  ASSERT_EQ(a.names, b.names);
  for (size_t i = 0; i < a.values.size(); ++i) {
    double scale = 1.0, worst = 0.0;
    for (float v : a.values[i]) scale = std::max(scale, 1.0 + std::abs(static_cast<double>(v)));
    for (size_t j = 0; j < a.values[i].size(); ++j)
      worst = std::max(worst, std::abs(static_cast<double>(a.values[i][j]) - static_cast<double>(b.values[i][j])));
    EXPECT_LE(worst, tol * scale) << what << ": " << a.names[i];
  }
}

}  // namespace

TEST_F(Threads, RecordsTheCountAndSetsEigenWithOpenMP) {
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  EXPECT_EQ(Eigen::nbThreads(), has_openmp() ? 3 : 1);
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

// (B*T, F) x (F, U) products with F, U, B*T <= 128: every product is large enough for Eigen to split it over
// two threads (rows * cols * depth >= 2 * 50000) but no inner dimension exceeds one cache block.
TEST_F(Threads, DenseIsBitwiseIdenticalWithTwoThreadsWhenProductsFitOneBlock) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: products are single-threaded";
  const Dense<float> dense(64, 96, DenseOptions().activation(Activation::GELU).seed(3));
  const auto x = random_float(4, 32, 64, 1), dy = random_float(4, 32, 96, 2);
  const Mask mask = Mask::from_lengths({32, 17, 1, 0});
  expect_bitwise_equal(forward_backward(dense, 1, x, mask, dy), forward_backward(dense, 2, x, mask, dy), "Dense");
}

TEST_F(Threads, MultiHeadAttentionIsBitwiseIdenticalWithTwoThreadsWhenProductsFitOneBlock) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: products are single-threaded";
  const MultiHeadAttention<float> mha(64, 4, MultiHeadAttentionOptions().seed(5));
  const auto x = random_float(4, 32, 64, 3), dy = random_float(4, 32, 64, 4);
  const Mask mask = Mask::from_lengths({32, 20, 1, 0});
  expect_bitwise_equal(forward_backward(mha, 1, x, mask, dy), forward_backward(mha, 2, x, mask, dy), "MHA");
}

// B*T = 1024 rows: dW = x^T dz sums over 1024 rows, more than one cache block, which Eigen cuts differently
// for one and for several threads. Two threads are still deterministic, and agree with one to float rounding.
TEST_F(Threads, DeepProductsAreDeterministicAndAgreeToRounding) {
  if (!has_openmp()) GTEST_SKIP() << "compiled without OpenMP: products are single-threaded";
  const Dense<float> dense(64, 64, DenseOptions().seed(7));
  const auto x = random_float(8, 128, 64, 5), dy = random_float(8, 128, 64, 6);
  const Outputs one = forward_backward(dense, 1, x, Mask(), dy);
  const Outputs two = forward_backward(dense, 2, x, Mask(), dy);
  expect_bitwise_equal(two, forward_backward(dense, 2, x, Mask(), dy), "Dense, 2 threads, run to run");
  expect_close(one, two, 1e-5, "Dense, 1 vs 2 threads");
  // y and dx have inner dimensions of 64: bitwise equal even here.
  EXPECT_EQ(one.values[0], two.values[0]);
  EXPECT_EQ(one.values[1], two.values[1]);

  const MultiHeadAttention<float> mha(64, 4, MultiHeadAttentionOptions().seed(9));
  const Outputs mha_one = forward_backward(mha, 1, x, Mask(), dy);
  const Outputs mha_two = forward_backward(mha, 2, x, Mask(), dy);
  expect_bitwise_equal(mha_two, forward_backward(mha, 2, x, Mask(), dy), "MHA, 2 threads, run to run");
  expect_close(mha_one, mha_two, 1e-5, "MHA, 1 vs 2 threads");
}
