#pragma once
/// \file
/// Reads whole members of a zip archive (the Keras 3 `.keras` format) with libzip (Debian libzip-dev), read-only.
///
/// ```unparsed
///   detail::keras::ZipReader zip(path, who);        // FileError (cannot open), FormatError (not a zip)
///   std::string bytes = zip.read("config.json", limit);
/// ```
/// Bounded: a member is read only when its declared size is at most `limit` and at most what its compressed
/// size can expand to (deflate: 1032 x), and its compressed size fits in the file; the bytes read must be
/// exactly the declared size and pass libzip's CRC check. Every error is a FormatError (or FileError) whose
/// message starts with `who` (e.g. "import_keras(model.keras)").

#include <zip.h>

#include <sys/stat.h>
#include <cstdint>
#include <string>

#include "seqattn/io/errors.hpp"

namespace seqattn {
namespace detail {
namespace keras {

class ZipReader {
 public:
  ZipReader(const std::string& path, std::string who) : who_(std::move(who)) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw_file(who_, ": cannot open the file");
    if (!S_ISREG(st.st_mode)) throw_file(who_, ": not a regular file");
    file_size_ = static_cast<std::uint64_t>(st.st_size);
    int code = 0;
    zip_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (zip_ == nullptr) {
      zip_error_t error;
      zip_error_init_with_code(&error, code);
      const std::string reason = zip_error_strerror(&error);
      zip_error_fini(&error);
      if (code == ZIP_ER_OPEN || code == ZIP_ER_READ) throw_file(who_, ": cannot open the file: ", reason);
      throw_format(who_,
                   ": not a valid zip archive (a .keras file is a zip of config.json and model.weights.h5): ", reason);
    }
  }
  ~ZipReader() {
    if (zip_ != nullptr) zip_discard(zip_);
  }
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  bool has(const std::string& name) const { return zip_name_locate(zip_, name.c_str(), 0) >= 0; }

  // The member's bytes; FormatError when it is missing, larger than `limit` or than the file can justify,
  // or does not read back exactly (truncated, CRC mismatch, unsupported compression).
  std::string read(const std::string& name, std::uint64_t limit) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat(zip_, name.c_str(), 0, &st) != 0) throw_format(who_, ": the archive has no member '", name, "'");
    if ((st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0)
      throw_format(who_, ": member '", name, "' has no declared size");
    if (st.comp_size > file_size_)
      throw_format(who_, ": member '", name, "' declares ", st.comp_size, " compressed bytes but the file has ",
                   file_size_);
    const std::uint64_t expandable = st.comp_method == ZIP_CM_STORE ? st.comp_size : st.comp_size * 1032 + 64;
    if (st.size > expandable)
      throw_format(who_, ": member '", name, "' declares ", st.size, " bytes, more than its ", st.comp_size,
                   " compressed bytes can hold");
    if (st.size > limit)
      throw_format(who_, ": member '", name, "' has ", st.size, " bytes, above the limit of ", limit);
    zip_file_t* file = zip_fopen(zip_, name.c_str(), 0);
    if (file == nullptr) throw_format(who_, ": cannot read member '", name, "': ", zip_strerror(zip_));
    std::string bytes(static_cast<size_t>(st.size), '\0');
    std::uint64_t done = 0;
    char extra = 0;
    bool ok = true;
    std::string reason;
    while (done < st.size) {
      const zip_int64_t n = zip_fread(file, &bytes[static_cast<size_t>(done)], st.size - done);
      if (n <= 0) {
        ok = false;
        reason = n < 0 ? zip_file_strerror(file) : "unexpected end of data";
        break;
      }
      done += static_cast<std::uint64_t>(n);
    }
    if (ok) {
      const zip_int64_t n = zip_fread(file, &extra, 1);  // end of member: libzip checks the CRC here
      if (n != 0) {
        ok = false;
        reason = n < 0 ? zip_file_strerror(file) : "more data than declared";
      }
    }
    zip_fclose(file);
    if (!ok) throw_format(who_, ": member '", name, "' is corrupt (", reason, ")");
    return bytes;
  }

  std::uint64_t file_size() const { return file_size_; }

 private:
  std::string who_;
  zip_t* zip_ = nullptr;
  std::uint64_t file_size_ = 0;
};

}  // namespace keras
}  // namespace detail
}  // namespace seqattn
