#pragma once
/// \file
/// Seeded random numbers, identical on every platform and compiler (the std distributions are not).
///
/// ```unparsed
///   Rng               xoshiro256** seeded through splitmix64; uniform() in [0, 1), normal() by Box-Muller.
///   manual_seed(s)    resets the library-wide seed sequence (like torch.manual_seed).
///   next_seed()       the next seed of that sequence: layers built without an explicit seed take one, so a
///                     program that builds its model in the same order gets the same weights every run.
///   RandomScope       while one lives on a thread, every Train forward that draws random numbers (Dropout's
///                     masks, MultiHeadAttention's attention and qkv dropout) first reseeds its layer's stream from
///                     (the scope's seed, how many streams the scope reseeded before): the draws depend only on the
///                     scope's seed and the order of the forwards, not on what ran earlier. The distributed trainer
///                     (distributed/data_parallel.hpp) gives each chunk of a global batch its own scope, so a chunk
///                     draws the same masks on any process. Scopes nest (the innermost counts); one per thread.
///   mix_seed(a, b)    a seed derived from two (splitmix64 of both): the seeds of chunk b of step a, ...
/// ```

#include <atomic>
#include <cmath>
#include <cstdint>

namespace seqattn {

namespace detail {
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
inline std::atomic<std::uint64_t>& seed_counter() {
  static std::atomic<std::uint64_t> counter{0x5EED5EEDULL};
  return counter;
}
}  // namespace detail

/// Sets the seed counter that next_seed() draws from (reproducible initialization); process-wide.
inline void manual_seed(std::uint64_t seed) { detail::seed_counter().store(seed); }

/// The next seed of the process-wide counter (the default seed of every layer's initialization).
inline std::uint64_t next_seed() {
  std::uint64_t state = detail::seed_counter().fetch_add(1);
  return detail::splitmix64(state);
}

/// The random generator of initializers and dropout (xoshiro256**); the same seed gives the same values on
/// every platform.
class Rng {
 public:
  /// A generator seeded with `seed`.
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  /// Restarts the sequence from `seed`.
  void reseed(std::uint64_t seed) {
    std::uint64_t sm = seed;
    for (auto& word : s_) word = detail::splitmix64(sm);
    has_spare_ = false;
  }

  /// The next 64 random bits.
  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

  /// Standard normal (Box-Muller; the second value of each pair is kept for the next call).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925 * u2;
    spare_ = r * std::sin(angle);
    has_spare_ = true;
    return r * std::cos(angle);
  }
  /// Normal with mean `mean` and standard deviation `stddev`.
  double normal(double mean, double stddev) { return mean + stddev * normal(); }
  /// Normal resampled until within two standard deviations (Keras' truncated_normal).
  double truncated_normal(double stddev) {
    for (;;) {
      const double z = normal();
      if (std::abs(z) <= 2.0) return stddev * z;
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4] = {0, 0, 0, 0};
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// A seed derived from two: splitmix64 over a, then b (different pairs give unrelated seeds).
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t state = a;
  const std::uint64_t first = detail::splitmix64(state);
  state = first ^ b;
  return detail::splitmix64(state);
}

class RandomScope;

namespace detail {
inline RandomScope*& current_random_scope() {
  thread_local RandomScope* scope = nullptr;
  return scope;
}
}  // namespace detail

/// RandomScope scope(seed): see the file comment. Not copyable; restores the enclosing scope when it ends.
class RandomScope {
 public:
  /// Opens a scope on this thread: the next Train forwards' random streams come from `seed`.
  explicit RandomScope(std::uint64_t seed) : seed_(seed), outer_(detail::current_random_scope()) {
    detail::current_random_scope() = this;
  }
  ~RandomScope() { detail::current_random_scope() = outer_; }
  RandomScope(const RandomScope&) = delete;
  RandomScope& operator=(const RandomScope&) = delete;

  /// The scope's seed.
  std::uint64_t seed() const { return seed_; }
  /// How many random streams the scope reseeded so far.
  std::uint64_t streams_reseeded() const { return count_; }
  /// The seed of the next stream of this scope.
  std::uint64_t next_stream_seed() { return mix_seed(seed_, count_++); }

 private:
  std::uint64_t seed_;
  std::uint64_t count_ = 0;
  RandomScope* outer_;
};

/// Called by a layer at the start of a Train forward that will draw from `rng`: inside a RandomScope, reseeds it
/// from the scope (see the file comment); outside, leaves it as it is.
inline void reseed_in_scope(Rng& rng) {
  if (RandomScope* scope = detail::current_random_scope()) rng.reseed(scope->next_stream_seed());
}

}  // namespace seqattn
