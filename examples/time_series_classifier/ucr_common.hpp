#pragma once
// What the UCR/UEA loaders share (ucr_text.hpp, ucr_ts.hpp, ucr_arff.hpp; ucr.hpp is the entry point): a case as
// read (Record), text helpers (trim, split, lines), number and missing-value parsing, class labels, and the build
// of the Dataset from the records.
//
// Missing values ('?', "NaN", "-NaN", any case) in the .ts and .arff formats (parse_series, then assemble_case):
//   - in the middle of a series they are kept as steps: x holds 0 there and Dataset::missing marks them
//     (data.hpp impute_missing fills them); a loader never leaves NaN in x;
//   - trailing ones, past the last present value of every dimension of a case, shorten the case (unequal-length
//     series are padded that way), unless the file declares equal lengths (.ts "@equalLength true"): then they
//     are marked missing like the others;
//   - a dimension with no present value in a case whose other dimensions have values is kept, all missing.
// A case whose every value is missing is an error.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "data.hpp"

namespace tsc {
namespace ucr_detail {

// One case as read from a file.
struct Record {
  std::string label;                               // canonical_label of the class label
  std::vector<std::vector<float>> dims;            // (F, length); 0 where missing
  Index line = 0;                                  // 1-based line of the case, for messages
  std::vector<std::vector<std::uint8_t>> missing;  // (F, length) 1 where missing; empty when nothing is
};

// `s` without white space and UTF-8 byte-order marks (U+FEFF, a zero-width space) at either end.
inline std::string trim(const std::string& s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  const std::string bom = "\xEF\xBB\xBF";
  size_t begin = 0, end = s.size();
  for (;;) {
    if (begin < end && space(s[begin]))
      ++begin;
    else if (end - begin >= 3 && s.compare(begin, 3, bom) == 0)
      begin += 3;
    else
      break;
  }
  for (;;) {
    if (end > begin && space(s[end - 1]))
      --end;
    else if (end - begin >= 3 && s.compare(end - 3, 3, bom) == 0)
      end -= 3;
    else
      break;
  }
  return s.substr(begin, end - begin);
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Whether `s` starts with `prefix`, ignoring case.
inline bool starts_with_nocase(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == lower(prefix);
}

inline std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t begin = 0;
  for (;;) {
    const size_t end = s.find(sep, begin);
    out.push_back(trim(s.substr(begin, end == std::string::npos ? std::string::npos : end - begin)));
    if (end == std::string::npos) return out;
    begin = end + 1;
  }
}

inline std::vector<std::string> split_whitespace(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string field;
  while (in >> field) out.push_back(field);
  return out;
}

// Parses the whole of `text` as a number (strtod: decimal, exponent, nan, inf).
inline bool parse_number(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

inline bool is_missing(const std::string& field) {
  const std::string l = lower(field);
  return l == "?" || l == "nan" || l == "-nan";
}

// The integer spelling of a whole-number label ("1.0e+00" -> "1"), else the label unchanged.
inline std::string canonical_label(const std::string& raw) {
  const std::string label = trim(raw);  // a byte-order mark inside a line (a header's class list) is no part of it
  double v = 0;
  if (parse_number(label, v) && std::isfinite(v) && v == std::floor(v) && std::abs(v) < 1e15)
    return std::to_string(static_cast<long long>(v));
  return label;
}

// One dimension of a case as written: a value per field, 0 and flagged where missing.
struct Series {
  std::vector<float> values;
  std::vector<std::uint8_t> missing;  // 1 where the field was missing
  size_t present_end = 0;             // 1 + the index of the last present value (0: none)
};

// Fields [first, end) -> Series. `where` is "<name>:<line>: ", `what` names a value in messages ("value",
// "dimension 2 value"). DataError for an empty field, text that is not a number, infinity or a value outside the
// float range; missing values anywhere are kept (flagged).
inline Series parse_series(const std::vector<std::string>& fields, size_t first, const std::string& where,
                           const std::string& what) {
  Series s;
  for (size_t i = first; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    const std::string k = std::to_string(i - first + 1);
    if (f.empty()) throw DataError(where + what + " " + k + " is empty");
    if (is_missing(f)) {
      s.values.push_back(0.0f);
      s.missing.push_back(1);
      continue;
    }
    double v = 0;
    if (!parse_number(f, v) || std::isnan(v)) throw DataError(where + what + " " + k + " '" + f + "' is not a number");
    if (!(std::abs(v) <= std::numeric_limits<float>::max()))
      throw DataError(where + what + " " + k + " '" + f + "' is infinite or out of the float range");
    s.values.push_back(static_cast<float>(v));
    s.missing.push_back(0);
    s.present_end = s.values.size();
  }
  return s;
}

// The dimensions of one case -> r.dims and r.missing. `unit` names a dimension in messages ("dimension",
// "channel"). With keep_trailing (declared equal lengths) every dimension must have as many values as the first;
// otherwise the case ends at its last present value (trailing missing values shorten it) and every dimension must
// reach that length. DataError "<unit> 2 has 2 values but <unit> 1 has 3 (the dimensions of a case must have
// equal lengths)", or "<unit> 1 has no values" ("the series has no values" with one dimension) when every value
// is missing.
inline void assemble_case(Record& r, std::vector<Series>& dims, bool keep_trailing, const std::string& where,
                          const std::string& unit = "dimension") {
  size_t length = 0, longest = 0;  // longest: the first dimension that reaches `length`
  for (size_t k = 0; k < dims.size(); ++k)
    if (dims[k].present_end > length) length = dims[k].present_end, longest = k;
  if (length == 0)
    throw DataError(where + (dims.size() == 1 ? std::string("the series") : unit + " 1") + " has no values");
  if (keep_trailing) length = dims.front().values.size(), longest = 0;
  for (size_t k = 0; k < dims.size(); ++k) {
    const size_t n = dims[k].values.size();
    if (n < length || (keep_trailing && n != length))
      throw DataError(where + unit + " " + std::to_string(k + 1) + " has " + std::to_string(n) + " values but " + unit +
                      " " + std::to_string(longest + 1) + " has " + std::to_string(length) +
                      " (the dimensions of a case must have equal lengths)");
  }
  bool any_missing = false;
  for (auto& s : dims) {
    s.values.resize(length);
    s.missing.resize(length);
    any_missing = any_missing || std::find(s.missing.begin(), s.missing.end(), 1) != s.missing.end();
  }
  r.dims.clear();
  r.missing.clear();
  for (auto& s : dims) {
    r.dims.push_back(std::move(s.values));
    if (any_missing) r.missing.push_back(std::move(s.missing));
  }
}

// Declared class names (a .ts @classLabel list, an .arff nominal list) -> canonical labels. DataError when one is
// empty or only a byte-order mark ("<where><what> lists class 2 as empty (or a byte-order mark only); remove
// it") or listed twice.
inline std::vector<std::string> declared_classes(const std::vector<std::string>& raw, const std::string& where,
                                                 const std::string& what) {
  std::vector<std::string> out;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string c = canonical_label(raw[i]);
    if (c.empty())
      throw DataError(where + what + " lists class " + std::to_string(i + 1) +
                      " as empty (or a byte-order mark only); remove it");
    if (std::find(out.begin(), out.end(), c) != out.end())
      throw DataError(where + what + " lists class '" + c + "' twice");
    out.push_back(c);
  }
  return out;
}

// Records -> Dataset with class indices from `classes` (or derived from the labels when empty). Missing values of
// the records -> Dataset::missing.
inline Dataset build(const std::vector<Record>& records, std::vector<std::string> classes, const std::string& name,
                     bool classes_given, const std::string& classes_from = "") {
  if (records.empty()) throw DataError(name + ": no series found");
  if (classes.empty()) {
    std::vector<std::string> found;
    for (const auto& r : records)
      if (std::find(found.begin(), found.end(), r.label) == found.end()) found.push_back(r.label);
    bool numeric = true;
    double v = 0;
    for (const auto& l : found) numeric = numeric && parse_number(l, v) && !std::isnan(v);
    std::sort(found.begin(), found.end(), [&](const std::string& a, const std::string& b) {
      double va = 0, vb = 0;
      if (numeric && parse_number(a, va) && parse_number(b, vb) && va != vb) return va < vb;
      return a < b;
    });
    classes = found;
  }
  std::map<std::string, int> index;
  for (size_t c = 0; c < classes.size(); ++c) index.emplace(classes[c], static_cast<int>(c));
  const Index F = static_cast<Index>(records.front().dims.size());
  Index T = 0;
  bool any_missing = false;
  for (const auto& r : records) {
    T = std::max(T, static_cast<Index>(r.dims.front().size()));
    any_missing = any_missing || !r.missing.empty();
  }
  const double values = static_cast<double>(records.size()) * static_cast<double>(T) * static_cast<double>(F);
  if (values > static_cast<double>(Index{1} << 28))
    throw DataError(name + ": " + std::to_string(records.size()) + " series padded to the longest (" +
                    std::to_string(T) + " steps, " + std::to_string(F) + " dimensions) need too many values");
  Dataset d;
  d.class_names = classes;
  d.x.resize(static_cast<Index>(records.size()), T, F);
  d.x.setZero();
  if (any_missing) d.missing.assign(static_cast<size_t>(values), 0);
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const auto it = index.find(r.label);
    if (it == index.end()) {
      std::string list;
      for (const auto& c : classes) list += (list.empty() ? "" : ", ") + c;
      const std::string whose = !classes_given         ? "declared classes"
                                : classes_from.empty() ? "given classes"
                                                       : "classes of " + classes_from;
      throw DataError(name + ":" + std::to_string(r.line) + ": label '" + r.label + "' is not one of the " + whose +
                      " (" + list + ")");
    }
    d.labels.push_back(it->second);
    const Index len = static_cast<Index>(r.dims.front().size());
    d.lengths.push_back(len);
    const Index n = static_cast<Index>(i);
    for (Index f = 0; f < F; ++f)
      for (Index t = 0; t < len; ++t) {
        d.x(n, t, f) = r.dims[static_cast<size_t>(f)][static_cast<size_t>(t)];
        if (!r.missing.empty() && r.missing[static_cast<size_t>(f)][static_cast<size_t>(t)])
          d.missing[static_cast<size_t>((n * T + t) * F + f)] = 1;
      }
  }
  return d;
}

// `text` without a UTF-8 byte-order mark at its start; DataError for UTF-16 (byte-order mark FF FE or FE FF).
inline std::string without_bom(const std::string& text, const std::string& name) {
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) return text.substr(3);
  if (text.compare(0, 2, "\xFF\xFE") == 0 || text.compare(0, 2, "\xFE\xFF") == 0)
    throw DataError(name + ": the file is UTF-16 text (byte-order mark " +
                    (text[0] == '\xFF' ? std::string("FF FE") : std::string("FE FF")) + "); save it as UTF-8 or ASCII");
  return text;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// The classes to index the labels with: the given ones (a training set's, canonical) when any, else `declared`.
inline std::vector<std::string> classes_to_use(const std::vector<std::string>& given,
                                               const std::vector<std::string>& declared) {
  std::vector<std::string> canonical;
  for (const auto& c : given) canonical.push_back(canonical_label(c));
  return canonical.empty() ? declared : canonical;
}

}  // namespace ucr_detail
}  // namespace tsc
