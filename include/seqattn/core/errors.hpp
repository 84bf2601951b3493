#pragma once
/// \file
/// The error hierarchy. Every check at a layer boundary throws one of these (never assert, never exit):
///
/// ```unparsed
///   Error       base class, std::runtime_error
///   ShapeError  an input, mask, label or gradient has the wrong shape or an out-of-range value
///   ConfigError a layer, loss or optimizer was configured with an invalid option, or a size overflows
///   MemoryError a batch needs more memory than the limit (core/memory_limit.hpp) or an allocation failed
///   UsageError  the API was used against its contract: one layer entered by two threads at once, an optimizer
///               whose parameters belong to a layer that was destroyed or reassigned with other shapes
/// ```
/// Messages name the layer and give the expected and the received value:
///
/// ```unparsed
///   "Dense(units=8): input features expected 4 but got 3"
/// ```

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace seqattn {

/// The base of every seqattn error (a std::runtime_error); see the file documentation for the hierarchy.
class Error : public std::runtime_error {
 public:
  /// An error with the message `what`.
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// An input, mask, label or gradient has the wrong shape or an out-of-range value.
class ShapeError : public Error {
 public:
  /// An error with the message `what`.
  explicit ShapeError(const std::string& what) : Error(what) {}
};

/// A layer, loss or optimizer was configured with an invalid option, or a size overflows.
class ConfigError : public Error {
 public:
  /// An error with the message `what`.
  explicit ConfigError(const std::string& what) : Error(what) {}
};

/// A batch needs more memory than memory_limit(), or an allocation failed.
class MemoryError : public Error {
 public:
  /// An error with the message `what`.
  explicit MemoryError(const std::string& what) : Error(what) {}
};

/// The API was used against its contract (a layer entered by two threads, a stale optimizer parameter).
class UsageError : public Error {
 public:
  /// An error with the message `what`.
  explicit UsageError(const std::string& what) : Error(what) {}
};

namespace detail {

// Concatenates any streamable values into one string: cat("x has ", 3, " steps").
template <class... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <class... Parts>
[[noreturn]] void throw_shape(Parts&&... parts) {
  throw ShapeError(cat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void throw_config(Parts&&... parts) {
  throw ConfigError(cat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void throw_usage(Parts&&... parts) {
  throw UsageError(cat(std::forward<Parts>(parts)...));
}

}  // namespace detail
}  // namespace seqattn
