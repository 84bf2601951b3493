#pragma once
// The .ts format (sktime / aeon, UEA multivariate archive): parse_ts. ucr.hpp chooses it for a name ending in
// ".ts", or a file whose first line starts with '@', '#' or '%' (and is not an .arff "@relation").
//
// Header lines "@keyword value", keywords in any case:
//   @problemName <name>                ignored
//   @timeStamps false                  (true is refused: "timestamped series (@timeStamps true) are not supported")
//   @missing true|false                missing values ('?', NaN) may be anywhere in a series either way
//   @univariate true|false             true: 1 dimension
//   @dimensions <d>                    the number of dimensions (else the first case's)
//   @equalLength true|false            true: every case has the same number of values (@seriesLength, else the
//                                      first case's) and trailing missing values are kept as missing steps
//   @seriesLength <n>                  checked against every case: exactly n values per dimension (at most n with
//                                      @equalLength false)
//   @classLabel true <labels...>       the classes, in this order (numeric or text labels)
//   @targetLabel, @classLabel false    refused (regression, unlabelled data)
// '#' and '%' lines are comments (anywhere); then "@data" and one case per line: the dimensions separated by ':',
// each a comma-separated list of values, and the class label last ("1,2,3:4,5,6:A"). Every dimension of a case has
// the same number of values; cases may differ in length (they are padded and masked). Missing values: see
// ucr_common.hpp (in the middle: 0 in x and marked in Dataset::missing; trailing: a shorter case unless
// @equalLength true).
// Errors "<name>:<line>: <what>", e.g. "x.ts:9: expected 100 values per dimension (@seriesLength 100) but got 99",
// "x.ts:3: dimension 2 has 2 values but dimension 1 has 3 (the dimensions of a case must have equal lengths)".

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ucr_common.hpp"

namespace tsc {

// .ts format (see the file comment). `classes`, `classes_from`: as for parse_ucr (ucr.hpp).
inline Dataset parse_ts(const std::string& text, const std::string& name, const std::vector<std::string>& classes = {},
                        const std::string& classes_from = "") {
  using namespace ucr_detail;
  std::vector<Record> records;
  std::vector<std::string> declared;
  Index dims = -1;           // from @dimensions / @univariate, else from the first case
  int equal_length = -1;     // @equalLength: -1 not given, 0 false, 1 true
  Index series_length = -1;  // @seriesLength, -1 when not given
  Index first_length = -1;   // values per dimension of the first case (@equalLength true without @seriesLength)
  Index first_line = 0;
  bool in_data = false;
  const auto lines = lines_of(without_bom(text, name));
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string line = trim(lines[n]);
    if (line.empty() || line[0] == '#' || line[0] == '%') continue;
    const std::string where = name + ":" + std::to_string(n + 1) + ": ";
    if (!in_data) {
      if (line[0] != '@')
        throw DataError(where + "expected a header line starting with '@' (or @data) but got '" + line.substr(0, 40) +
                        "'");
      const auto words = split_whitespace(line);
      const std::string key = lower(words.front());
      const std::string value = words.size() > 1 ? lower(words[1]) : "";
      const auto boolean = [&](const std::string& keyword) {
        if (value != "true" && value != "false")
          throw DataError(where + keyword + " expects true or false but got '" + value + "'");
        return value == "true";
      };
      const auto whole = [&](const std::string& keyword) {
        double v = 0;
        if (!parse_number(value, v) || !(v >= 1 && v <= 1e6) || v != std::floor(v))
          throw DataError(where + keyword + " expects a positive whole number but got '" + value + "'");
        return static_cast<Index>(v);
      };
      if (key == "@data") {
        in_data = true;
      } else if (key == "@timestamps") {
        if (boolean("@timeStamps")) throw DataError(where + "timestamped series (@timeStamps true) are not supported");
      } else if (key == "@targetlabel") {
        throw DataError(where + "regression data (@targetLabel) is not supported, only classification");
      } else if (key == "@classlabel") {
        if (value != "true")
          throw DataError(where + "@classLabel " + value + ": data without class labels is not supported");
        declared = declared_classes(std::vector<std::string>(words.begin() + 2, words.end()), where, "@classLabel");
      } else if (key == "@univariate") {
        if (boolean("@univariate")) dims = 1;
      } else if (key == "@dimensions") {
        dims = whole("@dimensions");
      } else if (key == "@equallength") {
        equal_length = boolean("@equalLength") ? 1 : 0;
      } else if (key == "@serieslength") {
        series_length = whole("@seriesLength");
      } else if (key == "@missing") {
        boolean("@missing");
      }
      continue;  // other keywords (@problemName) need no action
    }
    auto parts = split_on(line, ':');
    if (parts.size() < 2)
      throw DataError(where + "expected dimensions separated by ':' and the class label last, but found no ':'");
    Record r{canonical_label(parts.back()), {}, static_cast<Index>(n + 1), {}};
    if (parts.back().empty()) throw DataError(where + "the class label (after the last ':') is empty");
    parts.pop_back();
    const Index found = static_cast<Index>(parts.size());
    if (dims < 0) dims = found;
    if (found != dims)
      throw DataError(where + "expected " + std::to_string(dims) + " dimensions but got " + std::to_string(found));
    std::vector<Series> series;
    Index written = 0;  // values per dimension as written (the longest dimension)
    for (size_t k = 0; k < parts.size(); ++k) {
      const std::string what = dims == 1 ? "value" : "dimension " + std::to_string(k + 1) + " value";
      series.push_back(parse_series(split_on(parts[k], ','), 0, where, what));
      written = std::max(written, static_cast<Index>(series.back().values.size()));
    }
    assemble_case(r, series, equal_length == 1, where);
    const std::string per = dims == 1 ? " values" : " values per dimension";
    if (series_length >= 0 && (equal_length == 0 ? written > series_length : written != series_length))
      throw DataError(where + "expected " + (equal_length == 0 ? "at most " : "") + std::to_string(series_length) +
                      per + " (@seriesLength " + std::to_string(series_length) + ") but got " +
                      std::to_string(written));
    if (equal_length == 1 && series_length < 0) {
      if (first_length < 0) first_length = written, first_line = static_cast<Index>(n + 1);
      if (written != first_length)
        throw DataError(where + "expected " + std::to_string(first_length) + per +
                        " (@equalLength true, as in the case on line " + std::to_string(first_line) + ") but got " +
                        std::to_string(written));
    }
    records.push_back(std::move(r));
  }
  if (!in_data) throw DataError(name + ": no @data line (is this a .ts file?)");
  return build(records, classes_to_use(classes, declared), name, !classes.empty(), classes_from);
}

}  // namespace tsc
