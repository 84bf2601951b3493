#pragma once
// Loader for the UCR/UEA time-series classification archive formats.
//
//   load_ucr(path, classes = {}, classes_from = "")   reads a file; a name ending in ".ts", or a first line
//                                         starting with '@' or '#', selects the .ts format, anything else the text
//                                         format. A directory, a missing or an unreadable file is an error naming
//                                         the file and the system's reason ("train.tsv: cannot open the file: No
//                                         such file or directory", "data/: is a directory, not a data file").
//   parse_ucr(text, name, classes = {}, classes_from = "")   the same from the file's contents (name is used in
//                                         error messages)
// UTF-8 byte-order marks are skipped like spaces at the start and end of lines and fields (a file's own, and
// those of files joined with `cat`); UTF-16 text (its byte-order marks) is refused.
//
// Text format (UCR 2015 .txt/.csv, UCR 2018 .tsv): one univariate series per line, the class label first,
// then the values, separated by commas, or by tabs and spaces (runs of them count as one separator). A numeric
// label must be a whole number ("1", "-1", "1.0000000e+00"): a first field such as "0.4213" means the file has
// no label column and is refused ("f.tsv:1: the first column must be the class label, but '0.4213' is not a
// whole number (does the file have a label column?)").
// Missing values ("NaN", "?") may only end a line: UCR 2018 pads its unequal-length series that way, and
// the series is shorter. Blank lines are skipped.
//
// .ts format (sktime / UEA multivariate archive): header lines "@keyword value" (@problemName, @univariate,
// @dimensions, @equalLength, @seriesLength, @missing, @classLabel true <labels...>), '#' comments, then
// "@data" and one case per line: the dimensions separated by ':', each a comma-separated list of values,
// and the class label last ("1,2,3:4,5,6:A"). Every dimension of a case must have the same length; cases
// may differ in length (they are padded and masked). Timestamped data (@timeStamps true) and regression
// (@targetLabel, @classLabel false) are rejected with a message saying so.
//
// Classes: numeric labels that are whole numbers are renamed to their integer spelling ("1.0000000e+00" ->
// "1"). Without `classes`, the classes are the declared @classLabel list, or else the labels found, in
// numeric order when every label is a number and in text order otherwise. Pass the training set's
// class_names as `classes` when loading its test set so both use the same indices, and the training file's
// name as `classes_from`; a label outside `classes` is an error naming both files:
//   "test.tsv:7: label '3' is not one of the classes of train.tsv (1, 2)".
// Errors: DataError "<name>:<line>: <what is wrong>" (line 1-based), e.g.
//   "train.tsv:3: value 4 'abc' is not a number"
// Never crashes on malformed input; the padded data set is limited to 2^28 values.

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "data.hpp"

namespace tsc {
namespace ucr_detail {

struct Record {
  std::string label;
  std::vector<std::vector<float>> dims;  // (F, length)
  Index line = 0;
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

// Values of one series: fields -> floats; trailing missing values are dropped; `what` names the series part
// in messages ("value" or "dimension 2 value").
inline std::vector<float> parse_values(const std::vector<std::string>& fields, size_t first, const std::string& where,
                                       const std::string& what) {
  std::vector<float> values;
  size_t first_missing = 0;
  bool missing = false;
  for (size_t i = first; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    const size_t k = i - first + 1;
    if (f.empty()) throw DataError(where + what + " " + std::to_string(k) + " is empty");
    if (is_missing(f)) {
      if (!missing) first_missing = k;
      missing = true;
      continue;
    }
    double v = 0;
    if (!parse_number(f, v)) throw DataError(where + what + " " + std::to_string(k) + " '" + f + "' is not a number");
    if (missing)
      throw DataError(where + what + " " + std::to_string(first_missing) + " is missing but " + what + " " +
                      std::to_string(k) + " is not (only trailing missing values, for unequal lengths, are supported)");
    if (std::isnan(v)) throw DataError(where + what + " " + std::to_string(k) + " '" + f + "' is not a number");
    if (!(std::abs(v) <= std::numeric_limits<float>::max()))
      throw DataError(where + what + " " + std::to_string(k) + " '" + f + "' is infinite or out of the float range");
    values.push_back(static_cast<float>(v));
  }
  return values;
}

// Records -> Dataset with class indices from `classes` (or derived from the labels when empty).
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
  for (const auto& r : records) T = std::max(T, static_cast<Index>(r.dims.front().size()));
  const double values = static_cast<double>(records.size()) * static_cast<double>(T) * static_cast<double>(F);
  if (values > static_cast<double>(Index{1} << 28))
    throw DataError(name + ": " + std::to_string(records.size()) + " series padded to the longest (" +
                    std::to_string(T) + " steps, " + std::to_string(F) + " dimensions) need too many values");
  Dataset d;
  d.class_names = classes;
  d.x.resize(static_cast<Index>(records.size()), T, F);
  d.x.setZero();
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
    for (Index f = 0; f < F; ++f)
      for (Index t = 0; t < len; ++t) d.x(static_cast<Index>(i), t, f) = r.dims[static_cast<size_t>(f)][static_cast<size_t>(t)];
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

}  // namespace ucr_detail

// UCR text format (see the file comment).
inline Dataset parse_ucr_text(const std::string& text, const std::string& name,
                              const std::vector<std::string>& classes = {}, const std::string& classes_from = "") {
  using namespace ucr_detail;
  std::vector<Record> records;
  const auto lines = lines_of(without_bom(text, name));
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string line = trim(lines[n]);
    if (line.empty()) continue;
    const std::string where = name + ":" + std::to_string(n + 1) + ": ";
    const auto fields = line.find(',') != std::string::npos ? split_on(line, ',') : split_whitespace(line);
    // the label as canonical_label reads it: without byte-order marks at its ends (split_whitespace keeps them;
    // "1.5<U+FEFF>" is the number 1.5, not a text class)
    const std::string label = trim(fields.front());
    if (label.empty()) throw DataError(where + "the class label (first field) is empty");
    if (is_missing(label)) throw DataError(where + "the class label (first field) is missing");
    double label_value = 0;
    if (parse_number(label, label_value) && !(std::isfinite(label_value) && label_value == std::floor(label_value)))
      throw DataError(where + "the first column must be the class label, but '" + label +
                      "' is not a whole number (does the file have a label column?)");
    if (fields.size() < 2) throw DataError(where + "no values after the class label '" + fields.front() + "'");
    Record r{canonical_label(fields.front()), {parse_values(fields, 1, where, "value")}, static_cast<Index>(n + 1)};
    if (r.dims.front().empty()) throw DataError(where + "every value is missing");
    records.push_back(std::move(r));
  }
  std::vector<std::string> canonical;
  for (const auto& c : classes) canonical.push_back(canonical_label(c));
  return build(records, canonical, name, !classes.empty(), classes_from);
}

// .ts format (see the file comment).
inline Dataset parse_ts(const std::string& text, const std::string& name, const std::vector<std::string>& classes = {},
                        const std::string& classes_from = "") {
  using namespace ucr_detail;
  std::vector<Record> records;
  std::vector<std::string> declared;
  Index dims = -1;  // from @dimensions / @univariate, else from the first case
  bool in_data = false;
  const auto lines = lines_of(without_bom(text, name));
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string line = trim(lines[n]);
    if (line.empty() || line[0] == '#') continue;
    const std::string where = name + ":" + std::to_string(n + 1) + ": ";
    if (!in_data) {
      if (line[0] != '@')
        throw DataError(where + "expected a header line starting with '@' (or @data) but got '" + line.substr(0, 40) +
                        "'");
      const auto words = split_whitespace(line);
      const std::string key = lower(words.front());
      const std::string value = words.size() > 1 ? lower(words[1]) : "";
      if (key == "@data") {
        in_data = true;
      } else if (key == "@timestamps" && value == "true") {
        throw DataError(where + "timestamped series (@timeStamps true) are not supported");
      } else if (key == "@targetlabel") {
        throw DataError(where + "regression data (@targetLabel) is not supported, only classification");
      } else if (key == "@classlabel") {
        if (value != "true")
          throw DataError(where + "@classLabel " + value + ": data without class labels is not supported");
        for (size_t i = 2; i < words.size(); ++i) {
          declared.push_back(canonical_label(words[i]));
          if (declared.back().empty())
            throw DataError(where + "@classLabel lists class " + std::to_string(i - 1) +
                            " as a byte-order mark only; remove it");
        }
      } else if (key == "@univariate" && value == "true") {
        dims = 1;
      } else if (key == "@dimensions") {
        double v = 0;
        if (!parse_number(value, v) || !(v >= 1 && v <= 1e6) || v != std::floor(v))
          throw DataError(where + "@dimensions expects a positive whole number but got '" + value + "'");
        dims = static_cast<Index>(v);
      }
      continue;  // other keywords (@problemName, @equalLength, @seriesLength, @missing) need no action
    }
    auto parts = split_on(line, ':');
    if (parts.size() < 2)
      throw DataError(where + "expected dimensions separated by ':' and the class label last, but found no ':'");
    Record r{canonical_label(parts.back()), {}, static_cast<Index>(n + 1)};
    if (parts.back().empty()) throw DataError(where + "the class label (after the last ':') is empty");
    parts.pop_back();
    const Index found = static_cast<Index>(parts.size());
    if (dims < 0) dims = found;
    if (found != dims)
      throw DataError(where + "expected " + std::to_string(dims) + " dimensions but got " + std::to_string(found));
    for (size_t k = 0; k < parts.size(); ++k) {
      const std::string what = dims == 1 ? "value" : "dimension " + std::to_string(k + 1) + " value";
      r.dims.push_back(parse_values(split_on(parts[k], ','), 0, where, what));
      if (r.dims.back().empty())
        throw DataError(where + (dims == 1 ? std::string("the series") : "dimension " + std::to_string(k + 1)) +
                        " has no values");
      if (r.dims.back().size() != r.dims.front().size())
        throw DataError(where + "dimension " + std::to_string(k + 1) + " has " + std::to_string(r.dims.back().size()) +
                        " values but dimension 1 has " + std::to_string(r.dims.front().size()) +
                        " (the dimensions of a case must have equal lengths)");
    }
    records.push_back(std::move(r));
  }
  if (!in_data) throw DataError(name + ": no @data line (is this a .ts file?)");
  std::vector<std::string> canonical;
  for (const auto& c : classes) canonical.push_back(canonical_label(c));
  return build(records, canonical.empty() ? declared : canonical, name, !classes.empty(), classes_from);
}

// Chooses the format from the name (".ts") or the first non-blank line ('@' or '#': .ts).
inline Dataset parse_ucr(const std::string& text, const std::string& name, const std::vector<std::string>& classes = {},
                         const std::string& classes_from = "") {
  const std::string body = ucr_detail::without_bom(text, name);
  const std::string lname = ucr_detail::lower(name);
  bool ts = lname.size() >= 3 && lname.compare(lname.size() - 3, 3, ".ts") == 0;
  if (!ts) {
    const size_t first = body.find_first_not_of(" \t\r\n\v\f");
    ts = first != std::string::npos && (body[first] == '@' || body[first] == '#');
  }
  return ts ? parse_ts(body, name, classes, classes_from) : parse_ucr_text(body, name, classes, classes_from);
}

// Opens `path` for reading; DataError "<path>: is a directory, not a data file" or "<path>: cannot open the
// file: <system reason>" (checks.hpp opens --train and --test with it before any work).
inline std::ifstream open_data_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError(path + ": is a directory, not a data file");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  const int err = errno;
  if (!in) throw DataError(path + ": cannot open the file" + (err != 0 ? ": " + std::string(std::strerror(err)) : ""));
  return in;
}

inline Dataset load_ucr(const std::string& path, const std::vector<std::string>& classes = {},
                        const std::string& classes_from = "") {
  std::ifstream in = open_data_file(path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    const int err = errno;
    throw DataError(path + ": read error" + (err != 0 ? ": " + std::string(std::strerror(err)) : ""));
  }
  return parse_ucr(text.str(), path, classes, classes_from);
}

}  // namespace tsc
