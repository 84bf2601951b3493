#pragma once
// write_file_atomically(path, bytes, who): replaces the file at `path` with `bytes` so that `path` always names
// either the old complete file or the new complete file, never a partial one:
//   0. follow `path` when it is a symbolic link (a chain of links, up to 40): the file replaced is the link's
//      final target, and the link stays a link. An existing target that has no write permission bit at all
//      (mode 0444: refused even for root) or that this process may not write (faccessat W_OK) is not replaced:
//      FileError "'<path>' is not writable (mode 0444, ...)". (Hard links: the other names keep the old file.)
//   1. write a temporary file "<target>.tmp-<pid>-<n>" in the target's directory (created exclusively; mode
//      0600 then, before any byte is written, the permission bits of the file it replaces; 0666 minus the
//      umask for a new file),
//   2. write every byte, flush and fsync it (a full disk or any write error is detected here),
//   3. rename it over the target (atomic on POSIX file systems), then fsync the directory (best effort).
// On any failure the temporary file is removed, the target is untouched and FileError names the path, the step
// and the system's reason. On non-POSIX systems the fallback uses <cstdio> (flush, then remove + rename),
// which is not atomic and follows none of the rules of step 0.

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

// The file a write to `path` replaces: `path`, or, when it is a symbolic link, the file the chain of links ends
// at (a relative link is relative to the link's directory; a dangling link names the file to create).
inline std::string resolve_symlinks(const std::string& path, const std::string& who) {
  std::string p = path;
  for (int depth = 0; depth < 40; ++depth) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::string target(256, '\0');
    for (;;) {
      const ::ssize_t n = ::readlink(p.c_str(), &target[0], target.size());
      if (n < 0) throw_file(who, ": cannot read the symbolic link '", p, "': ", std::strerror(errno));
      if (static_cast<std::size_t>(n) < target.size()) {
        target.resize(static_cast<std::size_t>(n));
        break;
      }
      target.resize(target.size() * 2);
    }
    const std::string dir = parent_directory(p);
    p = (target.empty() || target[0] == '/') ? target : dir == "/" ? "/" + target : dir + "/" + target;
  }
  throw_file(who, ": cannot write '", path, "': too many levels of symbolic links");
}

inline void write_file_atomically(const std::string& path, const unsigned char* data, std::size_t size,
                                  const std::string& who) {
  if (path.empty()) throw_file(who, ": empty file name");
  const std::string target = resolve_symlinks(path, who);
  const std::string named =
      target == path ? cat("'", path, "'") : cat("'", target, "' (the target of the link '", path, "')");
  // An existing regular file: not replaced when it has no write permission bit at all (whoever runs this, root
  // included) or when this process may not write it; otherwise the new file gets its permission bits.
  struct stat old;
  const bool replaces = ::stat(target.c_str(), &old) == 0 && S_ISREG(old.st_mode);
  if (replaces) {
    const unsigned mode = static_cast<unsigned>(old.st_mode) & 07777u;
    if ((mode & 0222u) == 0)
      throw_file(who, ": ", named, " is not writable (mode 0", std::oct, mode, std::dec,
                 ", no write permission): it is left unchanged (make it writable, e.g. chmod u+w, to replace it)");
    if (::faccessat(AT_FDCWD, target.c_str(), W_OK, AT_EACCESS) != 0)
      throw_file(who, ": ", named, " is not writable (mode 0", std::oct, mode, std::dec, ", ", std::strerror(errno),
                 "): it is left unchanged");
  }
  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = cat(target, ".tmp-", static_cast<long>(::getpid()), "-", next_temp_counter());
    // Owner-only until it has the old file's mode: the new content is never more readable than the old.
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, replaces ? 0600 : 0666);
    if (fd < 0 && errno != EEXIST)
      throw_file(who, ": cannot create a temporary file in '", parent_directory(target), "' to write ", named, ": ",
                 std::strerror(errno));
  }
  if (fd < 0) throw_file(who, ": cannot create a unique temporary file beside ", named);

  auto fail = [&](const char* step, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    throw_file(who, ": ", step, " ", named, " failed: ", std::strerror(err),
               " (an existing file at that path is unchanged)");
  };
  if (replaces && ::fchmod(fd, old.st_mode & 07777) != 0) fail("setting the permissions of the new", errno);
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
  if (std::rename(temp.c_str(), target.c_str()) != 0) fail("renaming the temporary file to", errno);
  const int dir = ::open(parent_directory(target).c_str(), O_RDONLY | O_CLOEXEC);
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
