#pragma once
/// \file
/// Building a Tensor3 (batch, time, features) from the caller's data, and reading it back:
///
/// ```unparsed
///   tensor3<S>(B, T, F, values)      values: B*T*F numbers in (b, t, f) order, the last index fastest (the
///                                     tensor's own row-major layout); a std::vector<S> or a pointer and a count.
///   tensor3<S>({{{1, 2}, {3, 4}}})    nested lists: sequences, their steps, each step's features; every sequence
///                                     has the same number of steps and every step the same number of features.
///   pad_batch<S>(sequences, pad)     sequences of different lengths (each a vector of steps, each step a vector of
///                                     features) -> PaddedBatch {x (B, max length, F) right-padded with `pad`, mask
///                                     Mask(lengths)}: what a layer takes for a variable-length batch.
///   to_vector(x)                     the B*T*F values in the same order.
/// ```
/// Sizes that do not match throw ShapeError naming the builder, the expected and the received size (the sequence
/// and step where a nested list differs). Sizes must be positive; their product is checked for overflow before
/// anything is allocated.

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/memory_limit.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {
namespace detail {

inline void check_tensor3_dims(const char* who, Index B, Index T, Index F) {
  if (B <= 0 || T <= 0 || F <= 0)
    throw_shape(who, ": sizes expected positive (B, T, F) but got ", shape_string(B, T, F));
  checked_product(who, "B x T x F", {B, T, F});
}

}  // namespace detail

/// (B, T, F) from B*T*F values in (b, t, f) order.
template <class S>
Tensor3<S> tensor3(Index B, Index T, Index F, const S* values, std::size_t count) {
  detail::check_tensor3_dims("tensor3", B, T, F);
  if (static_cast<std::size_t>(B * T * F) != count)
    detail::throw_shape("tensor3: ", shape_string(B, T, F), " expected B*T*F = ", B * T * F, " values but got ",
                        count);
  Tensor3<S> x(B, T, F);
  std::copy(values, values + count, x.data());
  return x;
}
/// A (B, T, F) tensor of these values (row-major; ShapeError unless there are B*T*F).
template <class S>
Tensor3<S> tensor3(Index B, Index T, Index F, const std::vector<S>& values) {
  return tensor3<S>(B, T, F, values.data(), values.size());
}

/// Nested lists: tensor3\<float>({{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}) is (2, 2, 2).
template <class S>
Tensor3<S> tensor3(std::initializer_list<std::initializer_list<std::initializer_list<S>>> sequences) {
  const Index B = static_cast<Index>(sequences.size());
  const Index T = B > 0 ? static_cast<Index>(sequences.begin()->size()) : 0;
  const Index F = T > 0 ? static_cast<Index>(sequences.begin()->begin()->size()) : 0;
  detail::check_tensor3_dims("tensor3 (nested lists)", B, T, F);
  Tensor3<S> x(B, T, F);
  S* out = x.data();
  Index b = 0;
  for (const auto& sequence : sequences) {
    if (static_cast<Index>(sequence.size()) != T)
      detail::throw_shape("tensor3 (nested lists): sequence ", b, " expected ", T, " steps (as sequence 0) but got ",
                          sequence.size());
    Index t = 0;
    for (const auto& step : sequence) {
      if (static_cast<Index>(step.size()) != F)
        detail::throw_shape("tensor3 (nested lists): sequence ", b, " step ", t, " expected ", F,
                            " features (as step 0 of sequence 0) but got ", step.size());
      out = std::copy(step.begin(), step.end(), out);
      ++t;
    }
    ++b;
  }
  return x;
}

/// A variable-length batch: x right-padded to the longest sequence, and the lengths as its mask.
template <class S>
struct PaddedBatch {
  Tensor3<S> x;  ///< (B, max length, F)
  Mask mask;  ///< Mask(lengths)
};

/// sequences[b][t][f]: B sequences of at least one step; every step has the same number of features.
template <class S>
PaddedBatch<S> pad_batch(const std::vector<std::vector<std::vector<S>>>& sequences, S pad = S(0)) {
  const Index B = static_cast<Index>(sequences.size());
  if (B == 0) detail::throw_shape("pad_batch: expected at least one sequence but got none");
  Index T = 0, F = -1;
  std::vector<Index> lengths(static_cast<size_t>(B));
  for (Index b = 0; b < B; ++b) {
    const auto& sequence = sequences[static_cast<size_t>(b)];
    if (sequence.empty()) detail::throw_shape("pad_batch: sequence ", b, " expected at least one step but has none");
    lengths[static_cast<size_t>(b)] = static_cast<Index>(sequence.size());
    T = std::max(T, static_cast<Index>(sequence.size()));
    for (size_t t = 0; t < sequence.size(); ++t) {
      const Index f = static_cast<Index>(sequence[t].size());
      if (F < 0) F = f;
      if (f != F)
        detail::throw_shape("pad_batch: sequence ", b, " step ", t, " expected ", F,
                            " features (as step 0 of sequence 0) but got ", f);
    }
  }
  detail::check_tensor3_dims("pad_batch", B, T, F);
  PaddedBatch<S> batch{Tensor3<S>(B, T, F), Mask(std::move(lengths))};
  batch.x.setConstant(pad);
  for (Index b = 0; b < B; ++b) {
    const auto& sequence = sequences[static_cast<size_t>(b)];
    for (size_t t = 0; t < sequence.size(); ++t)
      std::copy(sequence[t].begin(), sequence[t].end(), &batch.x(b, static_cast<Index>(t), 0));
  }
  return batch;
}

/// The B*T*F values of x in (b, t, f) order.
template <class S>
std::vector<S> to_vector(const Tensor3<S>& x) {
  return std::vector<S>(x.data(), x.data() + x.size());
}

}  // namespace seqattn
