#pragma once
// write_file_atomically(path, bytes, who): replaces the file at `path` with `bytes` so that `path` always names
// either the old complete file or the new complete file, never a partial one:
//   1. write a temporary file "<path>.tmp-<pid>-<n>" in the same directory (created exclusively, mode 0666
//      minus the umask),
//   2. write every byte, flush and fsync it (a full disk or any write error is detected here),
//   3. rename it over `path` (atomic on POSIX file systems), then fsync the directory (best effort).
// On any failure the temporary file is removed, `path` is untouched and FileError names the path, the step
// and the system's reason. On non-POSIX systems the fallback uses <cstdio> (flush, then remove + rename),
// which is not atomic.

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "seqattn/io/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define SEQATTN_IO_POSIX 1
#endif

namespace seqattn::detail {

inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

inline unsigned long next_temp_counter() {
  static std::atomic<unsigned long> counter{0};
  return counter.fetch_add(1);
}

#ifdef SEQATTN_IO_POSIX

inline void write_file_atomically(const std::string& path, const unsigned char* data, std::size_t size,
                                  const std::string& who) {
  if (path.empty()) throw_file(who, ": empty file name");
  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = cat(path, ".tmp-", static_cast<long>(::getpid()), "-", next_temp_counter());
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      throw_file(who, ": cannot create a temporary file in '", parent_directory(path), "' to write '", path,
                 "': ", std::strerror(errno));
  }
  if (fd < 0) throw_file(who, ": cannot create a unique temporary file beside '", path, "'");

  auto fail = [&](const char* step, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    throw_file(who, ": ", step, " '", path, "' failed: ", std::strerror(err), " (an existing file at that path is unchanged)");
  };
  std::size_t written = 0;
  while (written < size) {
    const ::ssize_t n = ::write(fd, data + written, size - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing", errno);
    }
    if (n == 0) fail("writing", ENOSPC);
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("flushing (fsync)", errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("closing", errno);
  if (std::rename(temp.c_str(), path.c_str()) != 0) fail("renaming the temporary file to", errno);
  const int dir = ::open(parent_directory(path).c_str(), O_RDONLY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);  // best effort: makes the rename itself durable
    ::close(dir);
  }
}

#else

inline void write_file_atomically(const std::string& path, const unsigned char* data, std::size_t size,
                                  const std::string& who) {
  if (path.empty()) throw_file(who, ": empty file name");
  const std::string temp = cat(path, ".tmp-", next_temp_counter());
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (!f) throw_file(who, ": cannot create '", temp, "': ", std::strerror(errno));
  const bool ok = std::fwrite(data, 1, size, f) == size && std::fflush(f) == 0;
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(temp.c_str());
    throw_file(who, ": writing '", path, "' failed: ", std::strerror(err), " (an existing file at that path is unchanged)");
  }
  std::remove(path.c_str());
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int rerr = errno;
    std::remove(temp.c_str());
    throw_file(who, ": renaming the temporary file to '", path, "' failed: ", std::strerror(rerr));
  }
}

#endif

}  // namespace seqattn::detail
