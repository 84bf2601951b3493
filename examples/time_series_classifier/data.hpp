#pragma once
// Data sets of the time-series classifier example, and the built-in synthetic tasks.
//
// Dataset: N labelled sequences stored zero-padded in x (N, T, F) with their valid lengths (right padding)
// and class indices in [0, classes). make_batch copies a slice of it into a (B, T_batch, F) batch with a Mask.
// Missing values (the UCR/UEA loaders, ucr.hpp): x holds 0 there (never NaN) and `missing` marks them, one flag
// per value of x; impute_missing fills them by linear interpolation within each channel (see there).
//
// Synthetic tasks (every value drawn from the seeded seqattn::Rng: the same seed gives the same data):
//   1 uniform       class A: every step uniform in [0, 1]; class B: uniform in [1, 2]. One feature.
//   2 halves        class A: first half in [0, 1], second half in [1, 2]; class B: the reverse. Both classes
//                   have the same values in a different order: a model that cannot see positions (attention
//                   and pooling without positional encoding are permutation invariant) stays at chance.
//   3 signal        only step `signal_step` decides: in [0, 1] for A, in [1, 2] for B; every other step is
//                   noise uniform in [0, 2], so the deciding value looks like noise unless the model knows
//                   where it is (it needs the positional encoding).
//   4 multivariate  3 features, lengths uniform in [steps / 3, steps] (padding and masks exercised). Every
//                   feature is Gaussian noise (stddev 0.5); class c adds a sine of amplitude 1 (random period
//                   5..10 steps, random phase) to feature c.
// Errors are DataError (std::runtime_error); loaders add "file:line: " in front of their messages.

#include <seqattn/core/mask.hpp>
#include <seqattn/core/random.hpp>
#include <seqattn/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tsc {

using seqattn::Index;

class DataError : public std::runtime_error {
 public:
  explicit DataError(const std::string& what) : std::runtime_error(what) {}
};

struct Dataset {
  seqattn::Tensor3<float> x;            // (N, T, F), zero at padded steps
  std::vector<Index> lengths;           // (N) valid steps of each sequence
  std::vector<int> labels;              // (N) class indices
  std::vector<std::string> class_names;  // (classes)
  std::vector<std::uint8_t> missing;     // (N*T*F) like x: 1 where the value was missing (x is 0 there); empty when
                                         // none is

  Index size() const { return static_cast<Index>(labels.size()); }
  Index steps() const { return x.dimension(1); }
  Index features() const { return x.dimension(2); }
  Index classes() const { return static_cast<Index>(class_names.size()); }
  Index max_length() const { return lengths.empty() ? 0 : *std::max_element(lengths.begin(), lengths.end()); }
  bool has_missing() const { return std::find(missing.begin(), missing.end(), 1) != missing.end(); }
  // Whether value (i, t, f) was missing.
  bool is_missing(Index i, Index t, Index f) const {
    return !missing.empty() && missing[static_cast<size_t>((i * steps() + t) * features() + f)] != 0;
  }
};

// Fills the missing values of d (Dataset::missing) and clears the mask; returns how many were filled. Rule, for each
// sequence and each channel (feature) on its own, over the valid steps [0, length):
//   - a missing value between two present values of the channel is their linear interpolation by step:
//     x[t] = x[a] + (x[b] - x[a]) * (t - a) / (b - a), a < t < b the nearest present steps;
//   - before the first present value, or after the last one, the nearest present value is carried;
//   - a channel with no present value in the sequence becomes 0.
// Call it after standardize (which leaves missing values out of its statistics and at 0), so a channel without
// values becomes the training mean; called before, such a channel is a raw 0. Padded steps stay 0.
inline Index impute_missing(Dataset& d) {
  if (d.missing.empty()) return 0;
  const Index T = d.steps(), F = d.features();
  Index filled = 0;
  for (Index i = 0; i < d.size(); ++i) {
    const Index len = d.lengths[static_cast<size_t>(i)];
    for (Index f = 0; f < F; ++f) {
      const auto gone = [&](Index t) { return d.missing[static_cast<size_t>((i * T + t) * F + f)] != 0; };
      Index prev = -1;  // the last present step before t
      for (Index t = 0; t < len; ++t) {
        if (!gone(t)) {
          prev = t;
          continue;
        }
        Index next = t + 1;
        while (next < len && gone(next)) ++next;
        for (Index s = t; s < next; ++s, ++filled) {
          float v = 0.0f;
          if (prev >= 0 && next < len) {
            const double a = d.x(i, prev, f), b = d.x(i, next, f);
            v = static_cast<float>(a + (b - a) * static_cast<double>(s - prev) / static_cast<double>(next - prev));
          } else if (prev >= 0) {
            v = d.x(i, prev, f);
          } else if (next < len) {
            v = d.x(i, next, f);
          }
          d.x(i, s, f) = v;
        }
        t = next - 1;
      }
    }
  }
  d.missing.clear();
  return filled;
}

enum class Task { Uniform = 1, Halves = 2, Signal = 3, Multivariate = 4 };

inline const char* task_name(Task task) {
  switch (task) {
    case Task::Uniform: return "uniform";
    case Task::Halves: return "halves";
    case Task::Signal: return "signal";
    case Task::Multivariate: return "multivariate";
  }
  return "?";
}

// "1".."4" or a task name -> Task; DataError otherwise.
inline Task parse_task(const std::string& text) {
  for (int i = 1; i <= 4; ++i) {
    const Task task = static_cast<Task>(i);
    if (text == std::to_string(i) || text == task_name(task)) return task;
  }
  throw DataError("unknown task '" + text + "' (expected 1-4, uniform, halves, signal or multivariate)");
}

// The step that decides the class in task 3 for sequences of `steps` steps.
inline Index default_signal_step(Index steps) { return steps / 3; }

// n sequences of task `task` with `steps` steps (the maximum length for task 4).
inline Dataset make_task(Task task, Index n, Index steps, std::uint64_t seed) {
  const Index min_steps = task == Task::Halves ? 2 : 1;
  if (n <= 0 || steps < min_steps)
    throw DataError("make_task(" + std::string(task_name(task)) + "): expected at least 1 sequence and " +
                    std::to_string(min_steps) + " steps but got " + std::to_string(n) + " sequences of " +
                    std::to_string(steps) + " steps");
  seqattn::Rng rng(seed);
  const Index F = task == Task::Multivariate ? 3 : 1;
  Dataset d;
  d.x.resize(n, steps, F);
  d.x.setZero();
  if (task == Task::Multivariate)
    d.class_names = {"sine in feature 0", "sine in feature 1", "sine in feature 2"};
  else
    d.class_names = {"A", "B"};
  const Index signal_step = default_signal_step(steps);
  for (Index i = 0; i < n; ++i) {
    const int label = static_cast<int>(rng.below(static_cast<std::uint64_t>(d.class_names.size())));
    Index length = steps;
    if (task == Task::Multivariate) {
      const Index shortest = std::max<Index>(1, steps / 3);
      length = shortest + static_cast<Index>(rng.below(static_cast<std::uint64_t>(steps - shortest + 1)));
      const double period = rng.uniform(5.0, 10.0), phase = rng.uniform(0.0, 6.283185307179586);
      for (Index t = 0; t < length; ++t)
        for (Index f = 0; f < F; ++f) {
          double v = rng.normal(0.0, 0.5);
          if (f == label) v += std::sin(6.283185307179586 * static_cast<double>(t) / period + phase);
          d.x(i, t, f) = static_cast<float>(v);
        }
    } else {
      for (Index t = 0; t < length; ++t) {
        double lo = 0.0;  // the value is drawn uniform in [lo, lo + 1] (noise: [0, 2])
        double width = 1.0;
        if (task == Task::Uniform) lo = label;
        if (task == Task::Halves) lo = (t < steps / 2) == (label == 0) ? 0.0 : 1.0;
        if (task == Task::Signal) {
          lo = t == signal_step ? label : 0.0;
          width = t == signal_step ? 1.0 : 2.0;
        }
        d.x(i, t, 0) = static_cast<float>(rng.uniform(lo, lo + width));
      }
    }
    d.lengths.push_back(length);
    d.labels.push_back(label);
  }
  return d;
}

// Copies sequences order[begin, end) of d into x (end - begin, T_batch, F), where T_batch is the longest
// length among them, or pad_to when that is larger. Padded steps get pad_value (they never change valid
// outputs; tests fill them with garbage to prove it). lengths -> mask; labels of the batch -> labels.
inline void make_batch(const Dataset& d, const std::vector<Index>& order, Index begin, Index end,
                       seqattn::Tensor3<float>& x, seqattn::Mask& mask, std::vector<int>& labels, Index pad_to = 0,
                       float pad_value = 0.0f) {
  const Index F = d.features(), T = d.steps();
  Index T_batch = std::max<Index>(pad_to, 1);
  for (Index j = begin; j < end; ++j)
    T_batch = std::max(T_batch, d.lengths[static_cast<size_t>(order[static_cast<size_t>(j)])]);
  seqattn::ensure_shape(x, end - begin, T_batch, F);
  std::vector<Index> lengths;
  labels.clear();
  for (Index j = begin; j < end; ++j) {
    const Index i = order[static_cast<size_t>(j)], len = d.lengths[static_cast<size_t>(i)];
    float* dst = x.data() + (j - begin) * T_batch * F;
    std::copy(d.x.data() + i * T * F, d.x.data() + (i * T + len) * F, dst);
    std::fill(dst + len * F, dst + T_batch * F, pad_value);
    lengths.push_back(len);
    labels.push_back(d.labels[static_cast<size_t>(i)]);
  }
  const bool padded = std::any_of(lengths.begin(), lengths.end(), [&](Index len) { return len < T_batch; });
  mask = padded ? seqattn::Mask::from_lengths(lengths) : seqattn::Mask();
}

// DataError unless d is consistent: one length and one label per sequence, lengths in [0, steps] and (when
// check_labels) labels in [0, classes). `who` starts the message.
inline void check_consistent(const Dataset& d, const std::string& who, bool check_labels = true) {
  if (static_cast<Index>(d.lengths.size()) != d.size() || d.x.dimension(0) != d.size())
    throw DataError(who + ": expected one length and one label per sequence (" + std::to_string(d.x.dimension(0)) +
                    ") but got " + std::to_string(d.lengths.size()) + " lengths and " + std::to_string(d.size()) +
                    " labels");
  if (!d.missing.empty() && static_cast<Index>(d.missing.size()) != d.x.size())
    throw DataError(who + ": expected a missing-value mask of " + std::to_string(d.x.size()) +
                    " flags (one per value) or none but got " + std::to_string(d.missing.size()));
  for (Index i = 0; i < d.size(); ++i) {
    const Index len = d.lengths[static_cast<size_t>(i)];
    const int label = d.labels[static_cast<size_t>(i)];
    if (len < 0 || len > d.steps())
      throw DataError(who + ": sequence " + std::to_string(i) + " has length " + std::to_string(len) +
                      ", expected one in [0, " + std::to_string(d.steps()) + "]");
    if (check_labels && (label < 0 || label >= d.classes()))
      throw DataError(who + ": sequence " + std::to_string(i) + " has class " + std::to_string(label) +
                      ", expected one in [0, " + std::to_string(d.classes()) + ")");
  }
}

// Checks that a model trained on `train` can evaluate `test` before any work is done with them: the same number
// of features per step and the same classes (same names, same order: load the test set with the training set's
// class names). Both sets must be consistent (check_consistent). Lengths may differ (batches are padded and
// masked); the return value is a note when the test set has longer sequences than any training sequence (the
// model never saw those positions), else "". DataError naming both sets and both values otherwise, e.g.
//   "--test b.ts has 6 features (dimensions) per step but --train a.tsv has 1; both must have the same"
inline std::string check_compatible(const Dataset& train, const Dataset& test, const std::string& train_name,
                                    const std::string& test_name) {
  check_consistent(train, train_name);
  check_consistent(test, test_name);
  if (train.features() != test.features())
    throw DataError(test_name + " has " + std::to_string(test.features()) +
                    (test.features() == 1 ? " feature (dimension)" : " features (dimensions)") + " per step but " +
                    train_name + " has " + std::to_string(train.features()) + "; both must have the same");
  if (train.class_names != test.class_names) {
    const auto list = [](const std::vector<std::string>& names) {
      std::string out;
      for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
      return out;
    };
    throw DataError(test_name + " has the classes (" + list(test.class_names) + ") but " + train_name + " has (" +
                    list(train.class_names) + "); load the test set with the training set's classes");
  }
  if (test.max_length() > train.max_length())
    return "note: " + test_name + " has sequences of up to " + std::to_string(test.max_length()) +
           " steps, longer than any of " + train_name + " (" + std::to_string(train.max_length()) +
           "): the model never saw those positions in training";
  return "";
}

// The per-feature statistics standardize used: x -> (x - mean) / stddev (stddev 1 for a constant feature).
// A deploying program applies them to its raw inputs (the example saves them with the model).
struct Normalization {
  std::vector<double> mean, stddev;  // (F)
};

// Standardizes every feature with the mean and standard deviation of the valid steps of `fit` (a training
// set), applied to each data set in `targets` (pass the training set too). Padded steps stay 0; missing values
// (Dataset::missing) are left out of the statistics and stay 0 (the mean, once standardized: impute_missing
// after this). Every target must have fit's number of features and consistent lengths (DataError otherwise,
// before anything changes). Returns the statistics (mean 0 and stddev 1 for a feature without any value).
inline Normalization standardize(const Dataset& fit, const std::vector<Dataset*>& targets) {
  const Index F = fit.features();
  check_consistent(fit, "standardize: the fitted set", false);
  for (size_t k = 0; k < targets.size(); ++k) {
    if (targets[k] == nullptr) throw DataError("standardize: target " + std::to_string(k) + " is null");
    if (targets[k]->features() != F)
      throw DataError("standardize: target " + std::to_string(k) + " expected " + std::to_string(F) +
                      " features (those of the fitted set) but got " + std::to_string(targets[k]->features()));
    check_consistent(*targets[k], "standardize: target " + std::to_string(k), false);
  }
  std::vector<double> sum(static_cast<size_t>(F), 0.0), sq(static_cast<size_t>(F), 0.0),
      count(static_cast<size_t>(F), 0.0);
  for (Index i = 0; i < fit.size(); ++i)
    for (Index t = 0; t < fit.lengths[static_cast<size_t>(i)]; ++t)
      for (Index f = 0; f < F; ++f) {
        if (fit.is_missing(i, t, f)) continue;
        const double v = fit.x(i, t, f);
        sum[static_cast<size_t>(f)] += v;
        sq[static_cast<size_t>(f)] += v * v;
        count[static_cast<size_t>(f)] += 1;
      }
  Normalization n;
  for (Index f = 0; f < F; ++f) {
    const double c = count[static_cast<size_t>(f)];
    const double mean = c > 0 ? sum[static_cast<size_t>(f)] / c : 0.0;
    const double var = c > 0 ? std::max(0.0, sq[static_cast<size_t>(f)] / c - mean * mean) : 1.0;
    n.mean.push_back(mean);
    n.stddev.push_back(var > 1e-12 ? std::sqrt(var) : 1.0);
  }
  for (Dataset* d : targets) {
    for (Index i = 0; i < d->size(); ++i)
      for (Index t = 0; t < d->lengths[static_cast<size_t>(i)]; ++t)
        for (Index f = 0; f < F; ++f) {
          if (d->is_missing(i, t, f)) continue;
          d->x(i, t, f) = static_cast<float>((d->x(i, t, f) - n.mean[static_cast<size_t>(f)]) /
                                             n.stddev[static_cast<size_t>(f)]);
        }
  }
  return n;
}

// The sequences `indices` of d, in that order (with their missing-value flags).
inline Dataset subset(const Dataset& d, const std::vector<Index>& indices) {
  Dataset out;
  out.class_names = d.class_names;
  out.x.resize(static_cast<Index>(indices.size()), d.steps(), d.features());
  const Index step = d.steps() * d.features();
  if (!d.missing.empty()) out.missing.resize(static_cast<size_t>(out.x.size()));
  for (size_t j = 0; j < indices.size(); ++j) {
    const Index i = indices[j];
    std::copy(d.x.data() + i * step, d.x.data() + (i + 1) * step, out.x.data() + static_cast<Index>(j) * step);
    if (!d.missing.empty())
      std::copy(d.missing.begin() + i * step, d.missing.begin() + (i + 1) * step,
                out.missing.begin() + static_cast<Index>(j) * step);
    out.lengths.push_back(d.lengths[static_cast<size_t>(i)]);
    out.labels.push_back(d.labels[static_cast<size_t>(i)]);
  }
  return out;
}

// Splits d into (train, test): the last round(n * test_fraction) sequences of a seeded shuffle go to test.
inline std::pair<Dataset, Dataset> split(const Dataset& d, double test_fraction, std::uint64_t seed) {
  if (d.size() < 2)
    throw DataError("split: need at least 2 sequences to make a test set but got " + std::to_string(d.size()));
  std::vector<Index> order(static_cast<size_t>(d.size()));
  for (Index i = 0; i < d.size(); ++i) order[static_cast<size_t>(i)] = i;
  seqattn::Rng rng(seed);
  for (Index i = d.size() - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
  const Index n_test = std::clamp<Index>(static_cast<Index>(std::lround(test_fraction * d.size())), 1, d.size() - 1);
  const auto cut = order.end() - n_test;
  return {subset(d, std::vector<Index>(order.begin(), cut)), subset(d, std::vector<Index>(cut, order.end()))};
}

}  // namespace tsc
