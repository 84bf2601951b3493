#pragma once
/// \file
/// Checkpoints of a data-parallel job (io/checkpoint.hpp on one process; needs nlohmann-json):
///
/// ```unparsed
///   save_checkpoint(dp, "run.ckpt", model, adam, progress);   rank 0 writes the file atomically; every rank
///                                                              returns when it is complete, or throws
///                                                              DistributedError when rank 0 could not write it
///   TrainingProgress p = load_checkpoint(dp, "run.ckpt", model, adam);
///                                                              rank 0 reads the file and broadcasts its bytes
///                                                              (no shared file system needed); every rank
///                                                              restores the model and the optimizer and sets
///                                                              dp's step number to p.global_step
/// ```
/// A job resumed from a checkpoint continues to the same bits as one that was never interrupted, on any number
/// of ranks: the batches come from (seed, epoch) (epoch_order), the chunks' random scopes from (seed, step), and
/// the checkpoint holds the weights, the buffers and the optimizer's moments, step count and learning rate.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "seqattn/distributed/data_parallel.hpp"
#include "seqattn/io/checkpoint.hpp"

namespace seqattn {

namespace detail::dp {
/// Every rank learns whether rank 0's `action` succeeded; DistributedError with its message otherwise.
template <class Comm, class Action>
void on_rank0(Comm& comm, const char* call, Action&& action) {
  std::string error;
  if (comm.rank() == 0) {
    try {
      action();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    }
  }
  const std::vector<unsigned char> mine(error.begin(), error.end());
  const auto all = comm.allgather(mine, call);
  if (!all[0].empty())
    throw DistributedError(detail::cat(call, ": rank 0 failed: ", std::string(all[0].begin(), all[0].end())));
}
}  // namespace detail::dp

/// Rank 0 writes the checkpoint atomically; every rank returns once it is complete (DistributedError for all when
/// rank 0 could not write it).
template <class S, class Comm, class Model, class Optimizer>
void save_checkpoint(DataParallel<S, Comm>& dp, const std::string& path, Model& model, const Optimizer& optimizer,
                     const TrainingProgress& progress) {
  detail::dp::on_rank0(dp.communicator(), "save_checkpoint", [&] { save_checkpoint(path, model, optimizer, progress); });
}

/// Rank 0 reads the checkpoint and broadcasts it; every rank restores `model` and `optimizer`, sets dp's step
/// number and returns the progress.
template <class S, class Comm, class Model, class Optimizer>
TrainingProgress load_checkpoint(DataParallel<S, Comm>& dp, const std::string& path, Model& model,
                                 Optimizer& optimizer) {
  Comm& comm = dp.communicator();
  std::vector<unsigned char> bytes;
  detail::dp::on_rank0(comm, "load_checkpoint", [&] { bytes = read_checkpoint_bytes(path); });
  std::uint64_t n = bytes.size();
  comm.broadcast(&n, sizeof(n), 0, "load_checkpoint: size");
  bytes.resize(static_cast<size_t>(n));
  comm.broadcast(bytes.data(), bytes.size(), 0, "load_checkpoint: bytes");
  TrainingProgress progress;
  std::string error;
  try {
    progress = decode_checkpoint(bytes, model, optimizer, "load_checkpoint(" + path + ")");
  } catch (const std::exception& e) {
    error = e.what();  // the same on every rank (the same bytes): rank 0's message is enough
  }
  if (!error.empty()) throw DistributedError(error);
  dp.set_step_number(progress.global_step);
  return progress;
}

}  // namespace seqattn
