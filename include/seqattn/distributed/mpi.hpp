#pragma once
/// \file
/// MPI transport of the distributed trainer (distributed/data_parallel.hpp). Optional: needs MPI (Debian:
/// libopenmpi-dev openmpi-bin; CMake: find_package(MPI COMPONENTS CXX) and link MPI::MPI_CXX, or build with mpicxx).
/// Not part of the umbrella header.
///
/// ```unparsed
///   int main(int argc, char** argv) {
///     seqattn::MpiSession session(&argc, &argv);                       // MPI_Init ... MPI_Finalize
///     seqattn::MpiCommunicator comm(MpiOptions().timeout_seconds(120));
///     try {
///       DataParallel<float, MpiCommunicator> dp(comm, model, DataParallelOptions().seed(42));
///       ... dp.step(loss, n, load); adam.step(); ...
///     } catch (const std::exception& e) {
///       session.abort(1, e.what());                                    // prints "[rank r] ..." and ends the job
///     }
///   }
///   mpirun -np 4 ./train                                  one machine
///   mpirun -np 64 --hostfile hosts ./train                a cluster (hosts: "node1 slots=8" lines)
///
/// ```
/// MpiSession: MPI_Init_thread (MPI_THREAD_FUNNELED: a rank may run OpenMP threads; only the main thread calls MPI)
/// unless MPI is already initialized; MPI_Finalize at the end. If it ends while an exception is propagating, it
/// calls MPI_Abort instead, so the other ranks stop rather than wait. abort(code, message) prints the message
/// with the rank and calls MPI_Abort (the whole job ends: mpirun kills every rank).
/// MpiCommunicator: a duplicate of MPI_COMM_WORLD (or of the communicator given) with MPI_ERRORS_RETURN, so an MPI
/// error becomes a DistributedError naming the operation, the rank and MPI's message. Every operation is
/// non-blocking (MPI_Isend, MPI_Irecv, MPI_Ibcast, MPI_Iallgather[v]) and polled until done or until
/// timeout_seconds pass: then DistributedError "rank r: timed out after T s waiting in \<operation> (peer ...)".
/// After a timeout the job cannot go on (a collective is half done): abort it (session.abort). Polling yields the
/// core for the first 4096 polls, then sleeps 10 us doubling up to 200 us, so a rank waiting long leaves its core
/// to the others (oversubscribed test runs) and one waiting briefly answers within microseconds.
/// Faults: a rank whose chunk throws makes every rank throw DistributedError at the step's exchange (the job can
/// finish cleanly); a rank that is killed is noticed by mpirun, which ends the job (Open MPI prints "mpirun
/// noticed that process rank r ... exited on signal 9"); a rank that hangs makes the others time out.
/// bytes_sent() / bytes_received(): the payload this rank handed to MPI and received (not counting the forwarding
/// inside MPI's collective algorithms).

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/distributed/data_parallel.hpp"

namespace seqattn {

/// Options of MpiCommunicator (see the file documentation); set with `.name(value)`, read with `.name()`.
struct MpiOptions {
  SEQATTN_ARG(double, timeout_seconds, 300.0)  ///< the longest any operation waits for the other ranks
};

/// MPI_Init ... MPI_Finalize for the program's lifetime (see the file documentation).
class MpiSession {
 public:
  /// Initializes MPI (MPI_THREAD_FUNNELED) unless it already is; argc and argv as main's.
  MpiSession(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw DistributedError("MpiSession: MPI_Init_thread failed");
      owner_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiSession() {
    if (!owner_) return;
    if (std::uncaught_exceptions() > 0) MPI_Abort(MPI_COMM_WORLD, 1);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  /// This process's rank in MPI_COMM_WORLD.
  int rank() const { return rank_; }
  /// The number of processes in MPI_COMM_WORLD.
  int size() const { return size_; }
  /// Prints "[seqattn rank r of n] message" on standard error and ends the whole job with `code`.
  [[noreturn]] void abort(int code, const std::string& message) const {
    std::fprintf(stderr, "[seqattn rank %d of %d] %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; in case it does
  }

 private:
  bool owner_ = false;
  int rank_ = 0, size_ = 1;
};

/// The MPI transport of DataParallel, every operation with a timeout (see the file documentation).
class MpiCommunicator {
 public:
  /// A duplicate of `base` that returns MPI errors (DistributedError) instead of aborting.
  explicit MpiCommunicator(MpiOptions options = MpiOptions(), MPI_Comm base = MPI_COMM_WORLD) : options_(options) {
    if (!(options.timeout_seconds() > 0))
      detail::throw_config("MpiCommunicator: expected timeout_seconds > 0 but got ", options.timeout_seconds());
    check(MPI_Comm_dup(base, &comm_), "MPI_Comm_dup", -1);
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", -1);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  /// This process's rank.
  int rank() const { return rank_; }
  /// The number of ranks.
  int size() const { return size_; }
  /// The MPI communicator (a duplicate: its messages never mix with the program's own).
  MPI_Comm handle() const { return comm_; }
  /// Payload bytes sent so far.
  std::uint64_t bytes_sent() const { return sent_; }
  /// Payload bytes received so far.
  std::uint64_t bytes_received() const { return received_; }

  /// Every rank's bytes (sizes may differ), in rank order.
  std::vector<std::vector<unsigned char>> allgather(const std::vector<unsigned char>& mine, const char* what) {
    std::uint64_t n = mine.size();
    std::vector<std::uint64_t> sizes(static_cast<size_t>(size_));
    MPI_Request req;
    check(MPI_Iallgather(&n, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, comm_, &req), what, -1);
    wait(req, what, -1);
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    std::uint64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      if (total + sizes[static_cast<size_t>(r)] > static_cast<std::uint64_t>(INT_MAX))
        throw DistributedError(detail::cat("rank ", rank_, ": ", what, ": more than 2 GiB gathered"));
      displs[static_cast<size_t>(r)] = static_cast<int>(total);
      counts[static_cast<size_t>(r)] = static_cast<int>(sizes[static_cast<size_t>(r)]);
      total += sizes[static_cast<size_t>(r)];
    }
    std::vector<unsigned char> flat(static_cast<size_t>(total));
    check(MPI_Iallgatherv(mine.data(), static_cast<int>(n), MPI_UNSIGNED_CHAR, flat.data(), counts.data(),
                          displs.data(), MPI_UNSIGNED_CHAR, comm_, &req),
          what, -1);
    wait(req, what, -1);
    sent_ += n * static_cast<std::uint64_t>(size_ - 1);
    received_ += total - n;
    std::vector<std::vector<unsigned char>> out(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r)
      out[static_cast<size_t>(r)].assign(flat.begin() + displs[static_cast<size_t>(r)],
                                         flat.begin() + displs[static_cast<size_t>(r)] + counts[static_cast<size_t>(r)]);
    return out;
  }

  /// Starts sending `bytes` to `dest` with `tag`; `data` must stay valid until finish_sends().
  void post_send(const void* data, std::size_t bytes, int dest, int tag, const char* what) {
    for_pieces(bytes, [&](std::size_t at, int n) {
      MPI_Request req;
      check(MPI_Isend(static_cast<const unsigned char*>(data) + at, n, MPI_UNSIGNED_CHAR, dest, tag, comm_, &req), what,
            dest);
      pending_.push_back({req, dest});
    });
    sent_ += bytes;
  }
  /// Waits until every posted send completed.
  void finish_sends(const char* what) {
    for (auto& [req, dest] : pending_) wait(req, what, dest);
    pending_.clear();
  }

  /// Receives exactly `bytes` from `source` with `tag` (DistributedError for another size).
  void recv(void* data, std::size_t bytes, int source, int tag, const char* what) {
    for_pieces(bytes, [&](std::size_t at, int n) {
      MPI_Request req;
      check(MPI_Irecv(static_cast<unsigned char*>(data) + at, n, MPI_UNSIGNED_CHAR, source, tag, comm_, &req), what,
            source);
      MPI_Status status;
      wait(req, what, source, &status);
      int got = 0;
      MPI_Get_count(&status, MPI_UNSIGNED_CHAR, &got);
      if (got != n)
        throw DistributedError(detail::cat("rank ", rank_, ": ", what, ": expected ", n, " bytes from rank ", source,
                                           " but got ", got));
    });
    received_ += bytes;
  }

  /// The same `bytes` on every rank; root's data lands everywhere.
  void broadcast(void* data, std::size_t bytes, int root, const char* what) {
    for_pieces(bytes, [&](std::size_t at, int n) {
      MPI_Request req;
      check(MPI_Ibcast(static_cast<unsigned char*>(data) + at, n, MPI_UNSIGNED_CHAR, root, comm_, &req), what, root);
      wait(req, what, root);
    });
    if (rank_ == root)
      sent_ += bytes;
    else
      received_ += bytes;
  }

  /// Waits until every rank arrives (with the timeout).
  void barrier(const char* what) {
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), what, -1);
    wait(req, what, -1);
  }

 private:
  static constexpr std::size_t kPiece = std::size_t{1} << 30;

  template <class F>
  static void for_pieces(std::size_t bytes, F&& f) {
    for (std::size_t at = 0; at < bytes || (bytes == 0 && at == 0); at += kPiece) {
      f(at, static_cast<int>(std::min(kPiece, bytes - at)));
      if (bytes == 0) break;
    }
  }

  void check(int code, const char* what, int peer) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(code, text, &len);
    throw DistributedError(detail::cat("rank ", rank_, ": ", what, peer >= 0 ? detail::cat(" (peer rank ", peer, ")") : "",
                                       ": MPI error: ", text));
  }

  void wait(MPI_Request& req, const char* what, int peer, MPI_Status* status = nullptr) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::duration<double>(options_.timeout_seconds());
    MPI_Status local;
    MPI_Status* st = status ? status : &local;
    auto pause = std::chrono::microseconds(0);
    for (int polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Test(&req, &done, st), what, peer);
      if (done) return;
      if (clock::now() > deadline)
        throw DistributedError(detail::cat("rank ", rank_, ": timed out after ", options_.timeout_seconds(),
                                           " s waiting in ", what,
                                           peer >= 0 ? detail::cat(" (peer rank ", peer, ")") : std::string(),
                                           ": another rank failed, hangs or is much slower; the job must be aborted"));
      if (polls < 4096) {  // yield first (a rank waiting for a message a few microseconds away), then sleep
        std::this_thread::yield();
      } else {  // 10 us, doubling up to 200 us: a long wait leaves the core to the other ranks
        pause = std::min(std::chrono::microseconds(200), pause.count() == 0 ? std::chrono::microseconds(10) : pause * 2);
        std::this_thread::sleep_for(pause);
      }
    }
  }

  MpiOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::uint64_t sent_ = 0, received_ = 0;
  std::vector<std::pair<MPI_Request, int>> pending_;  // posted sends and their destinations
};

}  // namespace seqattn
