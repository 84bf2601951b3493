#pragma once
// The exactness check of streams (model/stream.hpp): B streams fed in random chunks of 1..max_chunk steps, each
// stream made of several sequences of random lengths (a reset between them, at other times for each stream),
// every output row compared with the model's predict over that stream's current sequence:
//   - a model that keeps time: row t of predict over the whole sequence (causal: the same as over [0, t]);
//   - a model that pools time (out_time(T) == 1): predict over the prefix [0, t].
// Tolerance: |stream - predict| <= tol * (1 + |predict|). Failures name the stream, the sequence, the step and
// the model's recipe.
//   StreamCheck check;  check.streams = 3;  check.steps = 40;
//   EXPECT_TRUE(stream_matches_predict(model, check, 1e-12, recipe));

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::testing {

struct StreamCheck {
  Index streams = 3;        // B
  Index steps = 30;         // steps fed to every stream (all streams step together)
  Index max_sequence = 12;  // a stream's sequences have 1..max_sequence steps (then it is reset)
  Index max_chunk = 4;      // chunks of 1..max_chunk steps (never across a stream's reset)
  Index vocab = 0;          // > 0: inputs are ids in [1, vocab) (a model that starts with an Embedding)
  std::uint64_t seed = 1;
  StreamOptions options = StreamOptions();
  Index* rows_checked = nullptr;  // when set, adds the number of compared output rows
};

template <class S>
::testing::AssertionResult stream_matches_predict(Sequential<S>& model, const StreamCheck& c, double tol,
                                                  const std::string& recipe = "") {
  Rng rng(c.seed * 7919 + 17);
  const Index B = c.streams, F = model.in_features(), out = model.out_features();
  const bool pooled = model.out_time(5) == 1 && model.out_time(9) == 1;
  // Each stream's input, and where its sequences start.
  std::vector<Tensor3<S>> inputs;
  std::vector<std::vector<Index>> starts(static_cast<size_t>(B));
  for (Index b = 0; b < B; ++b) {
    Tensor3<S> x(1, c.steps, F);
    for (Index i = 0; i < x.size(); ++i)
      x.data()[i] = c.vocab > 0 ? static_cast<S>(1 + rng.below(static_cast<std::uint64_t>(c.vocab - 1)))
                                : static_cast<S>(rng.uniform(-1.0, 1.0));
    inputs.push_back(x);
    for (Index t = 0; t < c.steps; t += 1 + static_cast<Index>(rng.below(static_cast<std::uint64_t>(c.max_sequence))))
      starts[static_cast<size_t>(b)].push_back(t);
  }
  auto sequence_start = [&](Index b, Index t) {  // the start of the sequence of stream b that holds step t
    const auto& s = starts[static_cast<size_t>(b)];
    return *(std::upper_bound(s.begin(), s.end(), t) - 1);
  };
  auto sequence_end = [&](Index b, Index t) {
    const auto& s = starts[static_cast<size_t>(b)];
    const auto next = std::upper_bound(s.begin(), s.end(), t);
    return next == s.end() ? c.steps : *next;
  };
  // The reference outputs of every step: (steps, out) per stream.
  std::vector<Matrix<S>> expected(static_cast<size_t>(B), Matrix<S>(c.steps, out));
  for (Index b = 0; b < B; ++b) {
    for (Index s0 : starts[static_cast<size_t>(b)]) {
      const Index s1 = sequence_end(b, s0);
      for (Index t = s0; t < s1; ++t) {
        if (!pooled && t > s0) continue;  // one predict over the whole sequence gives every row
        const Index T = pooled ? t - s0 + 1 : s1 - s0;
        Tensor3<S> x(1, T, F);
        for (Index i = 0; i < T; ++i)
          for (Index f = 0; f < F; ++f) x(0, i, f) = inputs[static_cast<size_t>(b)](0, s0 + i, f);
        const Tensor3<S>& y = model.predict(x);
        if (pooled) {
          for (Index o = 0; o < out; ++o) expected[static_cast<size_t>(b)](t, o) = y(0, 0, o);
        } else {
          for (Index i = 0; i < T; ++i)
            for (Index o = 0; o < out; ++o) expected[static_cast<size_t>(b)](s0 + i, o) = y(0, i, o);
        }
      }
    }
  }
  Stream<S> stream = model.stream(B, c.options);
  Index t = 0, rows = 0;
  while (t < c.steps) {
    Index n = 1 + static_cast<Index>(rng.below(static_cast<std::uint64_t>(c.max_chunk)));
    for (Index b = 0; b < B; ++b) {
      if (sequence_start(b, t) == t && t > 0) stream.reset(b);
      n = std::min(n, sequence_end(b, t) - t);
    }
    Tensor3<S> x(B, n, F);
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i)
        for (Index f = 0; f < F; ++f) x(b, i, f) = inputs[static_cast<size_t>(b)](0, t + i, f);
    const Tensor3<S>& y = stream.step(x);
    for (Index b = 0; b < B; ++b) {
      if (stream.steps(b) != t + n - sequence_start(b, t))
        return ::testing::AssertionFailure() << "stream " << b << " reports steps " << stream.steps(b)
                                             << " but has seen " << t + n - sequence_start(b, t) << recipe;
      for (Index i = 0; i < n; ++i, ++rows)
        for (Index o = 0; o < out; ++o) {
          const double want = static_cast<double>(expected[static_cast<size_t>(b)](t + i, o));
          const double got = static_cast<double>(y(b, i, o));
          if (!(std::abs(got - want) <= tol * (1 + std::abs(want))))
            return ::testing::AssertionFailure()
                   << "stream " << b << " step " << t + i << " (step " << t + i - sequence_start(b, t)
                   << " of its sequence, chunk of " << n << ") output " << o << ": stream " << got << " but predict "
                   << want << " (difference " << got - want << ")" << recipe;
        }
    }
    t += n;
  }
  if (c.rows_checked) *c.rows_checked += rows;
  return ::testing::AssertionSuccess();
}

}  // namespace seqattn::testing
