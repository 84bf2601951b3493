#pragma once
/// \file
/// Errors of saving and loading weights (seqattn format and safetensors). All derive from seqattn::Error:
///
/// ```unparsed
///   FileError      a file cannot be opened, read, written, flushed or renamed, or a save would replace a file
///                  without write permission (the message gives the path and the system's reason). A failed
///                  save leaves any existing file at the target path untouched.
///   FormatError    the bytes are not a valid file: wrong magic, unsupported (future) version, truncated,
///                  checksum mismatch, malformed header or tensor record, trailing bytes.
///   NonFiniteError (a FormatError) a weight is NaN or Inf: a load refuses such a file and a save refuses to
///                  write such a model, unless the options say allow_non_finite(true). The message names the
///                  file, the tensor, the index of the first non-finite value and the value.
///   MismatchError  a valid file that does not fit the model: wrong scalar type, a tensor missing from the
///                  file, a tensor the model does not have, a shape that differs (the message names the tensor
///                  and gives the expected and the found value).
/// ```
/// A load that throws any of these has not modified the model.

#include <string>

#include "seqattn/core/errors.hpp"

namespace seqattn {

/// A file cannot be opened, read, written, flushed or renamed (the message gives the path and the reason).
class FileError : public Error {
 public:
  /// An error with the message `what`.
  explicit FileError(const std::string& what) : Error(what) {}
};

/// The bytes are not a valid file (magic, version, truncation, checksum, malformed header or record).
class FormatError : public Error {
 public:
  /// An error with the message `what`.
  explicit FormatError(const std::string& what) : Error(what) {}
};

/// A weight is NaN or Inf (refused unless allow_non_finite(true)).
class NonFiniteError : public FormatError {
 public:
  /// An error with the message `what`.
  explicit NonFiniteError(const std::string& what) : FormatError(what) {}
};

/// A valid file that does not fit the model (scalar type, missing or extra tensor, shape).
class MismatchError : public Error {
 public:
  /// An error with the message `what`.
  explicit MismatchError(const std::string& what) : Error(what) {}
};

namespace detail {

template <class... Parts>
[[noreturn]] void throw_format(Parts&&... parts) {
  throw FormatError(cat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void throw_non_finite(Parts&&... parts) {
  throw NonFiniteError(cat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void throw_mismatch(Parts&&... parts) {
  throw MismatchError(cat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void throw_file(Parts&&... parts) {
  throw FileError(cat(std::forward<Parts>(parts)...));
}

}  // namespace detail
}  // namespace seqattn
