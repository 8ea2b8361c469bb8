// blip/io/atomic_file.hpp — AtomicFile: write a file so that a crash never leaves a partial
// file under its name, nor damages the file it replaces.
//
// Contract: AtomicFile(path) creates a unique temporary file `<path>.tmp-XXXXXX` in the same
// directory (same filesystem, so the rename is atomic). write() appends, retrying short writes
// and EINTR; commit() fsyncs the data, renames over `path` and fsyncs the directory, so after it
// returns the new file is durable. Destroyed without commit (an exception), the temporary is
// removed; a killed process may leave it behind (safe to delete) but `path` is either the old
// file or the complete new one. Errors name the file and the byte offset.
// atomic_write_hook(): tests set it to observe (and stall) a write in progress.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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
    std::string pattern = path_ + ".tmp-XXXXXX";
    fd_ = ::mkstemp(pattern.data());
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
  std::string path_, temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

}  // namespace blip::io
