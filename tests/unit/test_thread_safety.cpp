// Thread safety of model copies: several std::threads, each running inference (and training steps) on its own
// copy of a model (Sequential copies are deep: clone() of every layer), give bitwise the results one thread
// gets. The models are random stacks of every layer type (tests/support/random_model.hpp). There is no const
// inference path: forward writes the layers' caches, so a model object must not be shared between threads
// (docs/pages/reliability.md). Run under ThreadSanitizer by ./build.sh tsan (no OpenMP there: std::thread only).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/optim/adam.hpp"
#include "support/property_checks.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kThreads = 4;
constexpr int kModels = 12;

struct Batch {
  Tensor3<float> x;
  Mask mask;
};

std::vector<Batch> batches(const RandomModel<float>& m, Index T, std::uint64_t seed) {
  std::vector<Batch> out;
  for (int k = 0; k < 3; ++k)
    out.push_back({random_input(m, 3, T, seed + k), Mask::from_lengths(random_lengths(3, T, seed + 10 + k))});
  return out;
}

// The outputs of every batch, in order, flattened; then the losses of 3 Adam steps on batch 0.
std::vector<float> work(Sequential<float> model, const std::vector<Batch>& data) {
  std::vector<float> out;
  for (const Batch& b : data) {
    const Tensor3<float>& y = model.predict(b.x, b.mask);
    out.insert(out.end(), y.data(), y.data() + y.size());
  }
  if (!model.params().empty()) {
    Adam<float> adam(model.params(), AdamOptions().lr(0.01));
    MeanSquaredError<float> loss;
    for (int step = 0; step < 3; ++step) {
      const Tensor3<float>& y = model.forward(data[0].x, data[0].mask, Mode::Train);
      Tensor3<float> target(y.dimension(0), y.dimension(1), y.dimension(2));
      target.setConstant(0.5f);
      out.push_back(loss.forward(y, target, model.output_mask()));
      adam.zero_grad();
      model.backward(loss.grad());
      adam.step();
    }
  }
  return out;
}

TEST(ThreadSafety, ThreadsOnTheirOwnModelCopiesMatchOneThreadBitwise) {
  for (int seed = 1; seed <= kModels; ++seed) {
    const Index T = 4 + seed % 3;
    const RandomModel<float> m = random_model<float>(80000 + seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 80000 + seed << ":" << m.recipe);
    const std::vector<Batch> data = batches(m, T, 21000 + 100 * seed);
    const std::vector<float> expected = work(m.model, data);  // one thread

    std::vector<std::vector<float>> results(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        Sequential<float> copy = m.model;  // each thread copies the shared prototype (read only)
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();  // start together
        results[static_cast<size_t>(i)] = work(std::move(copy), data);
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      ASSERT_EQ(results[static_cast<size_t>(i)].size(), expected.size());
      EXPECT_EQ(std::memcmp(results[static_cast<size_t>(i)].data(), expected.data(), expected.size() * sizeof(float)), 0)
          << "thread " << i;
    }
  }
}

// Building models concurrently (layers drawing default seeds from the global sequence) is safe; with explicit
// seeds, every thread builds the same weights.
TEST(ThreadSafety, ModelsCanBeBuiltConcurrently) {
  std::vector<std::vector<float>> weights(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      Sequential<float> unseeded(4);
      unseeded.add<Dense<float>>(8);  // next_seed()
      unseeded.add<MultiHeadAttention<float>>(2);
      RandomModel<float> m = random_model<float>(90001, RandomModelOptions().steps(5));
      for (const auto& p : m.model.params())
        weights[static_cast<size_t>(i)].insert(weights[static_cast<size_t>(i)].end(), p.value, p.value + p.size());
    });
  for (auto& t : threads) t.join();
  for (int i = 1; i < kThreads; ++i) EXPECT_EQ(weights[static_cast<size_t>(i)], weights[0]);
}

}  // namespace
