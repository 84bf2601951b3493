#pragma once
// The UCR text formats (UCR 2015 .txt/.csv, UCR 2018 .tsv): parse_ucr_text. ucr.hpp chooses it for any file that
// is neither .ts nor .arff.
//
// One univariate series per line, the class label first, then the values, separated by commas, or by tabs and
// spaces (runs of them count as one separator). A numeric label must be a whole number ("1", "-1",
// "1.0000000e+00"): a first field such as "0.4213" means the file has no label column and is refused
// ("f.tsv:1: the first column must be the class label, but '0.4213' is not a whole number (does the file have a
// label column?)"). Missing values ("NaN", "?") may only end a line: UCR 2018 pads its unequal-length series that
// way, and the series is shorter ("f.tsv:3: value 1 is missing but value 2 is not (only trailing missing values,
// for unequal lengths, are supported)"). Blank lines are skipped.

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ucr_common.hpp"

namespace tsc {
namespace ucr_detail {

// Values of one text-format series: fields -> floats; trailing missing values are dropped, others refused;
// `what` names a value in messages ("value").
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

}  // namespace ucr_detail

// UCR text format (see the file comment). `classes`, `classes_from`: as for parse_ucr (ucr.hpp).
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
    Record r{canonical_label(fields.front()), {parse_values(fields, 1, where, "value")}, static_cast<Index>(n + 1), {}};
    if (r.dims.front().empty()) throw DataError(where + "every value is missing");
    records.push_back(std::move(r));
  }
  return build(records, classes_to_use(classes, {}), name, !classes.empty(), classes_from);
}

}  // namespace tsc
