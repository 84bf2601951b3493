// Two threads calling one model object (issue 19, item 5). A layer object holds the caches of its last call, so
// two threads computing on one model gave silently wrong outputs (same shapes) or crashed (other shapes). Every
// layer now marks itself busy for the length of a forward or backward: a second entry throws UsageError at once,
// before it touches anything. Also run under ThreadSanitizer (./build.sh tsan): the refused call reads nothing
// that the running call writes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/global_pooling.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/model/sequential.hpp"

using namespace seqattn;

namespace {

// Identity layer that waits inside its forward and backward until released: holds the model busy on purpose.
class Gate final : public Layer<float> {
 public:
  Gate(Index in, std::atomic<int>* entered, std::atomic<bool>* release)
      : Layer<float>(in), entered_(entered), release_(release) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "gate"; }
  std::string describe() const override { return "Gate()"; }
  std::unique_ptr<Layer<float>> clone() const override { return std::make_unique<Gate>(*this); }

 protected:
  void do_forward(const Tensor3<float>& x, const Mask&, Mode, Tensor3<float>& y) override {
    wait();
    y = x;
  }
  void do_backward(const Tensor3<float>&, const Mask&, const Tensor3<float>& dy, Tensor3<float>& dx) override {
    wait();
    dx = dy;
  }

 private:
  void wait() {
    entered_->fetch_add(1);
    while (!release_->load()) std::this_thread::yield();
  }
  std::atomic<int>* entered_;
  std::atomic<bool>* release_;
};

Tensor3<float> input(Index B, Index T, Index F) {
  Tensor3<float> x(B, T, F);
  x.setConstant(0.5f);
  return x;
}

void expect_concurrent_error(const std::function<void()>& call, const std::string& who) {
  try {
    call();
    ADD_FAILURE() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(who), std::string::npos) << what;
    EXPECT_NE(what.find("another call on the same layer object is running"), std::string::npos) << what;
    EXPECT_NE(what.find("own copy"), std::string::npos) << what;
  }
}

TEST(ConcurrentUse, ASecondThreadEnteringABusyModelThrowsAtOnce) {
  std::atomic<int> entered{0};
  std::atomic<bool> release{false};
  Sequential<float> model(4);
  model.add<Dense<float>>(4);
  model.add(std::make_unique<Gate>(4, &entered, &release));
  const Tensor3<float> x = input(2, 3, 4), other_shape = input(5, 7, 4);
  std::thread first([&] { model.predict(x); });
  while (entered.load() == 0) std::this_thread::yield();
  // Same shape or another shape: refused before any work, while the first call is inside the model.
  expect_concurrent_error([&] { model.predict(x); }, "Sequential(layers=2): forward");
  expect_concurrent_error([&] { model.predict(other_shape); }, "Sequential(layers=2)");
  expect_concurrent_error([&] { model.layer(1).forward(x); }, "Gate(): forward");  // the busy layer itself
  EXPECT_NO_THROW(model.layer(0).forward(x)) << "a layer that is not running is free";
  release.store(true);
  first.join();
  // The flag is cleared when the call returns: the next call from any thread works and is right.
  Sequential<float> copy = model;
  const Tensor3<float> y = model.predict(x);
  const Tensor3<float> expected = copy.predict(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], expected.data()[i]);
}

TEST(ConcurrentUse, BackwardWhileAForwardRunsIsRefused) {
  std::atomic<int> entered{0};
  std::atomic<bool> release{true};
  Sequential<float> model(4);
  model.add(std::make_unique<Gate>(4, &entered, &release));
  const Tensor3<float> x = input(1, 2, 4);
  model.forward(x, Mask(), Mode::Train);
  release.store(false);
  std::thread first([&] { model.predict(x); });
  while (entered.load() < 2) std::this_thread::yield();
  expect_concurrent_error([&] { model.backward(x); }, "backward");
  release.store(true);
  first.join();
}

TEST(ConcurrentUse, AFailedCallLeavesTheModelUsable) {
  Sequential<float> model(4);
  model.add<Dense<float>>(3);
  EXPECT_THROW(model.predict(input(1, 2, 5)), ShapeError);  // wrong features: throws inside the busy region
  EXPECT_NO_THROW(model.predict(input(1, 2, 4)));
  EXPECT_THROW(model.backward(input(9, 9, 9)), ShapeError);
  EXPECT_NO_THROW(model.predict(input(1, 2, 4)));
}

// Two threads hammering one attention model: every call either completes or is refused with UsageError, and
// nothing crashes (before, outputs were silently wrong and other shapes crashed).
TEST(ConcurrentUse, TwoThreadsHammeringOneModelAreRefusedNeverCorrupted) {
  Sequential<float> model(8);
  model.add<MultiHeadAttention<float>>(2);
  model.add<Dense<float>>(3);
  std::atomic<int> done{0}, refused{0};
  auto run = [&](Index T) {
    const Tensor3<float> x = input(2, T, 8);
    for (int k = 0; k < 300; ++k) {
      try {
        model.predict(x);
        done.fetch_add(1);
      } catch (const UsageError&) {
        refused.fetch_add(1);
      }
    }
  };
  std::thread a(run, 16), b(run, 24);
  a.join();
  b.join();
  EXPECT_EQ(done.load() + refused.load(), 600);
  EXPECT_GT(done.load(), 0);
}

}  // namespace

// Streams (model/stream.hpp) only read their model: any number of them step at once on one model object, on any
// threads, each giving what it gives alone (and, under ThreadSanitizer, without a data race).
TEST(ConcurrentUse, StreamsOverOneModelStepTogetherOnManyThreads) {
  Sequential<float> model(4);
  model.add<Conv1D<float>>(6, 3, Conv1DOptions().padding(Padding::Causal).seed(1));
  model.add<LSTM<float>>(5, LSTMOptions().return_sequences(true).seed(2));
  model.add<SeqSelfAttention<float>>(SeqSelfAttentionOptions().history_only(true).attention_width(4).seed(3));
  model.add<MultiHeadAttention<float>>(1, MultiHeadAttentionOptions().causal(true).seed(4));
  model.add<LayerNorm<float>>();
  model.add<GlobalMaxPool<float>>();
  model.add<Dense<float>>(2, DenseOptions().seed(5));
  constexpr int kThreads = 4, kSteps = 40;
  auto input = [](int thread, int step) {
    Tensor3<float> x(2, 1, 4);
    for (Index f = 0; f < 4; ++f) {
      x(0, 0, f) = std::sin(0.1f * float(step + f + thread));
      x(1, 0, f) = std::cos(0.2f * float(step * f + thread));
    }
    return x;
  };
  std::vector<std::vector<float>> alone(kThreads), together(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    Stream<float> s = model.stream(2);
    for (int k = 0; k < kSteps; ++k) {
      const Tensor3<float>& y = s.step(input(t, k));
      alone[t].insert(alone[t].end(), y.data(), y.data() + y.size());
    }
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      Stream<float> s = model.stream(2);
      for (int k = 0; k < kSteps; ++k) {
        const Tensor3<float>& y = s.step(input(t, k));
        together[t].insert(together[t].end(), y.data(), y.data() + y.size());
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(alone[t], together[t]) << "thread " << t;
}
