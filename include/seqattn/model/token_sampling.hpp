#pragma once
/// \file
/// TokenSampler\<S>: the next token of a decoder with token outputs (sequence-to-sequence decoding step by step,
/// model/stream.hpp): greedy, or sampled among the top k logits with a temperature (keras-transformer's decode).
///
/// ```unparsed
///   TokenSampler<float> pick(TokenSamplingOptions().top_k(5).temperature(0.8).seed(1));
///   const Tensor3<float>& logits = stream.step(ids);   // (B, 1, V)
///   pick.next(logits, 0, next_ids);                    // next_ids[b]: the token of sequence b at row 0
///
/// ```
/// Rules, for one row of V logits:
///
/// ```unparsed
///   greedy       top_k == 1 or temperature == 0: the largest logit (the lowest id among equal ones);
///   sampling     the k largest logits (top_k == 0: all V; ties keep the lower id), p_i = softmax(logit_i /
///                temperature) over them, one draw from the sampler's Rng (seeded: the same seed gives the same
///                tokens). temperature < 1 sharpens the distribution, > 1 flattens it.
/// ```
/// Errors: a row with NaN or infinite logits throws Error naming the row; an empty row ShapeError; top_k \< 0 or
/// temperature \< 0 ConfigError. Scratch buffers grow to V once; a steady decode allocates nothing.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// Options of TokenSampler (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct TokenSamplingOptions {
  SEQATTN_ARG(Index, top_k, 0)  ///< 0: every token; 1: greedy
  SEQATTN_ARG(double, temperature, 1.0)  ///< 0: greedy
  /// Seed of the sampling generator.
  SEQATTN_ARG(std::uint64_t, seed, 0)
};

/// Picks the next token from a decoder's logits: greedy, or sampled among the top k with a temperature; see the
/// file documentation.
template <class S>
class TokenSampler {
 public:
  /// A sampler with these options (ConfigError for top_k \< 0 or temperature \< 0).
  explicit TokenSampler(TokenSamplingOptions options = TokenSamplingOptions())
      : options_(options), rng_(options.seed()) {
    if (options.top_k() < 0) detail::throw_config("TokenSampler: top_k must be at least 0 but got ", options.top_k());
    if (!(options.temperature() >= 0.0))
      detail::throw_config("TokenSampler: temperature must be at least 0 but got ", options.temperature());
  }

  /// True when every pick is the argmax (top_k 1 or temperature 0).
  bool greedy() const { return options_.top_k() == 1 || options_.temperature() == 0.0; }

  /// logits (V) -> the next token id in [0, V)
  Index pick(const S* logits, Index V) {
    if (V <= 0) detail::throw_shape("TokenSampler: expected at least one logit but got ", V);
    for (Index i = 0; i < V; ++i)
      if (!std::isfinite(static_cast<double>(logits[i])))
        throw Error(detail::cat("TokenSampler: logit ", i, " is ", static_cast<double>(logits[i]),
                                " (NaN or infinite logits cannot be sampled)"));
    if (greedy()) return static_cast<Index>(std::max_element(logits, logits + V) - logits);  // first maximum
    const Index k = options_.top_k() == 0 ? V : std::min(options_.top_k(), V);
    order_.resize(static_cast<std::size_t>(V));
    std::iota(order_.begin(), order_.end(), Index(0));
    const auto larger = [logits](Index a, Index b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), larger);
    probs_.resize(static_cast<std::size_t>(k));
    const double top = static_cast<double>(logits[order_[0]]), t = options_.temperature();
    double sum = 0;
    for (Index j = 0; j < k; ++j) {
      probs_[static_cast<std::size_t>(j)] = std::exp((static_cast<double>(logits[order_[static_cast<std::size_t>(j)]]) - top) / t);
      sum += probs_[static_cast<std::size_t>(j)];
    }
    double u = rng_.uniform() * sum;
    for (Index j = 0; j < k; ++j) {
      u -= probs_[static_cast<std::size_t>(j)];
      if (u < 0) return order_[static_cast<std::size_t>(j)];
    }
    return order_[static_cast<std::size_t>(k - 1)];  // rounding left u >= 0: the last candidate
  }

  /// y (B, n, V): ids[b] = pick(row `row` of sequence b), for every b.
  void next(const Tensor3<S>& y, Index row, std::vector<Index>& ids) {
    const Index B = y.dimension(0), V = y.dimension(2);
    if (row < 0 || row >= y.dimension(1))
      detail::throw_shape("TokenSampler: row ", row, " out of range for logits of shape ", shape_string(y));
    ids.resize(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) ids[static_cast<std::size_t>(b)] = pick(&y(b, row, 0), V);
  }

 private:
  TokenSamplingOptions options_;
  Rng rng_;
  std::vector<Index> order_;
  std::vector<double> probs_;
};

}  // namespace seqattn
