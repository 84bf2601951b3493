#pragma once
// The UCR text formats (UCR 2015 .txt/.csv, UCR 2018 .tsv): parse_ucr_text. ucr.hpp chooses it for any file that
// is neither .ts nor .arff.
//
// One univariate series per line, the class label first, then the values, separated by commas, or by tabs and
// spaces (runs of them count as one separator). A numeric label must be a whole number ("1", "-1",
// "1.0000000e+00"): a first field such as "0.4213" means the file has no label column and is refused
// ("f.tsv:1: the first column must be the class label, but '0.4213' is not a whole number (does the file have a
// label column?)"). Missing values ("NaN", "?") at the end of a line shorten the series (UCR 2018 pads its
// unequal-length series that way); in the middle they are kept as missing steps (0 in x, flagged in
// Dataset::missing, filled by impute_missing), as in the .ts and .arff formats. Blank lines are skipped.

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ucr_common.hpp"

namespace tsc {

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
    Record r{canonical_label(fields.front()), {}, static_cast<Index>(n + 1), {}};
    std::vector<Series> series{parse_series(fields, 1, where, "value")};
    if (series.front().present_end == 0) throw DataError(where + "every value is missing");
    assemble_case(r, series, false, where);
    records.push_back(std::move(r));
  }
  return build(records, classes_to_use(classes, {}), name, !classes.empty(), classes_from);
}

}  // namespace tsc
