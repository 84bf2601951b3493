#pragma once
/// \file
/// Config: the options of a layer as a small JSON-like value (what a model file stores for each layer, with Keras
/// option names where Keras has the option), and the checked reader that rebuilds a layer from one.
///
/// ```unparsed
///   Config          null, bool, int64, double, string, array or object (keys kept in insertion order).
///                   Config c = Config::object(); c.set("units", 8); c.find("units")->as_int(); c.dump() (JSON).
///   ConfigReader    reads an object's keys with their types checked, remembers which keys it read and refuses
///                   the others in finish(); every error is a ConfigError naming the layer, the key, the expected
///                   and the received value: "Dense config: 'units' expected a positive integer but got -3",
///                   "Dense config: unknown option 'unitz' (options: units, activation, ...)".
///   ConfigCodec<T>  write(value) -> Config and read(config, reader, key) -> T for bool, Index, double, string,
///                   std::uint64_t (seeds), std::optional<T>, Init, and every enum that has config_names(E) (found
///                   by argument-dependent lookup: a list of {value, "keras name"}).
///   Options structs list their fields once, in a static visit_options(self, visitor) (visitor(key, field) per
///   field); write_options(config, options) adds every field to a Config, read_options<O>(reader) builds O from its
///   defaults and the keys present (a missing key keeps the default, a key of the wrong type throws).
/// ```
/// The core depends on Eigen only: the JSON text of a model file is read and written in io/model_file.hpp.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"
#include "seqattn/core/init.hpp"

namespace seqattn {

/// A JSON-like value (null, bool, integer, double, string, array, object with ordered keys): a layer's options
/// in a model file; see the file documentation.
class Config {
 public:
  /// The type of the value.
  enum class Kind { Null, Bool, Int, Double, String, Array, Object };

  Config() = default;
  /// Null.
  Config(std::nullptr_t) {}
  /// A boolean.
  Config(bool value) : kind_(Kind::Bool), bool_(value) {}
  /// An integer (any integral type that fits in int64).
  template <class I, std::enable_if_t<std::is_integral<I>::value && !std::is_same<I, bool>::value, int> = 0>
  Config(I value) : kind_(Kind::Int), int_(static_cast<std::int64_t>(value)) {
    if (std::is_unsigned<I>::value && static_cast<std::uint64_t>(value) > std::uint64_t(INT64_MAX))
      detail::throw_config("Config: integer ", value, " does not fit a signed 64-bit integer");
  }
  /// A double.
  Config(double value) : kind_(Kind::Double), double_(value) {}
  /// A string.
  Config(std::string value) : kind_(Kind::String), string_(std::move(value)) {}
  /// A string.
  Config(const char* value) : kind_(Kind::String), string_(value) {}

  /// An empty array.
  static Config array() {
    Config c;
    c.kind_ = Kind::Array;
    return c;
  }
  /// An empty object.
  static Config object() {
    Config c;
    c.kind_ = Kind::Object;
    return c;
  }

  /// The type of the value.
  Kind kind() const { return kind_; }
  /// True for null.
  bool is_null() const { return kind_ == Kind::Null; }
  /// True for an object.
  bool is_object() const { return kind_ == Kind::Object; }
  /// True for an array.
  bool is_array() const { return kind_ == Kind::Array; }
  /// Typed values; ConfigError "Config: expected \<kind> but got \<value>" on another kind (as_double takes an int).
  bool as_bool() const { return expect(Kind::Bool), bool_; }
  /// The integer (ConfigError for another type).
  std::int64_t as_int() const { return expect(Kind::Int), int_; }
  /// The number, an integer or a double (ConfigError for another type).
  double as_double() const {
    if (kind_ == Kind::Int) return static_cast<double>(int_);
    return expect(Kind::Double), double_;
  }
  /// The string (ConfigError for another type).
  const std::string& as_string() const { return expect(Kind::String), string_; }

  /// Arrays and objects: their elements (an object's values, in key order).
  std::size_t size() const { return values_.size(); }
  /// The elements of an array, or the values of an object in key order.
  const std::vector<Config>& elements() const { return values_; }
  /// Appends an element to an array.
  void push_back(Config value) {
    expect(Kind::Array);
    values_.push_back(std::move(value));
  }
  /// Objects: keys in insertion order; set() replaces the value of an existing key.
  const std::vector<std::string>& keys() const { return keys_; }
  /// Sets key to value in an object (replacing the value of an existing key, else appending the key); returns
  /// the stored value.
  Config& set(const std::string& key, Config value) {
    expect(Kind::Object);
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] == key) return values_[i] = std::move(value);
    keys_.push_back(key);
    values_.push_back(std::move(value));
    return values_.back();
  }
  /// The value of key in an object; nullptr when it is missing or this is not an object.
  const Config* find(const std::string& key) const {
    if (kind_ != Kind::Object) return nullptr;
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] == key) return &values_[i];
    return nullptr;
  }

  /// Deep equality (same type, values, keys in the same order).
  friend bool operator==(const Config& a, const Config& b) {
    if (a.kind_ != b.kind_) return false;
    switch (a.kind_) {
      case Kind::Null: return true;
      case Kind::Bool: return a.bool_ == b.bool_;
      case Kind::Int: return a.int_ == b.int_;
      case Kind::Double: return std::memcmp(&a.double_, &b.double_, sizeof(double)) == 0;
      case Kind::String: return a.string_ == b.string_;
      case Kind::Array:
      case Kind::Object: return a.keys_ == b.keys_ && a.values_ == b.values_;
    }
    return false;
  }
  /// Deep inequality.
  friend bool operator!=(const Config& a, const Config& b) { return !(a == b); }

  /// The name of a type for messages ("an object").
  static const char* kind_name(Kind kind) {
    switch (kind) {
      case Kind::Null: return "null";
      case Kind::Bool: return "a bool";
      case Kind::Int: return "an integer";
      case Kind::Double: return "a number";
      case Kind::String: return "a string";
      case Kind::Array: return "an array";
      case Kind::Object: return "an object";
    }
    return "?";
  }

  /// Compact JSON (numbers with 17 significant digits; non-finite numbers as null, as JSON has none), cut to
  /// about max_length characters with "..." (messages).
  std::string dump(std::size_t max_length = std::string::npos) const {
    std::string out;
    dump_to(out, max_length);
    if (out.size() > max_length) out = out.substr(0, max_length) + "...";
    return out;
  }

 private:
  void expect(Kind kind) const {
    if (kind_ != kind) detail::throw_config("Config: expected ", kind_name(kind), " but got ", dump(80));
  }
  static void quote(std::string& out, const std::string& s) {
    out += '"';
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 32) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        out += buf;
      } else {
        out += c;
      }
    }
    out += '"';
  }
  void dump_to(std::string& out, std::size_t max_length) const {
    if (out.size() > max_length) return;
    switch (kind_) {
      case Kind::Null: out += "null"; break;
      case Kind::Bool: out += bool_ ? "true" : "false"; break;
      case Kind::Int: out += std::to_string(int_); break;
      case Kind::Double: {
        if (!std::isfinite(double_)) {
          out += "null";
          break;
        }
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", double_);
        out += buf;
        break;
      }
      case Kind::String: quote(out, string_); break;
      case Kind::Array:
      case Kind::Object: {
        const bool object = kind_ == Kind::Object;
        out += object ? '{' : '[';
        for (std::size_t i = 0; i < values_.size() && out.size() <= max_length; ++i) {
          if (i) out += ',';
          if (object) {
            quote(out, keys_[i]);
            out += ':';
          }
          values_[i].dump_to(out, max_length);
        }
        out += object ? '}' : ']';
        break;
      }
    }
  }

  Kind kind_ = Kind::Null;
  bool bool_ = false;
  std::int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  std::vector<std::string> keys_;  // objects
  std::vector<Config> values_;     // arrays and objects
};

template <class T, class Enable = void>
struct ConfigCodec;

/// Reads the keys of one object; `who` starts every message ("Dense config").
class ConfigReader {
 public:
  /// Reads `config`, which must be an object (ConfigError otherwise).
  ConfigReader(const Config& config, std::string who) : config_(config), who_(std::move(who)) {
    if (!config.is_object()) detail::throw_config(who_, ": expected an object but got ", config.dump(80));
    used_.assign(config.keys().size(), false);
  }

  /// The name that starts every message.
  const std::string& who() const { return who_; }
  /// Whether the object has the key (does not mark it read).
  bool has(const std::string& key) const { return config_.find(key) != nullptr; }

  /// The value of a required key (marked read); ConfigError when it is missing.
  const Config& get(const std::string& key) {
    const Config* value = find(key);
    if (!value) detail::throw_config(who_, ": missing option '", key, "'");
    return *value;
  }
  /// The value of a required key converted by ConfigCodec\<T>.
  template <class T>
  T read(const std::string& key) {
    return ConfigCodec<T>::read(get(key), *this, key);
  }
  /// A required integer >= 1 (sizes: units, heads, filters, ...).
  Index read_size(const std::string& key) {
    const Config& value = get(key);
    if (value.kind() != Config::Kind::Int || value.as_int() < 1) fail(key, "a positive integer", value);
    return static_cast<Index>(value.as_int());
  }
  /// An optional key: `field` keeps its value when the key is missing.
  template <class T>
  void read_into(const std::string& key, T& field) {
    if (const Config* value = find(key)) field = ConfigCodec<T>::read(*value, *this, key);
  }

  /// Throws ConfigError "\<who>: '\<key>' expected \<expected> but got \<value>".
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const Config& got) const {
    detail::throw_config(who_, ": '", key, "' expected ", expected, " but got ", got.dump(80));
  }

  /// Refuses the keys no read asked for: "Dense config: unknown option 'unitz' (options: units, activation)".
  void finish() const {
    for (std::size_t i = 0; i < used_.size(); ++i) {
      if (used_[i]) continue;
      std::string known;
      for (std::size_t j = 0; j < used_.size(); ++j)
        if (used_[j]) known += (known.empty() ? "" : ", ") + config_.keys()[j];
      detail::throw_config(who_, ": unknown option '", config_.keys()[i], "'",
                           known.empty() ? std::string() : " (options read: " + known + ")");
    }
  }

 private:
  const Config* find(const std::string& key) {
    for (std::size_t i = 0; i < config_.keys().size(); ++i)
      if (config_.keys()[i] == key) {
        used_[i] = true;
        return &config_.elements()[i];
      }
    return nullptr;
  }

  const Config& config_;
  std::string who_;
  std::vector<bool> used_;
};

/// Booleans.
template <>
struct ConfigCodec<bool> {
  /// The value as a Config.
  static Config write(bool v) { return Config(v); }
  /// The value of key `key` (ConfigError through `r` for another type).
  static bool read(const Config& c, const ConfigReader& r, const std::string& key) {
    if (c.kind() != Config::Kind::Bool) r.fail(key, "true or false", c);
    return c.as_bool();
  }
};
/// Sizes and counts: integers.
template <>
struct ConfigCodec<Index> {
  /// The value as a Config.
  static Config write(Index v) { return Config(static_cast<std::int64_t>(v)); }
  /// The value of key `key` (ConfigError through `r` for another type).
  static Index read(const Config& c, const ConfigReader& r, const std::string& key) {
    if (c.kind() != Config::Kind::Int) r.fail(key, "an integer", c);
    return static_cast<Index>(c.as_int());
  }
};
/// Doubles (integers are read too).
template <>
struct ConfigCodec<double> {
  /// The value as a Config.
  static Config write(double v) { return Config(v); }
  /// The value of key `key` (ConfigError through `r` for another type).
  static double read(const Config& c, const ConfigReader& r, const std::string& key) {
    if (c.kind() != Config::Kind::Double && c.kind() != Config::Kind::Int) r.fail(key, "a number", c);
    return c.as_double();
  }
};
/// Strings.
template <>
struct ConfigCodec<std::string> {
  /// The value as a Config.
  static Config write(const std::string& v) { return Config(v); }
  /// The value of key `key` (ConfigError through `r` for another type).
  static std::string read(const Config& c, const ConfigReader& r, const std::string& key) {
    if (c.kind() != Config::Kind::String) r.fail(key, "a string", c);
    return c.as_string();
  }
};
/// Seeds: an integer, or a string of decimal digits above INT64_MAX (JSON readers differ on large integers).
template <>
struct ConfigCodec<std::uint64_t> {
  /// The value as a Config (a string of digits above INT64_MAX).
  static Config write(std::uint64_t v) {
    if (v > std::uint64_t(INT64_MAX)) return Config(std::to_string(v));
    return Config(static_cast<std::int64_t>(v));
  }
  /// The value of key `key` (ConfigError through `r` outside [0, 2^64)).
  static std::uint64_t read(const Config& c, const ConfigReader& r, const std::string& key) {
    const char* expected = "an integer in [0, 2^64) (or its decimal digits as a string)";
    if (c.kind() == Config::Kind::Int) {
      if (c.as_int() < 0) r.fail(key, expected, c);
      return static_cast<std::uint64_t>(c.as_int());
    }
    if (c.kind() != Config::Kind::String || c.as_string().empty() || c.as_string().size() > 20)
      r.fail(key, expected, c);
    std::uint64_t v = 0;
    for (const char ch : c.as_string()) {
      if (ch < '0' || ch > '9') r.fail(key, expected, c);
      const std::uint64_t digit = static_cast<std::uint64_t>(ch - '0');
      if (v > (UINT64_MAX - digit) / 10) r.fail(key, expected, c);
      v = v * 10 + digit;
    }
    return v;
  }
};
/// std::nullopt \<-> null.
template <class T>
struct ConfigCodec<std::optional<T>> {
  /// The value as a Config (null for std::nullopt).
  static Config write(const std::optional<T>& v) { return v ? ConfigCodec<T>::write(*v) : Config(); }
  /// The value of key `key` (std::nullopt for null).
  static std::optional<T> read(const Config& c, ConfigReader& r, const std::string& key) {
    if (c.is_null()) return std::nullopt;
    return ConfigCodec<T>::read(c, r, key);
  }
};
/// Enums with config_names(E) (argument-dependent lookup): a list of {value, name}.
template <class E>
struct ConfigCodec<E, std::enable_if_t<std::is_enum<E>::value>> {
  /// The enum's name as a string.
  static Config write(E v) {
    for (const auto& [value, name] : config_names(E{}))
      if (value == v) return Config(name);
    detail::throw_config("Config: enum value ", static_cast<long long>(v), " has no name");
  }
  /// The value of key `key` (ConfigError through `r` listing the names for another value).
  static E read(const Config& c, const ConfigReader& r, const std::string& key) {
    std::string names;
    for (const auto& [value, name] : config_names(E{})) {
      if (c.kind() == Config::Kind::String && c.as_string() == name) return value;
      names += (names.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    r.fail(key, "one of " + names, c);
  }
};
/// Initializers: a name ("glorot_uniform", "zeros", ...) or an object with its parameters:
/// {"class_name": "uniform", "minval": -0.05, "maxval": 0.05}, "constant" (value), "normal" (stddev),
/// "orthogonal" (gain).
template <>
struct ConfigCodec<Init> {
  /// The initializer as a name, or an object with its parameters.
  static Config write(const Init& init) {
    using K = Init::Kind;
    switch (init.kind()) {
      case K::Zeros: return Config("zeros");
      case K::GlorotUniform: return Config("glorot_uniform");
      case K::GlorotNormal: return Config("glorot_normal");
      case K::HeUniform: return Config("he_uniform");
      case K::HeNormal: return Config("he_normal");
      default: break;
    }
    Config c = Config::object();
    switch (init.kind()) {
      case K::Constant:
        c.set("class_name", "constant");
        c.set("value", init.a());
        break;
      case K::Uniform:
        c.set("class_name", "uniform");
        c.set("minval", init.a());
        c.set("maxval", init.b());
        break;
      case K::Normal:
        c.set("class_name", "normal");
        c.set("stddev", init.a());
        break;
      default:
        c.set("class_name", "orthogonal");
        c.set("gain", init.a());
        break;
    }
    return c;
  }
  /// The value of key `key` (ConfigError through `r` for an unknown name or a bad parameter).
  static Init read(const Config& c, ConfigReader& r, const std::string& key) {
    const char* expected =
        "an initializer (\"zeros\", \"glorot_uniform\", \"glorot_normal\", \"he_uniform\", \"he_normal\" or an object "
        "with class_name constant, uniform, normal or orthogonal)";
    if (c.kind() == Config::Kind::String) {
      const std::string& n = c.as_string();
      if (n == "zeros") return Init::zeros();
      if (n == "glorot_uniform") return Init::glorot_uniform();
      if (n == "glorot_normal") return Init::glorot_normal();
      if (n == "he_uniform") return Init::he_uniform();
      if (n == "he_normal") return Init::he_normal();
      r.fail(key, expected, c);
    }
    if (!c.is_object()) r.fail(key, expected, c);
    ConfigReader inner(c, r.who() + " '" + key + "'");
    const std::string n = inner.read<std::string>("class_name");
    Init init = Init::zeros();
    if (n == "constant") {
      init = Init::constant(inner.read<double>("value"));
    } else if (n == "uniform") {
      const double lo = inner.read<double>("minval"), hi = inner.read<double>("maxval");
      init = Init::uniform(lo, hi);
    } else if (n == "normal") {
      init = Init::normal(inner.read<double>("stddev"));
    } else if (n == "orthogonal") {
      init = Init::orthogonal(inner.read<double>("gain"));
    } else {
      r.fail(key, expected, c);
    }
    inner.finish();
    return init;
  }
};

/// Adds every field of an options struct (O::visit_options) to `config`.
template <class O>
void write_options(Config& config, const O& options) {
  O::visit_options(options, [&config](const char* key, const auto& field) {
    config.set(key, ConfigCodec<std::decay_t<decltype(field)>>::write(field));
  });
}
/// O with its defaults, then every field whose key is present (read, type-checked).
template <class O>
O read_options(ConfigReader& reader) {
  O options;
  O::visit_options(options, [&reader](const char* key, auto& field) { reader.read_into(key, field); });
  return options;
}
/// The options alone as an object.
template <class O>
Config options_config(const O& options) {
  Config c = Config::object();
  write_options(c, options);
  return c;
}

}  // namespace seqattn
