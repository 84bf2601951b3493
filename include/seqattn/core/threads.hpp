#pragma once
/// \file
/// Thread count of seqattn's compute, and the deterministic parallel loops of the layers.
///
/// ```unparsed
///   set_num_threads(n)   n >= 1 (ConfigError otherwise). When the program is compiled with OpenMP (-fopenmp),
///                        the layers split their work over n OpenMP threads; without OpenMP n is only recorded
///                        and everything runs on the calling thread.
///   num_threads()        the last value set; before any call, OpenMP's default (omp_get_max_threads(): the
///                        number of cores, or OMP_NUM_THREADS) when compiled with OpenMP, else 1.
/// ```
/// The setting is process-wide: call it at start-up, not while another thread is computing. A layer called from
/// inside an OpenMP parallel region of the program runs on the calling thread (no nested regions).
///
/// Determinism: results are bitwise identical for every thread count. The layers parallelize ABOVE Eigen:
///
/// ```unparsed
///   - work is cut into pieces that depend only on the sizes (fixed chunks of kChunkRows rows of a (B*T, F)
///     matrix, or (sample, head) pairs), never on the thread count; each piece is computed the same way
///     whichever thread runs it;
///   - a parameter gradient summed over B*T rows (dW += x^T dz, db, LayerNorm's dgamma and dbeta) is summed
///     per chunk into a partial of its own, and the partials are added in chunk order (detail/parallel.hpp);
///   - Eigen's own GEMM threads are off: Eigen gives each of its threads output blocks but cuts the inner
///     dimension into cache blocks of another size for several threads than for one
///     (Eigen/src/Core/products/GeneralBlockPanelKernel.h), so a long product (k > ~300) rounds differently
///     with several threads. With OpenMP, set_num_threads(n) calls Eigen::setNbThreads(1) for any n, and so does
///     including this header (at static initialization), so seqattn's products stay single-threaded. A program
///     that raises Eigen::setNbThreads itself afterwards gets Eigen's threads in the layers' products (faster
///     for a few large products, deterministic run to run, but no longer bitwise equal across thread counts).
/// ```
/// tests/unit/test_threads.cpp checks y, dx and every parameter gradient bitwise for 1 and 2 threads, and
/// tests/unit/test_determinism_threads.cpp the losses of a training run.
///
/// Helpers for the layers (namespace detail):
///
/// ```unparsed
///   kChunkRows                   rows per chunk of a (B*T, F) matrix (a multiple of kRowQuantum = 16)
///   chunk_count(N)               chunks of N rows: ceil(N / kChunkRows); chunk c is rows [c * kChunkRows, ...)
///   chunk_rows(N, c)             the rows of chunk c (kChunkRows but the last)
///   parallel_threads(pieces, work)  threads for `pieces` independent pieces of `work` operations in all:
///                                min(num_threads(), pieces); 1 without OpenMP, inside a parallel region, or for
///                                less than kMinParallelWork (waking threads would cost more than they save)
///   parallel_for(n, threads, f)  f(i) for every i in [0, n), on `threads` threads (static schedule); every
///                                worker flushes denormals as the calling layer does (core/denormals.hpp)
/// ```

#include <algorithm>
#include <atomic>

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "seqattn/core/denormals.hpp"
#include "seqattn/core/errors.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

namespace detail {
// 0 until set_num_threads is called.
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{0};
  return n;
}

// Eigen's GEMMs run on one thread in every program that includes seqattn (see the file comment).
inline int eigen_products_single_threaded() {
#ifdef EIGEN_HAS_OPENMP
  Eigen::setNbThreads(1);
#endif
  return 1;
}
inline const int kEigenSingleThreaded = eigen_products_single_threaded();
}  // namespace detail

/// True when seqattn was compiled with OpenMP, so set_num_threads(n > 1) can run the layers on several threads.
inline constexpr bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

/// Sets the number of threads of the layers' parallel loops (n >= 1); process-wide.
inline void set_num_threads(int n) {
  if (n < 1) detail::throw_config("set_num_threads: expected a thread count >= 1 but got ", n);
  detail::thread_setting().store(n);
  detail::eigen_products_single_threaded();
}

/// The number of threads the layers use (set_num_threads, else the default of the file documentation).
inline int num_threads() {
  const int n = detail::thread_setting().load();
  if (n > 0) return n;
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

namespace detail {

inline constexpr Index kChunkRows = 1024;

inline Index chunk_count(Index rows) { return (rows + kChunkRows - 1) / kChunkRows; }
inline Index chunk_rows(Index rows, Index c) { return std::min(kChunkRows, rows - c * kChunkRows); }

inline constexpr double kMinParallelWork = 65536;

inline int parallel_threads(Index pieces, double work) {
#ifdef _OPENMP
  if (pieces < 2 || work < kMinParallelWork || omp_in_parallel()) return 1;
  return static_cast<int>(std::min<Index>(num_threads(), pieces));
#else
  (void)pieces;
  (void)work;
  return 1;
#endif
}

// f(i) for i in [0, n). f must not throw, and must give the same result whichever thread runs i.
template <class F>
void parallel_for(Index n, int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1 && n > 1) {
#pragma omp parallel num_threads(threads)
    {
      const FlushDenormalsScope flush_denormals;
#pragma omp for schedule(static)
      for (Index i = 0; i < n; ++i) f(i);
    }
    return;
  }
#endif
  (void)threads;
  for (Index i = 0; i < n; ++i) f(i);
}

}  // namespace detail
}  // namespace seqattn
