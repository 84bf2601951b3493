#pragma once
/// \file
/// The library version, as macros (for \#if) and as a constexpr value. Kept by hand: the top-level CMakeLists.txt
/// refuses to configure when these differ from project(seqattn VERSION ...), so users without CMake see the same
/// number. 0.x: a minor version may break the API (CHANGELOG.md lists what changed).

/// The major version (0).
#define SEQATTN_VERSION_MAJOR 0
/// The minor version.
#define SEQATTN_VERSION_MINOR 2
/// The patch version.
#define SEQATTN_VERSION_PATCH 0
/// The version as a string, "major.minor.patch".
#define SEQATTN_VERSION_STRING "0.2.0"
/// SEQATTN_VERSION_AT_LEAST(0, 2, 0): true when this seqattn is that version or newer.
#define SEQATTN_VERSION_AT_LEAST(major_, minor_, patch_) \
  (SEQATTN_VERSION_MAJOR > (major_) ||                   \
   (SEQATTN_VERSION_MAJOR == (major_) &&                 \
    (SEQATTN_VERSION_MINOR > (minor_) || (SEQATTN_VERSION_MINOR == (minor_) && SEQATTN_VERSION_PATCH >= (patch_)))))

/// The seqattn library: layers, models, losses, optimizers, streaming and model files (namespace detail is
/// implementation, not API).
namespace seqattn {

/// A version: major.minor.patch.
struct Version {
  int major;  ///< The major version.
  int minor;  ///< The minor version.
  int patch;  ///< The patch version.
};

/// The version this header belongs to, e.g. version().minor == 2.
inline constexpr Version version() { return {SEQATTN_VERSION_MAJOR, SEQATTN_VERSION_MINOR, SEQATTN_VERSION_PATCH}; }

/// "0.2.0" (SEQATTN_VERSION_STRING): written into model files and quoted by the format errors.
inline constexpr const char* version_string() { return SEQATTN_VERSION_STRING; }

}  // namespace seqattn
