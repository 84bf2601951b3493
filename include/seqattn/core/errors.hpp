#pragma once
// The error hierarchy. Every check at a layer boundary throws one of these (never assert, never exit):
//   Error       base class, std::runtime_error
//   ShapeError  an input, mask, label or gradient has the wrong shape or an out-of-range value
//   ConfigError a layer, loss or optimizer was configured with an invalid option, or a size overflows
//   MemoryError a batch needs more memory than the limit (core/memory_limit.hpp) or an allocation failed
//   UsageError  the API was used against its contract: one layer entered by two threads at once, an optimizer
//               whose parameters belong to a layer that was destroyed or reassigned with other shapes
// Messages name the layer and give the expected and the received value:
//   "Dense(units=8): input features expected 4 but got 3"

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace seqattn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class ShapeError : public Error {
 public:
  explicit ShapeError(const std::string& what) : Error(what) {}
};

class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what) {}
};

class MemoryError : public Error {
 public:
  explicit MemoryError(const std::string& what) : Error(what) {}
};

class UsageError : public Error {
 public:
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
