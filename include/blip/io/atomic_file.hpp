// blip/io/atomic_file.hpp — AtomicFile: write a file so that a crash never leaves a partial
// file under its name, nor damages the file it replaces.
//
// Contract: AtomicFile(path) creates a unique temporary file `<path>.tmp-<pid>-XXXXXX` in the
// same directory (same filesystem, so the rename is atomic) with O_EXCL (mkstemp), so a file or
// symlink planted under a temporary name is never followed or reused. write() appends, retrying
// short writes and EINTR; write_at() overwrites bytes already written (a header completed at the
// end); commit() fsyncs the data, renames over `path` (a symlink at `path` is replaced, not
// followed) and fsyncs the directory, so after it returns the new file is durable. Destroyed
// without commit (an exception), the temporary is removed; a killed process may leave it behind,
// and the next AtomicFile of the same path removes it (temporaries of `path` whose process is
// gone), so killed saves do not pile up. `path` is either the old file or the complete new one.
// Errors name the file and the byte offset. write_file_atomically(path, bytes) is the one-shot
// form. AppendFile is for logs that grow across runs (a training run's metrics.jsonl): opened
// O_APPEND | O_CREAT | O_NOFOLLOW, so a symlink planted under the log's name is refused, and
// each write() goes straight to the file.
// atomic_write_hook(): tests set it to observe (and stall) a write in progress.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "blip/core/error.hpp"

namespace blip::io {

// Called after every write with the temporary file's path and the bytes written so far.
inline std::function<void(const std::string& temp_path, uint64_t bytes)>& atomic_write_hook() {
  static std::function<void(const std::string&, uint64_t)> hook;
  return hook;
}

class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    remove_stale_temporaries();
    std::string pattern = path_ + ".tmp-" + std::to_string(::getpid()) + "-XXXXXX";
    fd_ = ::mkostemp(pattern.data(), O_CLOEXEC);
    BLIP_CHECK(fd_ >= 0, "AtomicFile: cannot create a temporary file beside '", path_, "': ", std::strerror(errno));
    temp_path_ = pattern;
    ::fchmod(fd_, 0644);  // mkstemp's 0600 would make checkpoints private to their writer
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t size() const { return written_; }

  void write(const void* data, size_t n) {
    BLIP_CHECK(fd_ >= 0 && !committed_, "AtomicFile: '", path_, "' is already committed");
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      BLIP_CHECK(w > 0, "AtomicFile: writing '", temp_path_, "' at byte ", written_, " failed: ",
                 w < 0 ? std::strerror(errno) : "no progress");
      p += w;
      n -= static_cast<size_t>(w);
      written_ += static_cast<uint64_t>(w);
    }
    if (atomic_write_hook()) atomic_write_hook()(temp_path_, written_);
  }

  // Overwrites [offset, offset + n), which must have been written already.
  void write_at(uint64_t offset, const void* data, size_t n) {
    BLIP_CHECK(fd_ >= 0 && !committed_ && offset <= written_ && n <= written_ - offset, "AtomicFile: write_at(",
               offset, ", ", n, ") outside the ", written_, " bytes written to '", temp_path_, "'");
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      BLIP_CHECK(w > 0, "AtomicFile: writing '", temp_path_, "' at byte ", offset, " failed: ",
                 w < 0 ? std::strerror(errno) : "no progress");
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
  }

  void commit() {
    BLIP_CHECK(fd_ >= 0 && !committed_, "AtomicFile: '", path_, "' is already committed");
    BLIP_CHECK(::fsync(fd_) == 0, "AtomicFile: fsync of '", temp_path_, "' failed: ", std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    BLIP_CHECK(rc == 0, "AtomicFile: closing '", temp_path_, "' failed: ", std::strerror(errno));
    BLIP_CHECK(::rename(temp_path_.c_str(), path_.c_str()) == 0, "AtomicFile: renaming '", temp_path_, "' to '", path_,
               "' failed: ", std::strerror(errno));
    committed_ = true;
    // The rename is durable only once the directory entry is.
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    BLIP_CHECK(dfd >= 0, "AtomicFile: cannot open directory '", dir, "' to sync it: ", std::strerror(errno));
    const int sync_rc = ::fsync(dfd);
    ::close(dfd);
    BLIP_CHECK(sync_rc == 0, "AtomicFile: fsync of directory '", dir, "' failed");
  }

 private:
  // `<name>.tmp-<pid>-XXXXXX` beside the target whose process no longer runs: what a killed save
  // left (a save of this path in a running process is left alone). Best effort: errors are ignored.
  void remove_stale_temporaries() const {
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
    const std::string prefix = (slash == std::string::npos ? path_ : path_.substr(slash + 1)) + ".tmp-";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() <= prefix.size() + 7 || name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string rest = name.substr(prefix.size());  // <pid>-XXXXXX
      const size_t dash = rest.find('-');
      if (dash == 0 || dash == std::string::npos || rest.size() - dash != 7 ||
          rest.find_first_not_of("0123456789") != dash)
        continue;
      const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
      if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
        struct stat st {};
        const std::string full = dir + "/" + name;
        if (::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(full.c_str());
      }
    }
    ::closedir(d);
  }

  std::string path_, temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

inline void write_file_atomically(const std::string& path, const void* data, size_t n) {
  AtomicFile f(path);
  f.write(data, n);
  f.commit();
}
inline void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}

class AppendFile {
 public:
  explicit AppendFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    BLIP_CHECK(fd_ >= 0, "cannot open '", path_, "' to append to it: ", std::strerror(errno),
               errno == ELOOP ? " (it is a symlink, which blip does not write through)" : "");
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail("cannot append to '", path_, "': not a regular file");
    }
  }
  ~AppendFile() { ::close(fd_); }
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void write(const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      const ssize_t w = ::write(fd_, text.data() + done, text.size() - done);
      if (w < 0 && errno == EINTR) continue;
      BLIP_CHECK(w > 0, "writing '", path_, "' failed: ", w < 0 ? std::strerror(errno) : "no progress");
      done += static_cast<size_t>(w);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace blip::io
