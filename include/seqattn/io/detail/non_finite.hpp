#pragma once
// Helpers of the NaN/Inf checks of the weight files (load and save refuse non-finite weights by default):
//   first_non_finite(values, n)   index of the first NaN or Inf of n values, n when all are finite
//   value_text(v)                 "NaN", "Inf", "-Inf", or the value with every digit of a double
//   element_text(i, shape)        "element 5 = (1, 2)": a flat row-major index and its index in the shape

#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace seqattn::detail {

template <class S>
std::size_t first_non_finite(const S* values, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(values[i])) return i;
  return n;
}

inline std::string value_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Inf" : "-Inf";
  std::ostringstream out;
  out.precision(std::numeric_limits<double>::max_digits10);
  out << v;
  return out.str();
}

// `shape`: any integer type (seqattn's Index or the unsigned dimensions of a file).
template <class D>
std::string element_text(std::size_t i, const std::vector<D>& shape) {
  std::vector<std::size_t> index(shape.size(), 0);
  std::size_t rest = i;
  for (std::size_t k = shape.size(); k-- > 0;) {
    const auto d = static_cast<std::size_t>(shape[k]);
    if (d == 0) break;
    index[k] = rest % d;
    rest /= d;
  }
  std::string s = "element " + std::to_string(i) + " = (";
  for (std::size_t k = 0; k < index.size(); ++k) s += (k ? ", " : "") + std::to_string(index[k]);
  return s + (index.size() == 1 ? ",)" : ")");
}

}  // namespace seqattn::detail
