// Step masks (core/mask.hpp: holes, left padding) in the losses and metrics (loss/*): only the kept steps count.
// Each loss with a random step mask equals the loss of the compacted batch (kept steps moved to the front, as
// lengths), its gradient is 0 at masked steps and its value and kept gradients are bitwise unchanged when the
// predictions and targets at masked steps become garbage (NaN, out-of-range labels and targets); a step mask
// built for another T is a ShapeError naming the loss.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/loss/binary_cross_entropy.hpp"
#include "seqattn/loss/cross_entropy.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/loss/metrics.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::masked_nonzero;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

constexpr Index kB = 5, kT = 6, kC = 3;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The kept steps of every sequence moved to the front (padding: `pad`), and their lengths.
Tensor3<double> compact(const Tensor3<double>& x, const Mask& mask, double pad, std::vector<Index>& lengths) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  Tensor3<double> out(B, T, F);
  out.setConstant(pad);
  lengths.assign(static_cast<size_t>(B), 0);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      if (mask.valid(b, t, T)) {
        Index& n = lengths[static_cast<size_t>(b)];
        for (Index f = 0; f < F; ++f) out(b, n, f) = x(b, t, f);
        ++n;
      }
  return out;
}
std::vector<int> compact_labels(const std::vector<int>& labels, const Mask& mask, Index B, Index T) {
  std::vector<int> out(labels.size(), -1);
  for (Index b = 0; b < B; ++b) {
    Index n = 0;
    for (Index t = 0; t < T; ++t)
      if (mask.valid(b, t, T)) out[static_cast<size_t>(b * T + n++)] = labels[static_cast<size_t>(b * T + t)];
  }
  return out;
}
// Compacted gradient rows moved back to the kept steps, 0 elsewhere.
Tensor3<double> expand(const Tensor3<double>& g, const Mask& mask) {
  const Index B = g.dimension(0), T = g.dimension(1), F = g.dimension(2);
  Tensor3<double> out(B, T, F);
  out.setZero();
  for (Index b = 0; b < B; ++b) {
    Index n = 0;
    for (Index t = 0; t < T; ++t)
      if (mask.valid(b, t, T)) {
        for (Index f = 0; f < F; ++f) out(b, t, f) = g(b, n, f);
        ++n;
      }
  }
  return out;
}
void expect_near(const Tensor3<double>& a, const Tensor3<double>& b, double tol) {
  for (Index i = 0; i < a.size(); ++i) EXPECT_NEAR(a.data()[i], b.data()[i], tol) << i;
}

}  // namespace

TEST(StepMasksLosses, MeanSquaredErrorOverKeptSteps) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    const Mask mask = random_step_mask(kB, kT, seed);
    const Tensor3<double> p = random_tensor(kB, kT, kC, 10 + seed), y = random_tensor(kB, kT, kC, 20 + seed);
    MeanSquaredError<double> loss, ref;
    const double l = loss.forward(p, y, mask);
    std::vector<Index> lengths;
    const Tensor3<double> pc = compact(p, mask, kNaN, lengths), yc = compact(y, mask, kNaN, lengths);
    EXPECT_NEAR(l, ref.forward(pc, yc, Mask(lengths)), 1e-15);
    EXPECT_EQ(loss.valid_count(), ref.valid_count());
    expect_near(loss.grad(), expand(ref.grad(), mask), 1e-15);
    const Tensor3<double> g = loss.grad();
    EXPECT_EQ(masked_nonzero(g, mask), "");
    // NaN predictions and targets at masked steps are never read
    const auto nan = [](Index) { return kNaN; };
    EXPECT_EQ(loss.forward(with_masked_values(p, mask, nan), with_masked_values(y, mask, nan), mask), l);
    EXPECT_TRUE(same_kept_steps(g, Mask(), loss.grad(), Mask()));
  }
}

TEST(StepMasksLosses, BinaryCrossEntropyOverKeptSteps) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    const Mask mask = random_step_mask(kB, kT, seed);
    const Tensor3<double> z = random_tensor(kB, kT, kC, 10 + seed);
    Tensor3<double> y = random_tensor(kB, kT, kC, 20 + seed);
    for (Index i = 0; i < y.size(); ++i) y.data()[i] = std::abs(y.data()[i]);
    BinaryCrossEntropy<double> loss, ref;
    const double l = loss.forward(z, y, mask);
    std::vector<Index> lengths;
    const Tensor3<double> zc = compact(z, mask, 0.0, lengths), yc = compact(y, mask, 0.0, lengths);
    EXPECT_NEAR(l, ref.forward(zc, yc, Mask(lengths)), 1e-15);
    expect_near(loss.grad(), expand(ref.grad(), mask), 1e-15);
    const Tensor3<double> g = loss.grad();
    EXPECT_EQ(masked_nonzero(g, mask), "");
    // targets outside [0, 1] (and NaN) at masked steps are neither checked nor read
    const Tensor3<double> z2 = with_masked_values(z, mask, [](Index) { return kNaN; });
    const Tensor3<double> y2 = with_masked_values(y, mask, [](Index i) { return i % 2 ? 7.0 : kNaN; });
    EXPECT_EQ(loss.forward(z2, y2, mask), l);
    EXPECT_TRUE(same_kept_steps(g, Mask(), loss.grad(), Mask()));
  }
}

TEST(StepMasksLosses, CrossEntropyAndMetricsOverKeptSteps) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    const Mask mask = random_step_mask(kB, kT, seed);
    const Tensor3<double> z = random_tensor(kB, kT, kC, 10 + seed);
    Rng rng(30 + seed);
    std::vector<int> labels(static_cast<size_t>(kB * kT));
    for (Index b = 0; b < kB; ++b)
      for (Index t = 0; t < kT; ++t)  // masked steps: labels out of range, never read nor checked
        labels[static_cast<size_t>(b * kT + t)] = mask.valid(b, t, kT) ? static_cast<int>(rng.below(kC)) : -7;
    SoftmaxCrossEntropy<double> loss, ref;
    const double l = loss.forward(z, labels, mask);
    std::vector<Index> lengths;
    const Tensor3<double> zc = compact(z, mask, 0.0, lengths);
    const std::vector<int> lc = compact_labels(labels, mask, kB, kT);
    EXPECT_NEAR(l, ref.forward(zc, lc, Mask(lengths)), 1e-15);
    expect_near(loss.grad(), expand(ref.grad(), mask), 1e-15);
    const Tensor3<double> g = loss.grad();
    EXPECT_EQ(masked_nonzero(g, mask), "");
    const Tensor3<double> z2 = with_masked_values(z, mask, [](Index) { return kNaN; });
    EXPECT_EQ(loss.forward(z2, labels, mask), l);
    EXPECT_TRUE(same_kept_steps(g, Mask(), loss.grad(), Mask()));

    EXPECT_EQ(accuracy(z2, labels, mask), accuracy(zc, lc, Mask(lengths)));
    const std::vector<int> am = argmax_labels(z2, mask);
    for (Index b = 0; b < kB; ++b)
      for (Index t = 0; t < kT; ++t)
        if (!mask.valid(b, t, kT)) {
          EXPECT_EQ(am[static_cast<size_t>(b * kT + t)], -1) << b << " " << t;
        }
  }
  // hand-computed accuracy: kept steps (0,0) right, (0,2) wrong, (1,1) right; masked (0,1) would be wrong
  Tensor3<double> z(2, 3, 2);
  z.setValues({{{1, 0}, {1, 0}, {0, 1}}, {{0, 0}, {0, 1}, {0, 0}}});
  EXPECT_DOUBLE_EQ(accuracy(z, {0, 1, 0, 9, 1, 9}, Mask::from_steps({{1, 0, 1}, {0, 1, 0}})), 2.0 / 3.0);
}

TEST(StepMasksLosses, AStepMaskForAnotherTIsRefused) {
  const Mask mask = random_step_mask(kB, kT + 1, 4);
  const Tensor3<double> z = random_tensor(kB, kT, kC, 1);
  const std::vector<int> labels(static_cast<size_t>(kB * kT), 0);
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const ShapeError& e) {
      return std::string(e.what());
    }
    return std::string("no ShapeError");
  };
  const std::string want = ": step mask has 7 steps but the input has 6";
  MeanSquaredError<double> mse;
  BinaryCrossEntropy<double> bce;
  SoftmaxCrossEntropy<double> ce;
  EXPECT_EQ(message([&] { mse.forward(z, z, mask); }), "MeanSquaredError" + want);
  EXPECT_EQ(message([&] { bce.forward(z, z, mask); }), "BinaryCrossEntropy" + want);
  EXPECT_EQ(message([&] { ce.forward(z, labels, mask); }), "SoftmaxCrossEntropy" + want);
  EXPECT_EQ(message([&] { accuracy(z, labels, mask); }), "accuracy" + want);
  EXPECT_EQ(message([&] { argmax_labels(z, mask); }), "argmax_labels" + want);
}
