#pragma once
// The .arff format (Weka; the UCR/UEA archive ships its data sets in it too): parse_arff. ucr.hpp chooses it for
// a name ending in ".arff", or a file whose first line that is not a comment starts with "@relation".
//
// Keywords in any case; '%' lines are comments (anywhere); blank lines are skipped. Two layouts:
//   univariate     @relation <name>
//                  @attribute <name> numeric|real|integer      one per step (T of them)
//                  @attribute <name> {label1,label2,...}       the class, last
//                  @data
//                  v1,v2,...,vT,label                          one series per line
//   multivariate   @attribute <name> relational                one relational attribute of T numeric attributes:
//                    @attribute <name> numeric ...             a channel of T steps
//                  @end <name>
//                  @attribute <name> {label1,...}               the class, last
//                  @data
//                  '1,2,3\n4,5,6',label                        the quoted field holds one line per channel,
//                                                              separated by the two characters backslash and n
// The classes are the nominal list, in its order (its byte-order marks, quotes and spaces stripped; numeric
// labels canonical as in the other formats); quoted names and labels ('a b', "x") are unquoted. Every series has
// T values ('?' or NaN where missing), every channel of a case the same number; trailing missing values shorten a
// series (unequal lengths are padded that way), missing values before its end are 0 in x and marked in
// Dataset::missing (ucr_common.hpp). Sparse data ('{...}' lines), string and date attributes, several relational
// or nominal attributes and a numeric class (regression) are refused with a message saying so.
// Errors "<name>:<line>: <what>", e.g. "x.arff:12: expected 100 values but got 99",
// "x.arff:40: channel 2: expected 100 values but got 99", "x.arff:9: label 'c' is not one of the declared
// classes (a, b)".

#include <string>
#include <utility>
#include <vector>

#include "ucr_common.hpp"

namespace tsc {
namespace ucr_detail {

// `s` without its enclosing quotes ('x' or "x"), else `s`.
inline std::string unquote(const std::string& s) {
  if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

// Splits an .arff line on `sep` outside quotes; each field trimmed, quotes kept. Inside quotes, a backslash before
// the quote character escapes it (dropped); other backslash pairs ("\n") are kept as written. DataError for an
// unterminated quote.
inline std::vector<std::string> split_arff(const std::string& line, char sep, const std::string& where) {
  std::vector<std::string> out;
  std::string field;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote != 0) {
      if (c == '\\' && i + 1 < line.size()) {
        if (line[i + 1] != quote) field += c;
        field += line[++i];
      } else {
        field += c;
        if (c == quote) quote = 0;
      }
    } else if (c == sep) {
      out.push_back(trim(field));
      field.clear();
    } else {
      if ((c == '\'' || c == '"') && trim(field).empty()) quote = c;
      field += c;
    }
  }
  if (quote != 0) throw DataError(where + "a quote (" + std::string(1, quote) + ") is not closed on this line");
  out.push_back(trim(field));
  return out;
}

// "@attribute <name> <type>" -> {name, type}; the name may be quoted.
inline std::pair<std::string, std::string> attribute_of(const std::string& line, const std::string& where) {
  std::string rest = trim(line.substr(10));  // after "@attribute"
  if (rest.empty()) throw DataError(where + "@attribute without a name and a type");
  size_t end = 0;
  if (rest[0] == '\'' || rest[0] == '"') {
    end = rest.find(rest[0], 1);
    if (end == std::string::npos) throw DataError(where + "the attribute name's quote is not closed");
    ++end;
  } else {
    end = rest.find_first_of(" \t{");
    if (end == std::string::npos) end = rest.size();
  }
  return {unquote(rest.substr(0, end)), trim(rest.substr(end))};
}

}  // namespace ucr_detail

// .arff format (see the file comment). `classes`, `classes_from`: as for parse_ucr (ucr.hpp).
inline Dataset parse_arff(const std::string& text, const std::string& name,
                          const std::vector<std::string>& classes = {}, const std::string& classes_from = "") {
  using namespace ucr_detail;
  enum class Kind { Numeric, Relational, Nominal };
  struct Attribute {
    std::string name;
    Kind kind;
    Index line;
  };
  std::vector<Attribute> attributes;  // top level
  std::vector<std::string> declared;  // the nominal list
  Index steps = 0;                    // numeric attributes (top level, or inside the relational one)
  bool in_relational = false, in_data = false;
  std::string relational_name;
  Index channels = -1;  // of the first case (relational)
  std::vector<Record> records;
  const auto lines = lines_of(without_bom(text, name));
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string line = trim(lines[n]);
    if (line.empty() || line[0] == '%') continue;
    const Index line_no = static_cast<Index>(n + 1);
    const std::string where = name + ":" + std::to_string(line_no) + ": ";
    if (!in_data) {
      if (line[0] != '@')
        throw DataError(where + "expected a header line starting with '@' (or @data) but got '" + line.substr(0, 40) +
                        "'");
      const std::string key = lower(split_whitespace(line).front());
      if (key == "@relation") {
        continue;
      } else if (key == "@attribute") {
        const auto [attr, type] = attribute_of(line, where);
        const std::string ltype = lower(type);
        const bool numeric = ltype == "numeric" || ltype == "real" || ltype == "integer";
        if (!attributes.empty() && attributes.back().kind == Kind::Nominal)
          throw DataError(where + "attribute '" + attr + "' follows the nominal attribute '" + attributes.back().name +
                          "' (line " + std::to_string(attributes.back().line) +
                          "): the class must be the last attribute and the only nominal one");
        if (in_relational) {
          if (!numeric)
            throw DataError(where + "attribute '" + attr + "' of the relational attribute '" + relational_name +
                            "' has the type '" + type + "'; only numeric ones are supported");
          ++steps;
        } else if (numeric) {
          if (!attributes.empty() && attributes.back().kind == Kind::Relational)
            throw DataError(where + "attribute '" + attr + "' follows the relational attribute '" +
                            attributes.back().name + "'; only the class may follow it");
          attributes.push_back({attr, Kind::Numeric, line_no});
          ++steps;
        } else if (ltype == "relational") {
          if (!attributes.empty())
            throw DataError(where + "the relational attribute '" + attr +
                            "' must be the first attribute (one relational attribute, then the class)");
          attributes.push_back({attr, Kind::Relational, line_no});
          in_relational = true;
          relational_name = attr;
        } else if (!type.empty() && type[0] == '{') {
          const size_t close = type.rfind('}');
          if (close == std::string::npos || trim(type.substr(close + 1)) != "")
            throw DataError(where + "the nominal attribute '" + attr + "' must list its values as {a,b,...}");
          std::vector<std::string> raw;
          for (const auto& v : split_arff(type.substr(1, close - 1), ',', where)) raw.push_back(unquote(trim(v)));
          declared = declared_classes(raw, where, "the nominal attribute '" + attr + "'");
          if (declared.empty()) throw DataError(where + "the nominal attribute '" + attr + "' lists no class");
          attributes.push_back({attr, Kind::Nominal, line_no});
        } else {
          throw DataError(where + "attribute '" + attr + "' has the type '" + type +
                          "'; only numeric attributes (or one relational attribute of them) and a nominal class are "
                          "supported");
        }
      } else if (key == "@end") {
        if (!in_relational) throw DataError(where + "@end without a relational attribute");
        in_relational = false;
      } else if (key == "@data") {
        if (in_relational)
          throw DataError(where + "@data inside the relational attribute '" + relational_name + "' (no @end)");
        if (attributes.empty() || attributes.back().kind != Kind::Nominal)
          throw DataError(where + "the last attribute must be the nominal class ({a,b,...}); " +
                          (attributes.empty() ? std::string("there are no attributes")
                                              : "'" + attributes.back().name + "' (line " +
                                                    std::to_string(attributes.back().line) + ") is not nominal") +
                          " (regression and unlabelled data are not supported)");
        if (steps == 0) throw DataError(where + "no numeric attributes (the series' values) before the class");
        in_data = true;
      } else {
        throw DataError(where + "unknown keyword '" + split_whitespace(line).front() +
                        "' (expected @relation, @attribute, @end or @data)");
      }
      continue;
    }
    if (line[0] == '{') throw DataError(where + "sparse data ('{index value, ...}') is not supported");
    const auto fields = split_arff(line, ',', where);
    const bool relational = attributes.front().kind == Kind::Relational;
    const std::string label = canonical_label(unquote(fields.back()));
    if (label.empty()) throw DataError(where + "the class label (the last field) is empty");
    if (is_missing(label)) throw DataError(where + "the class label (the last field) is missing");
    Record r{label, {}, line_no, {}};
    std::vector<Series> series;
    if (!relational) {
      if (static_cast<Index>(fields.size()) != steps + 1)
        throw DataError(where + "expected " + std::to_string(steps) + " values but got " +
                        std::to_string(fields.size() - 1));
      series.push_back(parse_series(std::vector<std::string>(fields.begin(), fields.end() - 1), 0, where, "value"));
    } else {
      if (fields.size() != 2)
        throw DataError(where + "expected the quoted channels of '" + relational_name + "' and the class label (2 " +
                        "fields) but got " + std::to_string(fields.size()) + " fields");
      const std::string body = fields.front();
      if (body.size() < 2 || (body[0] != '\'' && body[0] != '"'))
        throw DataError(where + "the channels of '" + relational_name + "' must be quoted ('1,2\\n3,4')");
      std::vector<std::string> rows;
      const std::string inner = unquote(body);
      for (size_t begin = 0;;) {
        const size_t end = inner.find("\\n", begin);
        rows.push_back(trim(inner.substr(begin, end == std::string::npos ? std::string::npos : end - begin)));
        if (end == std::string::npos) break;
        begin = end + 2;
      }
      if (channels < 0) channels = static_cast<Index>(rows.size());
      if (static_cast<Index>(rows.size()) != channels)
        throw DataError(where + "expected " + std::to_string(channels) + " channels but got " +
                        std::to_string(rows.size()));
      for (size_t k = 0; k < rows.size(); ++k) {
        const std::string channel = "channel " + std::to_string(k + 1);
        series.push_back(parse_series(split_on(rows[k], ','), 0, where, channel + " value"));
        if (static_cast<Index>(series.back().values.size()) != steps)
          throw DataError(where + channel + ": expected " + std::to_string(steps) + " values but got " +
                          std::to_string(series.back().values.size()));
      }
    }
    assemble_case(r, series, false, where, "channel");
    records.push_back(std::move(r));
  }
  if (!in_data) throw DataError(name + ": no @data line (is this an .arff file?)");
  return build(records, classes_to_use(classes, declared), name, !classes.empty(), classes_from);
}

}  // namespace tsc
