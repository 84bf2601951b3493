#pragma once
/// \file
/// Flushing denormal (subnormal) numbers to zero while seqattn computes.
///
/// Arithmetic on denormals (|x| \< 1.2e-38 in float) can take a slow microcode path on x86: a batch of tiny inputs,
/// or weights decayed towards zero, made forward and backward up to 18-21x slower (1.9x for SeqSelfAttention on
/// an AVX-512 Xeon: benchmarks/bench_denormals.cpp). So every layer's forward and
/// backward (Layer::forward / backward) and every worker thread of its parallel loops (detail::parallel_for)
/// run with the CPU's flush-to-zero and denormals-are-zero modes on (x86 MXCSR FTZ and DAZ, AArch64 FPCR FZ),
/// and restore the caller's mode when they return: the program's own arithmetic is never affected.
///
/// ```unparsed
///   set_flush_denormals(false)   compute with denormals as IEEE-754 says (slow on them). Process-wide.
///   flush_denormals()            the setting (default true, as PyTorch's torch.set_flush_denormal(True) does).
/// ```
/// Effect: values below the smallest normal number become zero inside the layers, a relative change far below
/// float rounding for any value a model computes with. Optimizers (optim/) and losses are not affected (they stay
/// exact to PyTorch). benchmarks/bench_denormals.cpp measures a layer on denormal inputs with the mode on and off.

#include <atomic>

#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define SEQATTN_DENORMALS_X86 1
#elif defined(__aarch64__)
#define SEQATTN_DENORMALS_AARCH64 1
#endif

namespace seqattn {

namespace detail {
inline std::atomic<bool>& flush_denormals_setting() {
  static std::atomic<bool> on{true};
  return on;
}
}  // namespace detail

/// Turns flushing denormals to zero inside the layers on (the default) or off; process-wide.
inline void set_flush_denormals(bool on) { detail::flush_denormals_setting().store(on); }
/// Whether the layers flush denormals to zero (set_flush_denormals; default true).
inline bool flush_denormals() { return detail::flush_denormals_setting().load(std::memory_order_relaxed); }

namespace detail {

// Turns flush-to-zero on for this thread for its lifetime (when the setting is on and the mode was off), then
// restores the thread's previous mode. Costs two control-register accesses when it changes the mode.
class FlushDenormalsScope {
 public:
  FlushDenormalsScope() {
    if (!flush_denormals()) return;
#if defined(SEQATTN_DENORMALS_X86)
    saved_ = _mm_getcsr();
    const unsigned int wanted = saved_ | kFlushBits;
    if (wanted != saved_) {
      _mm_setcsr(wanted);
      changed_ = true;
    }
#elif defined(SEQATTN_DENORMALS_AARCH64)
    unsigned long fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    const unsigned long wanted = fpcr | (1UL << 24);
    if (wanted != fpcr) {
      __asm__ __volatile__("msr fpcr, %0" : : "r"(wanted));
      changed_ = true;
    }
#endif
  }
  ~FlushDenormalsScope() {
    if (!changed_) return;
#if defined(SEQATTN_DENORMALS_X86)
    _mm_setcsr(saved_);
#elif defined(SEQATTN_DENORMALS_AARCH64)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  FlushDenormalsScope(const FlushDenormalsScope&) = delete;
  FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;

 private:
#if defined(SEQATTN_DENORMALS_X86)
  static constexpr unsigned int kFlushBits = 0x8040;  // FTZ (bit 15) | DAZ (bit 6)
  unsigned int saved_ = 0;
#elif defined(SEQATTN_DENORMALS_AARCH64)
  unsigned long saved_ = 0;
#endif
  bool changed_ = false;
};

}  // namespace detail
}  // namespace seqattn
