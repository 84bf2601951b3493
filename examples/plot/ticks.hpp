#pragma once
// Axis ticks and their labels.
//   nice_ticks(lo, hi, about)     ticks at a "nice" interval (1, 2 or 5 times a power of ten) covering [lo, hi],
//                                 about `about` of them: (0, 0.37, 5) -> 0, 0.1, 0.2, 0.3 (only inside [lo, hi])
//   nice_range(lo, hi, about)     [lo, hi] widened outward to the nice interval: (0.13, 0.91, 5) -> (0, 1)
//   step_ticks(count, about)      integer positions 0, k, 2k, ... < count for `count` steps (k in 1, 2, 5, 10,
//                                 20, 25, 50, ...), at most about `about` + 1 of them
//   tick_label(value, interval)   the value with the decimals its tick interval needs: (0.25, 0.05) -> "0.25"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace plot {

// The nice interval (1, 2 or 5 x 10^k) nearest above span / about.
inline double nice_interval(double span, int about) {
  if (!(span > 0) || !std::isfinite(span)) return 1;
  const double raw = span / std::max(1, about);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / power;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power;
}

inline std::vector<double> nice_ticks(double lo, double hi, int about = 5) {
  std::vector<double> ticks;
  if (!(hi > lo)) return {lo};
  const double step = nice_interval(hi - lo, about);
  const double eps = step * 1e-9;
  for (double k = std::ceil((lo - eps) / step); k * step <= hi + eps; k += 1) ticks.push_back(k * step == 0 ? 0 : k * step);
  return ticks;
}

inline std::pair<double, double> nice_range(double lo, double hi, int about = 5) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    return {lo - pad, hi + pad};
  }
  const double step = nice_interval(hi - lo, about);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step};
}

inline std::vector<int> step_ticks(int count, int about = 8) {
  static const int steps[] = {1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000};
  int k = steps[sizeof steps / sizeof steps[0] - 1];
  for (int s : steps)
    if (count <= s * about + 1) {
      k = s;
      break;
    }
  std::vector<int> ticks;
  for (int t = 0; t < count; t += k) ticks.push_back(t);
  return ticks;
}

inline std::string tick_label(double value, double interval) {
  int decimals = 0;
  if (interval > 0 && interval < 1) {
    decimals = static_cast<int>(std::ceil(-std::log10(interval) - 1e-9));
    const double scaled = interval * std::pow(10.0, decimals);
    if (std::abs(scaled - std::round(scaled)) > 1e-6) ++decimals;  // 0.25: two decimals
  }
  if (std::abs(value) < interval * 1e-6) value = 0;  // no "-0"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), value);
  return buf;
}

}  // namespace plot
