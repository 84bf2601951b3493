#pragma once
// Loader for the UCR/UEA time-series classification archive formats (the entry point; each format has its header):
//
//   load_ucr(path, classes = {}, classes_from = "")   reads a file. A directory, a missing or an unreadable file is
//                                         an error naming the file and the system's reason ("train.tsv: cannot open
//                                         the file: No such file or directory", "data/: is a directory, not a data
//                                         file").
//   parse_ucr(text, name, classes = {}, classes_from = "")   the same from the file's contents (name is used in
//                                         error messages and to choose the format)
// The format: by the name's extension (any case), ".ts" -> .ts, ".arff" -> .arff; else by the content: a first
// line that is not blank or a comment ('%', '#') starting with "@relation" (any case) -> .arff; a first non-blank
// line starting with '@', '#' or '%' -> .ts; anything else -> the text format.
//   ucr_text.hpp  parse_ucr_text  UCR 2015 .txt/.csv and UCR 2018 .tsv: univariate, the label first, values
//                                 separated by commas, tabs or spaces; missing values only at the end
//   ucr_ts.hpp    parse_ts        the sktime/aeon .ts format: univariate or multivariate, equal or unequal lengths,
//                                 missing values anywhere, @seriesLength checked
//   ucr_arff.hpp  parse_arff      Weka .arff: univariate (a numeric attribute per step) or multivariate (one
//                                 relational attribute), the nominal class last
// Missing values in the middle of a series (.ts, .arff) are 0 in x and marked in Dataset::missing: call
// impute_missing (data.hpp) to fill them; trailing ones shorten the series (ucr_common.hpp). x never holds NaN.
// UTF-8 byte-order marks are skipped like spaces at the start and end of lines and fields (a file's own, and
// those of files joined with `cat`) and are never part of a class name (labels, .ts @classLabel lists, .arff
// nominal lists); UTF-16 text (its byte-order marks) is refused.
//
// Classes: numeric labels that are whole numbers are renamed to their integer spelling ("1.0000000e+00" ->
// "1"). Without `classes`, the classes are the declared ones (.ts @classLabel, .arff nominal list, in their
// order), or else the labels found, in numeric order when every label is a number and in text order otherwise.
// Pass the training set's class_names as `classes` when loading its test set so both use the same indices, and
// the training file's name as `classes_from`; a label outside `classes` is an error naming both files:
//   "test.tsv:7: label '3' is not one of the classes of train.tsv (1, 2)".
// Errors: DataError "<name>:<line>: <what is wrong>" (line 1-based), e.g.
//   "train.tsv:3: value 4 'abc' is not a number", "x.arff:12: expected 100 values but got 99",
//   "x.ts:9: expected 150 values (@seriesLength 150) but got 149"
// or "<name>: <what>" for the whole file ("x.ts: no @data line (is this a .ts file?)").
// Never crashes on malformed input; the padded data set is limited to 2^28 values.

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data.hpp"
#include "ucr_arff.hpp"
#include "ucr_common.hpp"
#include "ucr_text.hpp"
#include "ucr_ts.hpp"

namespace tsc {

enum class UcrFormat { Text, Ts, Arff };

// The format parse_ucr reads `text` (without a leading byte-order mark) named `name` in (see the file comment).
inline UcrFormat ucr_format(const std::string& text, const std::string& name) {
  using namespace ucr_detail;
  const std::string lname = lower(name);
  const auto ends_with = [&](const std::string& ext) {
    return lname.size() >= ext.size() && lname.compare(lname.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (ends_with(".ts")) return UcrFormat::Ts;
  if (ends_with(".arff")) return UcrFormat::Arff;
  bool first = true;
  std::istringstream in(text);
  for (std::string raw; std::getline(in, raw);) {
    const std::string line = trim(raw);
    if (line.empty()) continue;
    if (first && line[0] != '@' && line[0] != '#' && line[0] != '%') return UcrFormat::Text;
    first = false;
    if (line[0] == '%' || line[0] == '#') continue;
    if (starts_with_nocase(line, "@relation") &&
        (line.size() == 9 || std::isspace(static_cast<unsigned char>(line[9])) || line[9] == '\'' || line[9] == '"'))
      return UcrFormat::Arff;
    return UcrFormat::Ts;
  }
  return first ? UcrFormat::Text : UcrFormat::Ts;
}

// Reads `text` in the format ucr_format chooses.
inline Dataset parse_ucr(const std::string& text, const std::string& name, const std::vector<std::string>& classes = {},
                         const std::string& classes_from = "") {
  const std::string body = ucr_detail::without_bom(text, name);
  switch (ucr_format(body, name)) {
    case UcrFormat::Ts: return parse_ts(body, name, classes, classes_from);
    case UcrFormat::Arff: return parse_arff(body, name, classes, classes_from);
    case UcrFormat::Text: break;
  }
  return parse_ucr_text(body, name, classes, classes_from);
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
