// Quick start: classify noisy multivariate time series of different lengths.
// Each sequence is one of three waveforms (slow sine, fast sine, square wave) with a random period, phase and
// amplitude, plus noise; its two features per step are the value and its change since the previous step.
// Lengths vary from 20 to 60 steps (right padding, described by a Mask). The model projects every step
// (Dense + ReLU), averages the valid steps (GlobalAvgPool) and classifies the average (Dense), trained with
// softmax cross-entropy and Adam. Runs in a few seconds: ./build.sh example
#include <seqattn/seqattn.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

using namespace seqattn;

constexpr Index kMaxSteps = 60, kFeatures = 2, kClasses = 3;
const char* const kClassNames[kClasses] = {"slow sine", "fast sine", "square wave"};

// A labelled data set: x (N, kMaxSteps, kFeatures) zero-padded, lengths (N), labels (N).
struct Dataset {
  Tensor3<float> x;
  std::vector<Index> lengths;
  std::vector<int> labels;
  Index size() const { return static_cast<Index>(labels.size()); }
};

Dataset make_dataset(Index n, std::uint64_t seed) {
  Rng rng(seed);
  Dataset d{Tensor3<float>(n, kMaxSteps, kFeatures), {}, {}};
  d.x.setZero();
  for (Index i = 0; i < n; ++i) {
    const int label = static_cast<int>(rng.below(kClasses));
    const Index length = 20 + static_cast<Index>(rng.below(kMaxSteps - 20 + 1));
    const double period = label == 1 ? rng.uniform(4, 8) : rng.uniform(14, 28);
    const double phase = rng.uniform(0, 6.283185307), amplitude = rng.uniform(0.6, 1.4);
    double previous = 0;
    for (Index t = 0; t < length; ++t) {
      const double wave = std::sin(6.283185307 * static_cast<double>(t) / period + phase);
      const double value = amplitude * (label == 2 ? (wave >= 0 ? 1.0 : -1.0) : wave) + rng.normal(0, 0.25);
      d.x(i, t, 0) = static_cast<float>(value);
      d.x(i, t, 1) = static_cast<float>(t == 0 ? 0.0 : value - previous);
      previous = value;
    }
    d.lengths.push_back(length);
    d.labels.push_back(label);
  }
  return d;
}

// Copies the samples order[begin, end) of d into a batch (x, mask, labels).
void make_batch(const Dataset& d, const std::vector<Index>& order, Index begin, Index end, Tensor3<float>& x,
                Mask& mask, std::vector<int>& labels) {
  const Index step = kMaxSteps * kFeatures;
  x.resize(end - begin, kMaxSteps, kFeatures);
  std::vector<Index> lengths;
  labels.clear();
  for (Index j = begin; j < end; ++j) {
    const Index i = order[static_cast<size_t>(j)];
    std::copy(d.x.data() + i * step, d.x.data() + (i + 1) * step, x.data() + (j - begin) * step);
    lengths.push_back(d.lengths[static_cast<size_t>(i)]);
    labels.push_back(d.labels[static_cast<size_t>(i)]);
  }
  mask = Mask::from_lengths(lengths);
}

int main() {
  manual_seed(2024);  // the same weights and results on every run
  const Dataset train = make_dataset(600, 1), test = make_dataset(300, 2);

  Sequential<float> model(kFeatures);
  model.add<Dense<float>>(32, Activation::ReLU);  // (B, T, 2) -> (B, T, 32), every step
  model.add<GlobalAvgPool<float>>();              // -> (B, 1, 32), mean over the valid steps
  model.add<Dense<float>>(kClasses);              // -> (B, 1, 3) logits
  std::printf("%s", model.summary(kMaxSteps).c_str());

  SoftmaxCrossEntropy<float> loss;
  Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
  const Index batch_size = 32, epochs = 20;
  std::vector<Index> order(static_cast<size_t>(train.size()));
  std::iota(order.begin(), order.end(), Index{0});
  Rng shuffle_rng(7);
  Tensor3<float> x;
  Mask mask;
  std::vector<int> labels;

  for (Index epoch = 1; epoch <= epochs; ++epoch) {
    for (Index i = train.size() - 1; i > 0; --i)  // Fisher-Yates shuffle
      std::swap(order[static_cast<size_t>(i)], order[shuffle_rng.below(static_cast<std::uint64_t>(i + 1))]);
    double loss_sum = 0, correct = 0;
    for (Index begin = 0; begin < train.size(); begin += batch_size) {
      const Index end = std::min(begin + batch_size, train.size());
      make_batch(train, order, begin, end, x, mask, labels);
      model.zero_grad();
      const Tensor3<float>& logits = model.forward(x, mask, Mode::Train);  // (B, 1, 3)
      loss_sum += loss.forward(logits, labels) * static_cast<double>(end - begin);
      correct += accuracy(logits, labels) * static_cast<double>(end - begin);
      model.backward(loss.grad());
      adam.step();
    }
    std::printf("epoch %2ld  loss %.4f  train accuracy %.3f\n", static_cast<long>(epoch),
                loss_sum / static_cast<double>(train.size()), correct / static_cast<double>(train.size()));
  }

  std::vector<Index> all(static_cast<size_t>(test.size()));
  std::iota(all.begin(), all.end(), Index{0});
  make_batch(test, all, 0, test.size(), x, mask, labels);
  const Tensor3<float>& logits = model.predict(x, mask);
  const std::vector<int> predicted = argmax_labels(logits);
  std::printf("test accuracy %.3f on %ld sequences\n", accuracy(logits, labels), static_cast<long>(test.size()));
  for (Index i = 0; i < 3; ++i)
    std::printf("  sequence %ld (%ld steps): %s, predicted %s\n", static_cast<long>(i),
                static_cast<long>(mask.length(i, kMaxSteps)), kClassNames[labels[static_cast<size_t>(i)]],
                kClassNames[predicted[static_cast<size_t>(i)]]);
  return 0;
}
