#pragma once
// 1-nearest-neighbour classification with dynamic time warping, the archive's reference baseline, computed here on
// the same files so every dataset has it (the published tables lack some): ucr_accuracy prints it beside the
// published values, and the three published ones it reproduces check it (GunPoint 0.907, ItalyPowerDemand 0.950,
// BasicMotions 0.975).
//
//   dtw_distance(a, len_a, b, len_b, F)   full-window DTW between two series of F channels: the cost of aligning
//                                         step i of a with step j of b is the squared Euclidean distance over the
//                                         channels (DTW_D, "dependent" warping: all channels warp together; for one
//                                         channel, the UCR archive's DTW), summed along the cheapest warping path
//   dtw_1nn_accuracy(train, test)         the fraction of test series whose nearest training series (by
//                                         dtw_distance; ties: the first) has their class
// Series are rows of Dataset::x (zero-padded, lengths in Dataset::lengths): unequal lengths are fine. Costs
// len_a * len_b * F per pair; memory two rows of len_b.

#include <algorithm>
#include <limits>
#include <vector>

#include "../examples/time_series_classifier/data.hpp"

namespace tsc {

// a (len_a, F), b (len_b, F), row-major -> the DTW distance (sum of squared differences along the best path).
inline double dtw_distance(const float* a, Index len_a, const float* b, Index len_b, Index F) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> previous(static_cast<size_t>(len_b + 1), inf), current(static_cast<size_t>(len_b + 1), inf);
  previous[0] = 0;  // D(0, 0) = 0; D(i, 0) = D(0, j) = inf for i, j > 0
  for (Index i = 1; i <= len_a; ++i) {
    current[0] = inf;
    const float* ai = a + (i - 1) * F;
    for (Index j = 1; j <= len_b; ++j) {
      const float* bj = b + (j - 1) * F;
      double cost = 0;
      for (Index f = 0; f < F; ++f) {
        const double d = static_cast<double>(ai[f]) - static_cast<double>(bj[f]);
        cost += d * d;
      }
      // D(i, j) = cost(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1))
      const double best = std::min({previous[static_cast<size_t>(j - 1)], previous[static_cast<size_t>(j)],
                                    current[static_cast<size_t>(j - 1)]});
      current[static_cast<size_t>(j)] = cost + best;
    }
    std::swap(previous, current);
  }
  return previous[static_cast<size_t>(len_b)];
}

inline double dtw_1nn_accuracy(const Dataset& train, const Dataset& test) {
  const Index F = train.features();
  const Index train_step = train.steps() * F, test_step = test.steps() * F;
  Index correct = 0;
  for (Index q = 0; q < test.size(); ++q) {
    double best = std::numeric_limits<double>::infinity();
    int label = -1;
    for (Index r = 0; r < train.size(); ++r) {
      const double d = dtw_distance(test.x.data() + q * test_step, test.lengths[static_cast<size_t>(q)],
                                    train.x.data() + r * train_step, train.lengths[static_cast<size_t>(r)], F);
      if (d < best) {
        best = d;
        label = train.labels[static_cast<size_t>(r)];
      }
    }
    correct += label == test.labels[static_cast<size_t>(q)];
  }
  return test.size() > 0 ? static_cast<double>(correct) / static_cast<double>(test.size()) : 0.0;
}

}  // namespace tsc
