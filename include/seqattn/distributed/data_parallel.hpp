#pragma once
/// \file
/// DataParallel\<S, Comm>: data-parallel training whose result does not depend on the number of processes.
/// Every process (rank) holds the whole model; each global batch is cut into chunks (distributed/batch_plan.hpp),
/// each rank computes the gradients of its chunks, and the chunks' gradients are summed in ONE fixed global order,
/// chunk 0 first, whatever the number of ranks. The same seed therefore gives bitwise the same weights on 1, 2, 3
/// or 4 processes (tests/mpi), and the same as a single process without MPI (LocalCommunicator, below).
///
/// ```unparsed
///   DataParallel<float, MpiCommunicator> dp(comm, model, DataParallelOptions().chunk_size(8).seed(42));
///   for (...) {                                               // the loop of a single process, plus dp:
///     StepStats s = dp.step(loss, batch_samples, load);       // load(BatchSpan) -> Batch<float, Labels>
///     adam.step();                                            // every rank steps the same optimizer identically
///   }
///
/// ```
/// Construction checks that every rank has the same parameter and buffer layout (DistributedError naming the
/// first rank that differs) and broadcasts rank 0's parameters and buffers to every rank.
/// step(loss, batch_samples, load[, metric]) for a batch of batch_samples samples:
///
/// ```unparsed
///   1. for each of this rank's chunks k (positions [begin, end) of the batch): load({begin, end}) gives the chunk's
///      Batch (x, mask, target); zero the gradients; run forward (Mode::Train), loss, backward inside
///      RandomScope(mix_seed(mix_seed(seed, step), k)) (core/random.hpp: dropout draws the same masks on any rank);
///      buffers (BatchNorm's running statistics) start every chunk from their values before the step;
///   2. exchange per-chunk records (loss, loss units n_k = loss.valid_count(), regularization, metric counts) and
///      every rank's status: a rank whose chunk threw makes EVERY rank throw DistributedError naming it and its
///      message, with the model unchanged;
///   3. sum g = sum_k (n_k / n) g_k over all chunks in ONE fixed binary tree over the chunk indices (fold_tree
///      below: pairs of neighbours, then pairs of pairs, ...), whose shape depends only on the number of chunks;
///      partial sums travel between the ranks that own neighbouring chunks (about log2(chunks) messages on the
///      longest path), then the owner of chunk 0 broadcasts g; buffers move by the mean of their per-chunk changes;
///   4. OVERWRITE every trainable parameter's gradient with g (no zero_grad needed) and return the statistics.
/// ```
/// The loss is any seqattn loss (mean over valid units, with valid_count()); g is the gradient of the mean loss
/// over the whole global batch plus the regularization's gradient. The optimizer stays the caller's: step it
/// after dp.step on every rank. Numerics depend on chunk_size (the unit of the fold), not on the number of ranks.
/// step_chunks(batch_samples, run) is the general form: run(k, BatchSpan) -> ChunkOutcome does the chunk's forward,
/// loss and backward itself (a Graph with several inputs, a custom objective).
/// evaluate(loss, samples, load[, metric]): Mode::Infer over [0, samples) split into chunks over the ranks, the
/// records folded in chunk order: the same numbers on any number of ranks.
///
/// Comm: the transport. LocalCommunicator (one process; no MPI) here; MpiCommunicator in distributed/mpi.hpp
/// (timeouts on every operation). Interface: rank(), size(), allgather(bytes) -> every rank's bytes,
/// post_send(p, n, dest, tag) (non-blocking; p stays valid until finish_sends()), recv(p, n, source, tag),
/// broadcast(p, n, root); they throw DistributedError on failure or timeout.
/// Memory: this rank's chunks' gradients are kept until the fold (chunks per rank x parameter count values).
/// Every rank must run the same binary (the same instructions give the same bits).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/fnv1a.hpp"
#include "seqattn/distributed/batch_plan.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// A failure of a distributed operation: another rank failed, a timeout, an MPI error, layouts that differ.
class DistributedError : public Error {
 public:
  /// An error with the message `what`.
  explicit DistributedError(const std::string& what) : Error(what) {}
};

/// Options of DataParallel (see the file documentation); set with `.name(value)`, read with `.name()`.
struct DataParallelOptions {
  SEQATTN_ARG(Index, chunk_size, 8)  ///< samples per chunk: the unit of the ordered fold
  SEQATTN_ARG(std::uint64_t, seed, 0)  ///< the chunks' random scopes (dropout)
};

/// One chunk's input: x (B, T, F), its mask, the loss's target (labels, values).
template <class S, class Target>
struct Batch {
  Tensor3<S> x;    ///< (B, T, F) inputs
  Mask mask;       ///< x's mask
  Target target;   ///< what the loss compares the output with (class labels, values)
};

/// What one chunk's run reports (step_chunks).
struct ChunkOutcome {
  double loss = 0.0;  ///< the chunk's mean data loss
  std::int64_t count = 0;  ///< its loss units (the loss's valid_count())
  double regularization = 0.0;  ///< model.regularization_loss() after its forward
  ///@{
  /// A metric's counts: correct predictions among counted ones (0 without a metric).
  std::int64_t correct = 0, counted = 0;
  ///@}
};

/// A step's or an evaluation's numbers, the same on every rank.
struct StepStats {
  double loss = 0.0;  ///< mean data loss over the global batch's loss units
  double regularization = 0.0;  ///< mean of the chunks' regularization losses, weighted like the gradient
  std::int64_t count = 0;  ///< loss units in the global batch
  std::int64_t samples = 0;  ///< samples in the global batch (or the evaluated set)
  std::int64_t chunks = 0;   ///< chunks over all ranks
  ///@{
  /// The metric's counts over all chunks: correct predictions among counted ones.
  std::int64_t correct = 0, counted = 0;
  ///@}
  ///@{
  /// The payload bytes this rank sent and received in the call.
  std::uint64_t bytes_sent = 0, bytes_received = 0;
  ///@}
  /// loss + regularization: the objective.
  double total() const { return loss + regularization; }
  /// correct / counted (0 without a metric).
  double accuracy() const { return counted > 0 ? static_cast<double>(correct) / static_cast<double>(counted) : 0.0; }
};

/// One process: what DataParallel computes without MPI, bit for bit what it computes on any number of ranks.
class LocalCommunicator {
 public:
  /// Always 0.
  int rank() const { return 0; }
  /// Always 1.
  int size() const { return 1; }
  /// { mine }: the only rank's bytes.
  std::vector<std::vector<unsigned char>> allgather(const std::vector<unsigned char>& mine, const char*) {
    return {mine};
  }
  /// Throws DistributedError: there is no other rank to send to.
  void post_send(const void*, std::size_t, int, int, const char* what) { refuse(what); }
  /// Nothing to wait for.
  void finish_sends(const char*) {}
  /// Throws DistributedError: there is no other rank to receive from.
  void recv(void*, std::size_t, int, int, const char* what) { refuse(what); }
  /// Nothing to do: the data already is where it goes.
  void broadcast(void*, std::size_t, int, const char*) {}
  /// Always 0.
  std::uint64_t bytes_sent() const { return 0; }
  /// Always 0.
  std::uint64_t bytes_received() const { return 0; }

 private:
  [[noreturn]] static void refuse(const char* what) {
    throw DistributedError(std::string("LocalCommunicator: ") + what + ": there is no other rank");
  }
};

namespace detail::dp {

struct RankStatus {
  std::int32_t failed = 0;
  std::int32_t chunks = 0;
  char message[480] = {};
};
struct ChunkRecord {
  double loss = 0.0, regularization = 0.0;
  std::int64_t count = 0, correct = 0, counted = 0;
};


// The optional metric of step and evaluate: none (0 correct of 0 counted).
struct NoMetric {
  template <class Y, class Target>
  std::pair<std::int64_t, std::int64_t> operator()(const Y&, const Target&, const Mask&) const {
    return {0, 0};
  }
};

}  // namespace detail::dp

/// Data-parallel training over the ranks of `Comm`, bitwise independent of their number (see the file
/// documentation).
template <class S, class Comm>
class DataParallel {
 public:
  /// Checks the layouts and broadcasts rank 0's parameters and buffers (every rank must construct it).
  DataParallel(Comm& comm, Layer<S>& model, DataParallelOptions options = DataParallelOptions())
      : comm_(comm), model_(model), options_(options) {
    if (options.chunk_size() < 1)
      detail::throw_config("DataParallel: expected chunk_size >= 1 but got ", options.chunk_size());
    check_layouts();
    broadcast_state(0);
  }

  /// The options it was built with.
  const DataParallelOptions& options() const { return options_; }
  /// The transport.
  Comm& communicator() { return comm_; }
  /// The model it trains.
  Layer<S>& model() { return model_; }
  /// This process's rank.
  int rank() const { return comm_.rank(); }
  /// The number of ranks.
  int ranks() const { return comm_.size(); }
  /// The number of the next step (it seeds the chunks' random scopes); set it when resuming from a checkpoint.
  std::int64_t step_number() const { return step_; }
  /// Sets the number of the next step (load_checkpoint does it).
  void set_step_number(std::int64_t step) { step_ = step; }

  /// The positions of a batch of batch_samples that this rank reads.
  BatchSpan shard(Index batch_samples) const {
    return shard_positions(batch_samples, options_.chunk_size(), comm_.rank(), comm_.size());
  }

  /// Every rank takes `root`'s parameters and buffers.
  void broadcast_state(int root) {
    std::vector<S> values;
    for (const auto& list : {model_.params(), model_.buffers()})
      for (const auto& p : list) values.insert(values.end(), p.value, p.value + p.size());
    comm_.broadcast(values.data(), values.size() * sizeof(S), root, "broadcast of the parameters");
    size_t at = 0;
    for (const auto& list : {model_.params(), model_.buffers()})
      for (const auto& p : list) {
        std::copy(values.begin() + static_cast<std::ptrdiff_t>(at),
                  values.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(p.size())), p.value);
        at += static_cast<size_t>(p.size());
      }
  }

  /// One training step over a global batch (file comment). load(BatchSpan) -> Batch\<S, Target> for positions
  /// [begin, end) of the batch; metric(y, target, output mask) -> std::pair\<correct, counted> (optional).
  template <class Loss, class Load>
  StepStats step(Loss& loss, Index batch_samples, Load&& load) {
    return step(loss, batch_samples, load, detail::dp::NoMetric());
  }
  /// The same with a metric: metric(y, target, output mask) -> std::pair(correct, counted) per chunk.
  template <class Loss, class Load, class Metric>
  StepStats step(Loss& loss, Index batch_samples, Load&& load, Metric&& metric) {
    return step_chunks(batch_samples, [&](Index, BatchSpan span) {
      auto batch = load(span);
      const Tensor3<S>& y = model_.forward(batch.x, batch.mask, Mode::Train);
      const Mask out = model_.out_mask(batch.mask, batch.x.dimension(1));
      ChunkOutcome o;
      o.loss = static_cast<double>(loss.forward(y, batch.target, out));
      o.count = static_cast<std::int64_t>(loss.valid_count());
      const auto [correct, counted] = metric(y, batch.target, out);
      o.correct = correct;
      o.counted = counted;
      model_.backward(batch.x, batch.mask, loss.grad());
      o.regularization = static_cast<double>(model_.regularization_loss());
      return o;
    });
  }

  /// The general step: run(k, positions) runs chunk k's forward (Mode::Train), loss and backward on this model.
  template <class Run>
  StepStats step_chunks(Index batch_samples, Run&& run) {
    const std::uint64_t sent0 = comm_.bytes_sent(), received0 = comm_.bytes_received();
    const Index C = options_.chunk_size();
    const Index K = chunk_count(batch_samples, C);
    const ChunkRange mine = rank_chunks(batch_samples, C, comm_.rank(), comm_.size());
    ParamList<S> params = model_.params(), buffers = model_.buffers();
    ParamList<S> trained;
    for (auto& p : params)
      if (p.trainable()) trained.push_back(p);
    const size_t P = total_size(trained), Bv = total_size(buffers), width = P + Bv;
    snapshot(buffers, start_buffers_);
    contributions_.resize(static_cast<size_t>(mine.size()) * width);
    std::vector<detail::dp::ChunkRecord> records;
    detail::dp::RankStatus status;
    status.chunks = static_cast<std::int32_t>(mine.size());
    try {
      for (Index k = mine.first; k < mine.last; ++k) {
        restore(buffers, start_buffers_);
        for (auto& p : params) std::fill(p.grad, p.grad + p.size(), S(0));
        ChunkOutcome o;
        {
          RandomScope scope(chunk_seed(k));
          o = run(k, chunk_span(batch_samples, C, k));
        }
        S* row = contributions_.data() + static_cast<size_t>(k - mine.first) * width;
        for (const auto& p : trained) row = std::copy(p.grad, p.grad + p.size(), row);
        size_t b = 0;
        for (const auto& p : buffers)
          for (Index i = 0; i < p.size(); ++i) *row++ = p.value[i] - start_buffers_[b++];
        records.push_back({o.loss, o.regularization, o.count, o.correct, o.counted});
      }
    } catch (const std::exception& e) {
      status.failed = 1;
      std::strncpy(status.message, e.what(), sizeof(status.message) - 1);
    }
    restore(buffers, start_buffers_);
    outbox_.clear();
    const std::vector<detail::dp::ChunkRecord> all = exchange(status, records, "step");
    StepStats stats = summarize(all, batch_samples);
    if (static_cast<Index>(all.size()) != K)
      throw DistributedError(detail::cat("DataParallel step ", step_, ": expected ", K, " chunk records but got ",
                                         all.size(), " (do the ranks run the same batches?)"));
    // 3. the fold: one fixed tree over the chunks, whatever the ranks (see fold_tree)
    weights_.assign(static_cast<size_t>(K), S(0));
    for (Index k = 0; k < K; ++k)
      weights_[static_cast<size_t>(k)] =
          stats.count > 0 ? static_cast<S>(static_cast<double>(all[static_cast<size_t>(k)].count) /
                                           static_cast<double>(stats.count))
                          : S(0);
    buffer_weight_ = K > 0 ? static_cast<S>(1.0 / static_cast<double>(K)) : S(0);
    fold_.K = K;
    fold_.mine = mine;
    fold_.P = P;
    fold_.width = width;
    fold_.bounds.clear();
    for (int r = 0; r <= comm_.size(); ++r) fold_.bounds.push_back(K * r / comm_.size());
    sum_.assign(width, S(0));
    Index depth = 2;
    for (Index n = 1; n < K; n *= 2) ++depth;
    if (scratch_.size() < static_cast<size_t>(depth)) scratch_.resize(static_cast<size_t>(depth));  // no resize below
    if (K > 0) {
      fold_visit(0, K, 0);
      comm_.finish_sends("tree fold of the gradients");
      if (comm_.size() > 1)
        comm_.broadcast(sum_.data(), width * sizeof(S), fold_owner(0), "broadcast of the summed gradient");
    }
    // 4. gradients overwritten, buffers moved
    const S* g = sum_.data();
    for (auto& p : trained) {
      std::copy(g, g + p.size(), p.grad);
      g += p.size();
    }
    size_t b = 0;
    for (auto& p : buffers)
      for (Index i = 0; i < p.size(); ++i, ++b) p.value[i] = start_buffers_[b] + sum_[P + b];
    ++step_;
    stats.bytes_sent = comm_.bytes_sent() - sent0;
    stats.bytes_received = comm_.bytes_received() - received0;
    return stats;
  }

  /// Mode::Infer over positions [0, samples) in chunks over the ranks; load and metric as for step.
  template <class Loss, class Load>
  StepStats evaluate(Loss& loss, Index samples, Load&& load) {
    return evaluate(loss, samples, load, detail::dp::NoMetric());
  }
  /// The same with a metric, as for step.
  template <class Loss, class Load, class Metric>
  StepStats evaluate(Loss& loss, Index samples, Load&& load, Metric&& metric) {
    const std::uint64_t sent0 = comm_.bytes_sent(), received0 = comm_.bytes_received();
    const Index C = options_.chunk_size();
    const ChunkRange mine = rank_chunks(samples, C, comm_.rank(), comm_.size());
    std::vector<detail::dp::ChunkRecord> records;
    detail::dp::RankStatus status;
    status.chunks = static_cast<std::int32_t>(mine.size());
    try {
      for (Index k = mine.first; k < mine.last; ++k) {
        auto batch = load(chunk_span(samples, C, k));
        const Tensor3<S>& y = model_.forward(batch.x, batch.mask, Mode::Infer);
        const Mask out = model_.out_mask(batch.mask, batch.x.dimension(1));
        detail::dp::ChunkRecord rec;
        rec.loss = static_cast<double>(loss.forward(y, batch.target, out));
        rec.count = static_cast<std::int64_t>(loss.valid_count());
        const auto [correct, counted] = metric(y, batch.target, out);
        rec.correct = correct;
        rec.counted = counted;
        rec.regularization = static_cast<double>(model_.regularization_loss());
        records.push_back(rec);
      }
    } catch (const std::exception& e) {
      status.failed = 1;
      std::strncpy(status.message, e.what(), sizeof(status.message) - 1);
    }
    StepStats stats = summarize(exchange(status, records, "evaluate"), samples);
    stats.bytes_sent = comm_.bytes_sent() - sent0;
    stats.bytes_received = comm_.bytes_received() - received0;
    return stats;
  }

 private:
  // The fold. The chunks' contributions v_k (w_k g_k for the gradients, buffer changes / K) are summed over one
  // fixed binary tree: node [lo, hi) = node [lo, mid) + node [mid, hi), mid = lo + the largest power of two below
  // hi - lo; a leaf is one chunk. The tree depends only on K, never on the ranks, so the sum is bitwise the same
  // on any number of them. Rank owner(lo) computes node [lo, hi): it computes its left child itself and receives
  // the right child from owner(mid) unless it owns mid too. Ranks own consecutive chunks, so a rank only ever waits
  // for higher ranks, whose sends do not block: no deadlock. The root lands on owner(0), which broadcasts it.
  // Messages per step: at most about log2(K) per rank, each of width values; the longest chain of waits is the
  // depth of the tree, ceil(log2 K).
  struct FoldPlan {
    Index K = 0;
    ChunkRange mine;
    size_t P = 0, width = 0;
    std::vector<Index> bounds;  // rank r owns chunks [bounds[r], bounds[r + 1])
  };
  int fold_owner(Index k) const {
    int r = 0;
    while (fold_.bounds[static_cast<size_t>(r) + 1] <= k) ++r;
    return r;
  }
  static Index fold_split(Index n) {  // the largest power of two below n (n >= 2)
    Index p = 1;
    while (p * 2 < n) p *= 2;
    return p;
  }
  // Walks down to the nodes this rank computes whose parent another rank computes (and the root).
  void fold_visit(Index lo, Index hi, int depth) {
    if (hi <= fold_.mine.first || lo >= fold_.mine.last) return;  // none of this rank's chunks
    const int me = comm_.rank();
    if (fold_owner(lo) == me) {
      if (lo == 0 && hi == fold_.K) {
        fold_value(lo, hi, sum_.data(), depth);
      } else {  // a right child: to its parent's computer, owner(parent's lo) < me
        outbox_.emplace_back(fold_.width);
        fold_value(lo, hi, outbox_.back().data(), depth);
        comm_.post_send(outbox_.back().data(), fold_.width * sizeof(S), fold_parent_owner(lo, hi), fold_tag(lo),
                        "tree fold of the gradients");
      }
      return;
    }
    const Index mid = lo + fold_split(hi - lo);
    fold_visit(lo, mid, depth + 1);
    fold_visit(mid, hi, depth + 1);
  }
  // The computer of the parent of right child [lo, hi): found by walking from the root.
  int fold_parent_owner(Index lo, Index hi) const {
    Index a = 0, b = fold_.K;
    for (;;) {
      const Index mid = a + fold_split(b - a);
      if (mid == lo && b == hi) return fold_owner(a);
      if (lo < mid) b = mid; else a = mid;
    }
  }
  static int fold_tag(Index lo) { return static_cast<int>(lo % 32000); }
  // out = the value of node [lo, hi) (this rank computes it: owner(lo) == rank).
  void fold_value(Index lo, Index hi, S* out, int depth) {
    if (hi - lo == 1) {
      const S* row = contributions_.data() + static_cast<size_t>(lo - fold_.mine.first) * fold_.width;
      const S w = weights_[static_cast<size_t>(lo)];
      for (size_t i = 0; i < fold_.P; ++i) out[i] = w * row[i];
      for (size_t i = fold_.P; i < fold_.width; ++i) out[i] = buffer_weight_ * row[i];
      return;
    }
    const Index mid = lo + fold_split(hi - lo);
    fold_value(lo, mid, out, depth + 1);
    std::vector<S>& right = scratch_[static_cast<size_t>(depth)];
    right.resize(fold_.width);
    if (mid < fold_.mine.last)
      fold_value(mid, hi, right.data(), depth + 1);
    else
      comm_.recv(right.data(), fold_.width * sizeof(S), fold_owner(mid), fold_tag(mid), "tree fold of the gradients");
    for (size_t i = 0; i < fold_.width; ++i) out[i] += right[i];
  }

  std::uint64_t chunk_seed(Index k) const {
    return mix_seed(mix_seed(options_.seed(), static_cast<std::uint64_t>(step_)), static_cast<std::uint64_t>(k));
  }
  static size_t total_size(const ParamList<S>& list) {
    size_t n = 0;
    for (const auto& p : list) n += static_cast<size_t>(p.size());
    return n;
  }
  static void snapshot(const ParamList<S>& list, std::vector<S>& out) {
    out.clear();
    for (const auto& p : list) out.insert(out.end(), p.value, p.value + p.size());
  }
  static void restore(const ParamList<S>& list, const std::vector<S>& in) {
    size_t at = 0;
    for (const auto& p : list)
      for (Index i = 0; i < p.size(); ++i) p.value[i] = in[at++];
  }

  // Every rank's status and chunk records, in rank (= chunk) order; DistributedError when a rank failed.
  std::vector<detail::dp::ChunkRecord> exchange(const detail::dp::RankStatus& status,
                                                const std::vector<detail::dp::ChunkRecord>& records,
                                                const char* call) {
    using detail::dp::ChunkRecord;
    using detail::dp::RankStatus;
    std::vector<unsigned char> mine(sizeof(RankStatus) + records.size() * sizeof(ChunkRecord));
    std::memcpy(mine.data(), &status, sizeof(RankStatus));
    if (!records.empty()) std::memcpy(mine.data() + sizeof(RankStatus), records.data(), records.size() * sizeof(ChunkRecord));
    const auto gathered = comm_.allgather(mine, "exchange of the chunk records");
    std::vector<ChunkRecord> all;
    for (size_t r = 0; r < gathered.size(); ++r) {
      RankStatus s;
      if (gathered[r].size() < sizeof(RankStatus))
        throw DistributedError(detail::cat("DataParallel ", call, " ", step_, ": rank ", r, " sent ", gathered[r].size(),
                                           " bytes, fewer than a status"));
      std::memcpy(&s, gathered[r].data(), sizeof(RankStatus));
      s.message[sizeof(s.message) - 1] = '\0';
      if (s.failed)
        throw DistributedError(detail::cat("DataParallel ", call, " ", step_, ": rank ", r, " of ", gathered.size(),
                                           " failed: ", s.message));
      const size_t n = (gathered[r].size() - sizeof(RankStatus)) / sizeof(ChunkRecord);
      if (static_cast<std::int64_t>(n) != s.chunks)
        throw DistributedError(detail::cat("DataParallel ", call, " ", step_, ": rank ", r, " announced ", s.chunks,
                                           " chunks but sent ", n));
      for (size_t i = 0; i < n; ++i) {
        ChunkRecord c;
        std::memcpy(&c, gathered[r].data() + sizeof(RankStatus) + i * sizeof(ChunkRecord), sizeof(ChunkRecord));
        all.push_back(c);
      }
    }
    return all;
  }

  // The records folded in chunk order (loss units weight the losses).
  static StepStats summarize(const std::vector<detail::dp::ChunkRecord>& all, Index samples) {
    StepStats s;
    s.samples = samples;
    s.chunks = static_cast<std::int64_t>(all.size());
    for (const auto& c : all) {
      s.count += c.count;
      s.correct += c.correct;
      s.counted += c.counted;
    }
    for (const auto& c : all) {
      const double w = s.count > 0 ? static_cast<double>(c.count) / static_cast<double>(s.count) : 0.0;
      s.loss += w * c.loss;
      s.regularization += w * c.regularization;
    }
    return s;
  }

  void check_layouts() {
    std::string text;
    for (const auto& list : {model_.params(), model_.buffers()})
      for (const auto& p : list) text += p.name + p.shape_string() + ";";
    text += std::to_string(sizeof(S));
    const std::uint64_t h = detail::fnv1a(reinterpret_cast<const unsigned char*>(text.data()), text.size());
    std::vector<unsigned char> mine(sizeof(h));
    std::memcpy(mine.data(), &h, sizeof(h));
    const auto all = comm_.allgather(mine, "check of the model layouts");
    for (size_t r = 0; r < all.size(); ++r)
      if (all[r] != all[0])
        throw DistributedError(detail::cat("DataParallel: rank ", r, "'s model differs from rank 0's (parameter or "
                                           "buffer names, shapes or scalar type); every rank must build the same "
                                           "model"));
  }

  Comm& comm_;
  Layer<S>& model_;
  DataParallelOptions options_;
  std::int64_t step_ = 0;
  std::vector<S> contributions_, start_buffers_, sum_, weights_;
  S buffer_weight_ = S(0);
  FoldPlan fold_;
  std::vector<std::vector<S>> scratch_;  // one right child per tree depth
  std::deque<std::vector<S>> outbox_;    // values being sent (kept until finish_sends)
};

}  // namespace seqattn
