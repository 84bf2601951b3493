// libFuzzer target for the UCR/UEA loader of the time-series classifier example (parse_ucr: the text formats,
// the .ts format and the .arff format). Any input must either load into a consistent Dataset or throw tsc::DataError;
// anything else (another exception, a crash, a sanitizer report, an inconsistent data set) is a bug. A loaded data set
// must also pass check_compatible with itself and standardize without an error and to finite values; a class
// name never keeps a UTF-8 byte-order mark, and a numeric class of the text format is a whole number (a file
// without a label column is refused, not read as one class per value). A missing-value mask has one flag per
// value, none past a sequence's length and only over zeros of x; impute_missing leaves finite values and no mask.
// The first input byte picks the file name (bit 0: ".ts", else ".tsv"; bit 2: ".arff", which wins; the name
// selects the parser, else the content does) and whether the classes of a training set are given (bit 1); the
// rest is the file's text. Seeds: fuzz/corpus/ucr.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "../examples/time_series_classifier/ucr.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string name = (data[0] & 4) ? "fuzz.arff" : (data[0] & 1) ? "fuzz.ts" : "fuzz.tsv";
  std::vector<std::string> classes;
  if (data[0] & 2) classes = {"1", "2", "A", "3.5"};
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const tsc::Dataset d = tsc::parse_ucr(text, name, classes);
    const tsc::Index N = d.x.dimension(0), T = d.x.dimension(1);
    if (N < 1 || T < 1 || d.x.dimension(2) < 1 || d.size() != N || static_cast<tsc::Index>(d.lengths.size()) != N)
      std::abort();
    if (d.classes() < 1 || (!classes.empty() && d.class_names.size() != classes.size())) std::abort();
    for (tsc::Index i = 0; i < N; ++i) {
      const tsc::Index len = d.lengths[static_cast<size_t>(i)];
      const int label = d.labels[static_cast<size_t>(i)];
      if (len < 1 || len > T || label < 0 || label >= d.classes()) std::abort();
      for (tsc::Index t = 0; t < T; ++t)
        for (tsc::Index f = 0; f < d.x.dimension(2); ++f)
          if (!std::isfinite(d.x(i, t, f)) || (t >= len && d.x(i, t, f) != 0.0f)) std::abort();
    }
    if (!d.missing.empty()) {
      if (static_cast<tsc::Index>(d.missing.size()) != d.x.size()) std::abort();
      for (tsc::Index i = 0; i < N; ++i)
        for (tsc::Index t = 0; t < T; ++t)
          for (tsc::Index f = 0; f < d.x.dimension(2); ++f)
            if (d.is_missing(i, t, f) && (t >= d.lengths[static_cast<size_t>(i)] || d.x(i, t, f) != 0.0f)) std::abort();
    }
    const std::string body = tsc::ucr_detail::without_bom(text, name);  // parse_ucr's choice of the format
    const bool text_format = tsc::ucr_format(body, name) == tsc::UcrFormat::Text;
    for (const std::string& c : d.class_names) {
      if (c.compare(0, 3, "\xEF\xBB\xBF") == 0) std::abort();
      double v = 0;
      if (text_format && classes.empty() && tsc::ucr_detail::parse_number(c, v) && std::isfinite(v) &&
          v != std::floor(v))
        std::abort();
    }
    if (!tsc::check_compatible(d, d, "train", "test").empty()) std::abort();
    tsc::Dataset copy = d;
    tsc::standardize(d, {&copy});
    tsc::impute_missing(copy);
    if (!copy.missing.empty()) std::abort();
    for (tsc::Index k = 0; k < copy.x.size(); ++k)
      if (!std::isfinite(copy.x.data()[k])) std::abort();
  } catch (const tsc::DataError&) {
  }
  return 0;
}
