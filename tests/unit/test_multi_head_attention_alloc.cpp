// MultiHeadAttention and SeqWeightedAttention allocate nothing in a steady loop: once the buffers have the
// batch's shape, forward and backward (self- and cross-attention, causal, masked, attention dropout,
// projection activation, attention_window) run with Eigen's heap allocations forbidden (EIGEN_RUNTIME_NO_MALLOC).
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

namespace {

struct NoMalloc {
  NoMalloc() { Eigen::internal::set_is_malloc_allowed(false); }
  ~NoMalloc() { Eigen::internal::set_is_malloc_allowed(true); }
};

Tensor3<float> rnd(Index B, Index T, Index F, std::uint64_t seed) {
  return seqattn::testing::random_tensor(B, T, F, seed).cast<float>();
}

// Runs `step` once to size the buffers, then `repeats` more times with Eigen's heap allocations forbidden.
template <class Step>
void run_steady_loop(int repeats, Step step) {
  step();
  NoMalloc guard;
  for (int i = 0; i < repeats; ++i) step();
}

TEST(MultiHeadAttentionAlloc, SteadySelfAttentionLoopAllocatesNothing) {
  MultiHeadAttention<float> mha(
      8, 2, MultiHeadAttentionOptions().causal(true).attention_dropout(0.1).activation(Activation::Tanh).seed(1));
  const auto x = rnd(3, 21, 8, 2), dy = rnd(3, 21, 8, 3);
  const Mask mask = Mask::from_lengths({21, 5, 0});
  run_steady_loop(3, [&] {
    mha.forward(x, mask, Mode::Train);
    mha.backward(x, mask, dy);
    mha.forward(x, mask, Mode::Infer);
  });
}

// need_weights=false: the blocks of probabilities live in the per-thread panels, sized once (dense with dropout,
// causal with step masks; head sizes copied and read in place). Two threads: the calls with attention dropout use
// one, the others two, and a call must not grow a panel its threads do not use.
TEST(MultiHeadAttentionAlloc, SteadyLoopWithoutKeptProbabilitiesAllocatesNothing) {
  const int saved = num_threads();
  set_num_threads(2);
  for (Index dim : {8, 32}) {
    MultiHeadAttention<float> dense(dim, 2, MultiHeadAttentionOptions().attention_dropout(0.1).need_weights(false));
    MultiHeadAttention<float> causal(dim, 2, MultiHeadAttentionOptions().causal(true).need_weights(false));
    const auto x = rnd(3, 90, dim, 2), dy = rnd(3, 90, dim, 3);
    const Mask lengths = Mask::from_lengths({90, 5, 0});
    std::vector<std::uint8_t> keep(3 * 90, 1);
    keep[4] = keep[91] = keep[200] = 0;
    const Mask steps = Mask::from_steps(3, 90, keep);
    run_steady_loop(3, [&] {
      dense.forward(x, lengths, Mode::Train);
      dense.backward(x, lengths, dy);
      dense.forward(x, lengths, Mode::Infer);
      causal.forward(x, steps, Mode::Train);
      causal.backward(x, steps, dy);
    });
  }
  set_num_threads(saved);
}

TEST(MultiHeadAttentionAlloc, SteadyWindowedLoopAllocatesNothing) {
  for (Index dim : {8, 32}) {  // head sizes 4 and 16: panels copied or read in place
    MultiHeadAttention<float> mha(dim, 2,
                                  MultiHeadAttentionOptions()
                                      .causal(true)
                                      .attention_window(9)
                                      .attention_dropout(0.1)
                                      .activation(Activation::Tanh)
                                      .seed(1));
    const auto x = rnd(3, 50, dim, 2), dy = rnd(3, 50, dim, 3);
    const Mask mask = Mask::from_lengths({50, 5, 0});
    run_steady_loop(3, [&] {
      mha.forward(x, mask, Mode::Train);
      mha.backward(x, mask, dy);
      mha.forward(x, mask, Mode::Infer);
      mha.backward(x, mask, dy);
    });
  }
}

// qkv_dropout: the dropped q, k, v and their keep flags are sized once (self-attention with step masks, windowed
// with an explicit attention mask, cross-attention with separate key and value inputs).
TEST(MultiHeadAttentionAlloc, SteadyQkvDropoutLoopAllocatesNothing) {
  MultiHeadAttention<float> self(
      8, 2,
      MultiHeadAttentionOptions().causal(true).qkv_dropout(0.2).attention_dropout(0.1).activation(Activation::Tanh));
  const auto x = rnd(3, 21, 8, 2), dy = rnd(3, 21, 8, 3);
  std::vector<std::uint8_t> keep(3 * 21, 1);
  keep[4] = keep[21] = keep[22] = 0;
  const Mask steps = Mask::from_steps(3, 21, keep);
  run_steady_loop(3, [&] {
    self.forward(x, steps, Mode::Train);
    self.backward(x, steps, dy);
  });
  MultiHeadAttention<float> windowed(8, 2,
                                     MultiHeadAttentionOptions().causal(true).attention_window(4).qkv_dropout(0.3));
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> blocked(21, 21);
  blocked.setConstant(false);
  blocked(5, 3) = true;
  windowed.set_attention_mask(blocked);
  const Mask lengths = Mask::from_lengths({21, 5, 0});
  run_steady_loop(3, [&] {
    windowed.forward(x, lengths, Mode::Train);
    windowed.backward(x, lengths, dy);
  });
  MultiHeadAttention<float> cross(8, 2, MultiHeadAttentionOptions().key_features(6).value_features(3).qkv_dropout(0.5));
  const auto xq = rnd(2, 9, 8, 5), xk = rnd(2, 30, 6, 6), xv = rnd(2, 30, 3, 7), dyq = rnd(2, 9, 8, 8);
  const Mask mq = Mask::from_lengths({9, 3}), mkv = Mask::from_lengths({17, 30});
  run_steady_loop(3, [&] {
    cross.forward(xq, mq, xk, xv, mkv, Mode::Train);
    cross.backward_cross(xq, mq, xk, xv, mkv, dyq);
  });
}

TEST(MultiHeadAttentionAlloc, SteadyCrossAttentionLoopAllocatesNothing) {
  MultiHeadAttention<float> mha(8, 4, MultiHeadAttentionOptions().key_features(6).output_features(5).seed(4));
  const auto xq = rnd(2, 9, 8, 5), xkv = rnd(2, 30, 6, 6), dy = rnd(2, 9, 5, 7);
  const Mask mq = Mask::from_lengths({9, 3}), mkv = Mask::from_lengths({17, 30});
  run_steady_loop(3, [&] {
    mha.forward(xq, mq, xkv, mkv, Mode::Train);
    mha.backward_cross(xq, mq, xkv, mkv, dy);
  });
}

// Two threads (OpenMP builds): the dynamic schedule hands the (sample, head) pairs to either thread, so each
// thread's head buffers must be sized for the batch's largest head before the loop, not grown on first use
// (this loop allocated in about one run of three before they were). Sample lengths differ to vary the heads.
TEST(MultiHeadAttentionAlloc, SteadyLoopWithTwoThreadsAllocatesNothing) {
  const int saved = num_threads();
  set_num_threads(2);
  for (Index dim : {8, 32}) {  // head sizes 4 and 16: panels copied or read in place (detail/head_products.hpp)
    MultiHeadAttention<float> mha(dim, 2, MultiHeadAttentionOptions().seed(5));
    MultiHeadAttention<float> windowed(dim, 2, MultiHeadAttentionOptions().causal(true).attention_window(6).seed(5));
    const auto x = rnd(6, 40, dim, 8), dy = rnd(6, 40, dim, 9);
    const Mask mask = Mask::from_lengths({3, 40, 7, 25, 1, 33});
    run_steady_loop(20, [&] {
      mha.forward(x, mask, Mode::Train);
      mha.backward(x, mask, dy);
      windowed.forward(x, mask, Mode::Train);
      windowed.backward(x, mask, dy);
    });
  }
  set_num_threads(saved);
}

// Large enough that a plain Eigen product would pack more than EIGEN_STACK_ALLOCATION_LIMIT and allocate:
// (400, 256) x (256, 256) projections, weight gradients over 1400 rows, 700 keys of 128 features per head.
// One thread: Eigen's multi-threaded GEMM (OpenMP builds) allocates its shared packing buffer per product.
TEST(MultiHeadAttentionAlloc, LargeShapesAllocateNothing) {
  const int saved = num_threads();
  set_num_threads(1);
  MultiHeadAttention<float> mha(256, 2, MultiHeadAttentionOptions().key_features(96).seed(2));
  const auto xq = rnd(2, 200, 256, 11), xkv = rnd(2, 700, 96, 12), dy = rnd(2, 200, 256, 13);
  const Mask mq = Mask::from_lengths({200, 150}), mkv = Mask::from_lengths({700, 501});
  run_steady_loop(1, [&] {
    mha.forward(xq, mq, xkv, mkv, Mode::Train);
    mha.backward_cross(xq, mq, xkv, mkv, dy);
  });
  set_num_threads(saved);
}

TEST(SeqWeightedAttentionAlloc, SteadyLoopAllocatesNothing) {
  SeqWeightedAttention<float> swa(6);
  const auto x = rnd(4, 11, 6, 8), dy = rnd(4, 1, 6, 9);
  const Mask mask = Mask::from_lengths({11, 0, 1, 7});
  run_steady_loop(3, [&] {
    swa.forward(x, mask, Mode::Train);
    swa.backward(x, mask, dy);
  });
}

}  // namespace
