// Weight rules allocate nothing in a steady training step: the backward of a regularized or frozen layer and
// regularization_loss() make no heap allocation at all once a step has run (core/layer.hpp keeps plain views of
// the layer's own parameters). This binary replaces the global operator new to count every allocation (std::
// containers and strings too, which EIGEN_RUNTIME_NO_MALLOC does not see), so it is never grouped with other
// tests (tests/CMakeLists.txt: SEQATTN_STANDALONE_TESTS).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

// Heap allocations made by f.
template <class F>
long allocations_of(F&& f) {
  const long before = g_allocations.load();
  f();
  return g_allocations.load() - before;
}

TEST(WeightRulesHeap, BackwardAndPenaltyOfRegularizedAndFrozenLayersAllocateNothing) {
  Sequential<double> model(4);
  auto& dense = model.add<Dense<double>>(8, DenseOptions().activation(Activation::Tanh).seed(1));
  auto& lstm = model.add<LSTM<double>>(6, LSTMOptions().return_sequences(true).seed(2));
  auto& mha = model.add<MultiHeadAttention<double>>(2, MultiHeadAttentionOptions().seed(3));
  dense.set_regularizer(ParamRole::Kernel, L1L2{0.01, 0.02});
  dense.set_regularizer(ParamRole::Bias, L1L2{0.0, 0.03});
  lstm.set_trainable(false);
  mha.set_regularizer(ParamRole::Kernel, L1L2{0.0, 0.01});
  const Tensor3<double> x = random_tensor(2, 5, 4, 4);
  const Tensor3<double> dy = random_tensor(2, 5, 6, 5);
  const Mask mask = Mask::from_lengths({5, 3});
  double penalty = 0.0;
  for (int step = 0; step < 3; ++step) {
    model.forward(x, mask, Mode::Train);
    const long in_backward = allocations_of([&] { model.backward(dy); });
    const long in_penalty = allocations_of([&] { penalty = model.regularization_loss(); });
    if (step == 0) continue;  // the first step sizes every buffer and takes the views
    EXPECT_EQ(in_backward, 0) << "step " << step;
    EXPECT_EQ(in_penalty, 0) << "step " << step;
  }
  EXPECT_GT(penalty, 0.0);
  // The counter counts: building a parameter list allocates (names, shapes, the list).
  EXPECT_GT(allocations_of([&] { (void)model.params(); }), 0);
}

}  // namespace
