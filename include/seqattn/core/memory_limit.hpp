#pragma once
/// \file
/// The memory limit of seqattn's layers, and checked size arithmetic.
///
/// A layer whose caches grow faster than its input (attention keeps B*T*T probabilities, or B*H*Tq*Tk) states
/// what a batch needs in cache_bytes(B, T) (core/layer.hpp). Before any work, Layer::forward compares it with
/// memory_limit() and throws MemoryError naming the layer, the batch shape, the bytes and the remedy:
///
/// ```unparsed
///   "SeqSelfAttention(additive, units=32): a batch of shape (1, 50000, 8) needs 27.95 GiB for its output, input
///    gradient and caches, above the memory limit of 11.77 GiB (seqattn::set_memory_limit); global attention ..."
/// ```
/// so a sequence that is too long fails at once and clearly, instead of being killed by the system or throwing a
/// bare std::bad_alloc after minutes. A std::bad_alloc inside a layer's forward or backward is rethrown as a
/// MemoryError naming the layer and the shape.
///
/// ```unparsed
///   memory_limit()          the limit in bytes. Default: half of the memory this process may use, the smallest
///                           of physical memory, the cgroup limit (v2 memory.max, v1 memory.limit_in_bytes) and
///                           RLIMIT_AS; kNoMemoryLimit when none can be read.
///   set_memory_limit(n)     n bytes (n >= 1; kNoMemoryLimit turns the check off). Process-wide.
///   reset_memory_limit()    back to the default.
///   format_bytes(n)         "37.26 GiB"
/// ```
/// Checked arithmetic (namespace detail):
///
/// ```unparsed
///   checked_product(who, what, {a, b, ...})   a * b * ... of non-negative sizes, or ConfigError "<who>: <what>
///                                             = a x b overflows" (never signed overflow)
///   saturating_bytes(scalar_size, {a, b, ...}) a * b * ... * scalar_size, or SIZE_MAX when it does not fit
///   checked_parameter<S>(who, what, {a, b})   for constructors, before allocating a parameter tensor: its number
///                                             of values, ConfigError on overflow, MemoryError when the tensor and
///                                             its gradient exceed memory_limit(), or the parameter budget of
///                                             this thread when one is set
///   ScopedParameterBudget budget(bytes, what)   for the duration of the scope, the constructors on this thread
///                                             may take at most `bytes` (tensor and gradient, summed over every
///                                             checked_parameter) before a MemoryError "..., more than <what>":
///                                             load_model bounds a model file's architecture by its tensors
/// ```

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace seqattn {

/// The memory limit that turns the check off (and the saturated value of the byte counts).
inline constexpr std::size_t kNoMemoryLimit = std::numeric_limits<std::size_t>::max();

/// Bytes as text: "37.26 GiB".
inline std::string format_bytes(std::size_t bytes) {
  if (bytes == kNoMemoryLimit) return "more than 16 EiB";
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int u = 0;
  while (value >= 1024.0 && u < 6) {
    value /= 1024.0;
    ++u;
  }
  char text[48];
  if (u == 0)
    std::snprintf(text, sizeof text, "%zu bytes", bytes);
  else
    std::snprintf(text, sizeof text, "%.2f %s", value, units[u]);
  return text;
}

namespace detail {

// The memory this process may use: min(physical memory, cgroup limit, RLIMIT_AS); kNoMemoryLimit if unknown.
inline std::size_t usable_memory_bytes() {
  std::size_t usable = kNoMemoryLimit;
  auto take = [&usable](unsigned long long n) {
    if (n > 0 && n < usable) usable = static_cast<std::size_t>(n);
  };
#if defined(__unix__) || defined(__APPLE__)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) take(static_cast<unsigned long long>(pages) * static_cast<unsigned long long>(page));
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) take(as.rlim_cur);
#endif
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    unsigned long long n = 0;
    if (in >> n) take(n);  // "max" (no limit) does not parse
  }
  return usable;
}

inline std::size_t default_memory_limit() {
  const std::size_t usable = usable_memory_bytes();
  return usable == kNoMemoryLimit ? kNoMemoryLimit : usable / 2;
}

// 0 until set_memory_limit is called (then the default applies).
inline std::atomic<std::size_t>& memory_limit_setting() {
  static std::atomic<std::size_t> limit{0};
  return limit;
}

// a * b * ... for sizes >= 0; ConfigError naming `who` and `what` when the product does not fit in Index.
inline Index checked_product(const std::string& who, const char* what, std::initializer_list<Index> sizes) {
  Index product = 1;
  for (const Index s : sizes) {
    if (s < 0) throw_config(who, ": ", what, " has a negative factor ", s);
    if (s != 0 && product > std::numeric_limits<Index>::max() / s) {
      std::string factors;
      for (const Index f : sizes) factors += (factors.empty() ? "" : " x ") + std::to_string(f);
      throw_config(who, ": ", what, " = ", factors, " overflows (sizes must multiply to less than 2^63)");
    }
    product *= s;
  }
  return product;
}

// scalar_size * a * b * ... in bytes (sizes >= 0), saturating at kNoMemoryLimit.
inline std::size_t saturating_bytes(std::size_t scalar_size, std::initializer_list<Index> sizes) {
  std::size_t bytes = scalar_size;
  for (const Index s : sizes) {
    const std::size_t u = s < 0 ? 0 : static_cast<std::size_t>(s);
    if (u != 0 && bytes > kNoMemoryLimit / u) return kNoMemoryLimit;
    bytes *= u;
  }
  return bytes;
}

inline std::size_t saturating_add(std::size_t a, std::size_t b) { return a > kNoMemoryLimit - b ? kNoMemoryLimit : a + b; }

}  // namespace detail

inline std::size_t memory_limit();

namespace detail {

struct ParameterBudget {
  std::size_t bytes;
  std::string what;
};
inline ParameterBudget*& parameter_budget() {
  thread_local ParameterBudget* budget = nullptr;
  return budget;
}
class ScopedParameterBudget {
 public:
  ScopedParameterBudget(std::size_t bytes, std::string what)
      : budget_{bytes, std::move(what)}, outer_(parameter_budget()) {
    parameter_budget() = &budget_;
  }
  ~ScopedParameterBudget() { parameter_budget() = outer_; }
  ScopedParameterBudget(const ScopedParameterBudget&) = delete;
  ScopedParameterBudget& operator=(const ScopedParameterBudget&) = delete;

 private:
  ParameterBudget budget_;
  ParameterBudget* outer_;
};

template <class S>
Index checked_parameter(const std::string& who, const char* what, std::initializer_list<Index> dims) {
  const Index values = checked_product(who, what, dims);
  const std::size_t bytes = saturating_bytes(2 * sizeof(S), {values}), limit = memory_limit();
  if (bytes > limit)
    throw MemoryError(cat(who, ": ", what, " has ", values, " values, ", format_bytes(bytes),
                          " with its gradient, above the memory limit of ", format_bytes(limit),
                          " (seqattn::set_memory_limit)"));
  if (ParameterBudget* budget = parameter_budget()) {
    if (bytes > budget->bytes)
      throw MemoryError(cat(who, ": ", what, " has ", values, " values, ", format_bytes(bytes),
                            " with its gradient, more than ", budget->what, " (", format_bytes(budget->bytes),
                            " left)"));
    budget->bytes -= bytes;
  }
  return values;
}

}  // namespace detail

/// The limit in bytes of a layer's forward (set_memory_limit, else half the memory the process may use).
inline std::size_t memory_limit() {
  const std::size_t set = detail::memory_limit_setting().load();
  if (set != 0) return set;
  static const std::size_t fallback = detail::default_memory_limit();
  return fallback;
}

/// Sets the limit to `bytes` (>= 1; kNoMemoryLimit turns the check off); process-wide.
inline void set_memory_limit(std::size_t bytes) {
  if (bytes == 0) detail::throw_config("set_memory_limit: expected a limit of at least 1 byte but got 0");
  detail::memory_limit_setting().store(bytes);
}

/// Back to the default limit.
inline void reset_memory_limit() { detail::memory_limit_setting().store(0); }

}  // namespace seqattn
