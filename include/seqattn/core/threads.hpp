#pragma once
// Thread count of seqattn's compute.
//   set_num_threads(n)   n >= 1 (ConfigError otherwise). Records n for the layers and, when the program is
//                        compiled with OpenMP (-fopenmp: Eigen defines EIGEN_HAS_OPENMP), sets Eigen's GEMM
//                        threads with Eigen::setNbThreads(n). Without OpenMP it only records n and every
//                        product stays single-threaded.
//   num_threads()        the last value set; before any call, Eigen::nbThreads() (OpenMP's default, usually
//                        the number of cores) when compiled with OpenMP, else 1.
// The setting is process-wide (Eigen's is global too): call it once at start-up, not while another thread
// is computing. Eigen's own GEMM threads only run for products large enough to split (Eigen decides per
// product), so small models gain nothing from more threads.
//
// Determinism: Eigen's parallel GEMM gives every thread a block of OUTPUT coefficients; no coefficient's sum
// over the inner dimension k is split across threads, so no partial sums are reduced in a thread-dependent
// order. A coefficient is then bitwise the same for 1 and n threads as long as Eigen cuts k into the same
// cache blocks (kc) in both cases: it picks kc from the L1 size with one formula for one thread and another
// for several (Eigen/src/Core/products/GeneralBlockPanelKernel.h), and the two agree when k is at most the
// smaller block (about 288 for float with 32 KiB of L1 and AVX2; larger with AVX-512). Products with a longer
// inner dimension, the weight gradients dW = x^T dz of a Dense over B*T > kc rows for instance, can round
// differently with several threads (still deterministic run to run for a given thread count).
// tests/unit/test_threads.cpp checks both statements on the machine it runs on.

#include <atomic>

#include <Eigen/Core>

#include "seqattn/core/errors.hpp"

namespace seqattn {

namespace detail {
// 0 until set_num_threads is called.
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{0};
  return n;
}
}  // namespace detail

// True when seqattn was compiled with OpenMP, so set_num_threads(n > 1) can run products on several threads.
inline constexpr bool has_openmp() {
#ifdef EIGEN_HAS_OPENMP
  return true;
#else
  return false;
#endif
}

inline void set_num_threads(int n) {
  if (n < 1) detail::throw_config("set_num_threads: expected a thread count >= 1 but got ", n);
  detail::thread_setting().store(n);
#ifdef EIGEN_HAS_OPENMP
  Eigen::setNbThreads(n);
#endif
}

inline int num_threads() {
  const int n = detail::thread_setting().load();
  if (n > 0) return n;
#ifdef EIGEN_HAS_OPENMP
  return Eigen::nbThreads();
#else
  return 1;
#endif
}

}  // namespace seqattn
