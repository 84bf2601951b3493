#pragma once
/// \file
/// Which samples every process reads, identical on every process without any communication: the order of an
/// epoch, its global batches, the chunks of a batch and the chunks of each process (rank).
///
/// ```unparsed
///   std::vector<Index> order = epoch_order(samples, seed, epoch);   a permutation of [0, samples): Fisher-Yates
///                                                                   from mix_seed(seed, epoch), the same everywhere
///   Index batches = batch_count(samples, batch_size);               the last batch may be shorter (uneven)
///   BatchSpan b = batch_span(samples, batch_size, i);               positions [begin, end) of batch i in `order`
///   ChunkRange c = rank_chunks(b.size(), chunk_size, rank, ranks);  this rank's chunks of that batch
///   for (Index k = c.first; k < c.last; ++k) chunk_span(b.size(), chunk_size, k) -> its positions in the batch
///
/// ```
/// A global batch of n samples is cut into chunk_count(n, chunk_size) chunks of chunk_size consecutive positions
/// (the last one shorter); rank r of R takes chunks [K r / R, K (r + 1) / R): consecutive, balanced, possibly none
/// when R > K. A chunk is the unit of the distributed trainer's ordered reduction (distributed/data_parallel.hpp):
/// its size is part of the numerics, the number of ranks is not. Each rank reads only its chunks' samples
/// (`shard_positions`), so a dataset that does not fit in one machine is read in parts.
/// Errors: ConfigError for samples \< 0, batch_size or chunk_size \< 1, ranks \< 1, a rank outside [0, ranks),
/// a batch index outside [0, batch_count).

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// Positions [begin, end) of a batch in an epoch's order, or of a chunk within its batch.
struct BatchSpan {
  ///@{
  /// The first position and one past the last.
  Index begin = 0, end = 0;
  ///@}
  /// The number of positions.
  Index size() const { return end - begin; }
};
/// The chunks [first, last) of a batch that one rank computes.
struct ChunkRange {
  ///@{
  /// The first chunk index and one past the last.
  Index first = 0, last = 0;
  ///@}
  /// The number of chunks (0 when the rank has none).
  Index size() const { return last - first; }
};

namespace detail {
// Pieces of `size` consecutive positions over [0, total), the last one shorter: how many, and piece i's positions.
// ConfigError naming `who` and the argument for total < 0, size < 1, i outside [0, count).
inline Index piece_count(const char* who, const char* total_name, Index total, const char* size_name, Index size) {
  if (total < 0) throw_config(who, ": expected ", total_name, " >= 0 but got ", total);
  if (size < 1) throw_config(who, ": expected ", size_name, " >= 1 but got ", size);
  return (total + size - 1) / size;
}
inline BatchSpan piece_span(const char* who, const char* piece, const char* total_name, Index total,
                            const char* size_name, Index size, Index i) {
  const Index n = piece_count(who, total_name, total, size_name, size);
  if (i < 0 || i >= n) throw_config(who, ": expected a ", piece, " in [0, ", n, ") but got ", i);
  return {i * size, std::min(total, (i + 1) * size)};
}
}  // namespace detail

/// A permutation of [0, samples), the same on every process for the same (seed, epoch).
inline std::vector<Index> epoch_order(Index samples, std::uint64_t seed, std::int64_t epoch) {
  if (samples < 0) detail::throw_config("epoch_order: expected samples >= 0 but got ", samples);
  std::vector<Index> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(mix_seed(seed, static_cast<std::uint64_t>(epoch)));
  for (Index i = samples - 1; i > 0; --i) {
    const Index j = static_cast<Index>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

/// The number of global batches of batch_size in an epoch of `samples` (the last may be shorter).
inline Index batch_count(Index samples, Index batch_size) {
  return detail::piece_count("batch_count", "samples", samples, "batch_size", batch_size);
}

/// Positions [begin, end) of batch `batch` in the epoch's order.
inline BatchSpan batch_span(Index samples, Index batch_size, Index batch) {
  return detail::piece_span("batch_span", "batch", "samples", samples, "batch_size", batch_size, batch);
}

/// The number of chunks of chunk_size in a batch of batch_samples (the last may be shorter).
inline Index chunk_count(Index batch_samples, Index chunk_size) {
  return detail::piece_count("chunk_count", "batch samples", batch_samples, "chunk_size", chunk_size);
}

/// Positions [begin, end) of chunk k within its batch.
inline BatchSpan chunk_span(Index batch_samples, Index chunk_size, Index k) {
  return detail::piece_span("chunk_span", "chunk", "batch samples", batch_samples, "chunk_size", chunk_size, k);
}

/// The chunks of `rank` among `ranks` for a batch of batch_samples.
inline ChunkRange rank_chunks(Index batch_samples, Index chunk_size, int rank, int ranks) {
  if (ranks < 1) detail::throw_config("rank_chunks: expected ranks >= 1 but got ", ranks);
  if (rank < 0 || rank >= ranks)
    detail::throw_config("rank_chunks: expected a rank in [0, ", ranks, ") but got ", rank);
  const Index K = chunk_count(batch_samples, chunk_size);
  return {K * rank / ranks, K * (rank + 1) / ranks};
}

/// The positions within the batch that `rank` reads: its chunks' positions, in order.
inline BatchSpan shard_positions(Index batch_samples, Index chunk_size, int rank, int ranks) {
  const ChunkRange c = rank_chunks(batch_samples, chunk_size, rank, ranks);
  if (c.size() == 0) return {0, 0};
  return {chunk_span(batch_samples, chunk_size, c.first).begin, chunk_span(batch_samples, chunk_size, c.last - 1).end};
}

}  // namespace seqattn
