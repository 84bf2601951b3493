#pragma once
// Reading and writing the CSV files of seqattn-model: one sequence, a row per time step, a column per feature.
//   read_steps(path, features) -> x (1, T, features)
// Rows are comma-separated numbers (white space around them is ignored); empty lines and lines starting with '#'
// are skipped; the first row may be a header (any field that is not a number makes it one). Every data row must
// have exactly `features` values, finite. Errors name the file and line: "input.csv:7: expected 8 values but
// found 7". A file of more than kMaxSteps rows is refused (the tool reads it whole).
//   write_rows(out, y)  y (1, T, F) -> T lines of F comma-separated values (%.9g: float round-trips)

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqattn/core/tensor.hpp"

namespace seqattn_tool {

using seqattn::Index;

inline constexpr Index kMaxSteps = 10'000'000;

// Splits a line at commas, trimming spaces and tabs (and a trailing '\r') from each field.
inline std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  auto flush = [&] {
    const auto first = field.find_first_not_of(" \t\r");
    const auto last = field.find_last_not_of(" \t\r");
    fields.push_back(first == std::string::npos ? std::string() : field.substr(first, last - first + 1));
    field.clear();
  };
  for (char c : line) {
    if (c == ',')
      flush();
    else
      field += c;
  }
  flush();
  return fields;
}

// The number in `field`, or false when it is not one (whole field, finite or not).
inline bool parse_number(const std::string& field, double& value) {
  if (field.empty()) return false;
  errno = 0;
  char* end = nullptr;
  value = std::strtod(field.c_str(), &end);
  return end == field.c_str() + field.size() && errno != ERANGE;
}

template <class S>
seqattn::Tensor3<S> read_steps(const std::string& path, Index features) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the file for reading");
  std::vector<double> values;
  std::string line;
  Index line_number = 0, rows = 0;
  bool first_row = true;
  while (std::getline(in, line)) {
    ++line_number;
    const auto start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    const std::vector<std::string> fields = split_fields(line);
    std::vector<double> row;
    bool numeric = true;
    for (const auto& f : fields) {
      double v = 0;
      if (!parse_number(f, v)) {
        numeric = false;
        break;
      }
      row.push_back(v);
    }
    const std::string where = path + ":" + std::to_string(line_number) + ": ";
    if (!numeric) {
      if (first_row) {  // a header
        first_row = false;
        continue;
      }
      throw std::runtime_error(where + "expected " + std::to_string(features) + " numbers but found a field that is not one");
    }
    first_row = false;
    if (static_cast<Index>(row.size()) != features)
      throw std::runtime_error(where + "expected " + std::to_string(features) + " values (the model's input features) but found " +
                               std::to_string(row.size()));
    for (double v : row)
      if (!std::isfinite(v)) throw std::runtime_error(where + "a value is not finite");
    if (++rows > kMaxSteps) throw std::runtime_error(path + ": more than " + std::to_string(kMaxSteps) + " steps");
    values.insert(values.end(), row.begin(), row.end());
  }
  if (rows == 0) throw std::runtime_error(path + ": no steps (expected rows of " + std::to_string(features) + " numbers)");
  seqattn::Tensor3<S> x(1, rows, features);
  for (Index t = 0; t < rows; ++t)
    for (Index f = 0; f < features; ++f) x(0, t, f) = static_cast<S>(values[static_cast<size_t>(t * features + f)]);
  return x;
}

template <class S>
void write_rows(std::ostream& out, const seqattn::Tensor3<S>& y) {
  char buf[64];
  for (Index t = 0; t < y.dimension(1); ++t) {
    for (Index f = 0; f < y.dimension(2); ++f) {
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(y(0, t, f)));
      if (f > 0) out << ',';
      out << buf;
    }
    out << '\n';
  }
}

}  // namespace seqattn_tool
