// blip/io/regular_file.hpp — opening and reading files that must be regular files of bounded
// size: everything blip reads from a path (images, annotations, checkpoints, indexes, texts).
//
// Contract: RegularFile(path, what) opens `path` read-only without blocking (a FIFO would block
// a plain open forever) and refuses anything but a regular file — a directory, FIFO, device or
// socket — with blip::Error "cannot open 'PATH' (WHAT): it is a directory, not a regular file";
// a missing file gives the system's reason. read_regular_file(path, max_bytes, what) returns the
// whole file, refusing one larger than max_bytes before reading it (so /dev/zero or a huge file
// named as an image cannot exhaust memory). `what` says what the file was meant to be.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "blip/core/error.hpp"

namespace blip::io {

inline const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

class RegularFile {
 public:
  RegularFile(const std::string& path, const std::string& what = {}) {
    const std::string label = what.empty() ? str("'", path, "'") : str("'", path, "' (", what, ")");
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    BLIP_CHECK(fd_ >= 0, "cannot open ", label, ": ", path.empty() ? "the path is empty" : std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      fail("cannot open ", label, ": ", std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail("cannot open ", label, ": it is ", file_type_name(st.st_mode), ", not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
    label_ = label;
  }
  ~RegularFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::string& label() const { return label_; }

  // n bytes from `offset` (the file may not shrink meanwhile: a short read is an error).
  void read_at(void* out, size_t n, uint64_t offset) const {
    uint64_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, static_cast<char*>(out) + got, static_cast<size_t>(n - got),
                                static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      BLIP_CHECK(r > 0, "reading ", label_, " failed at byte ", offset + got, " of ", size_, ": ",
                 r < 0 ? std::strerror(errno) : "the file shrank");
      got += static_cast<uint64_t>(r);
    }
  }

  // All `size()` bytes.
  std::vector<uint8_t> read_all() const {
    std::vector<uint8_t> out(static_cast<size_t>(size_));
    read_at(out.data(), out.size(), 0);
    return out;
  }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string label_;
};

inline std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what = {}) {
  const RegularFile file(path, what);
  BLIP_CHECK(file.size() <= max_bytes, "cannot read ", file.label(), ": it is ", file.size(), " bytes, more than the ",
             max_bytes, " allowed");
  return file.read_all();
}

}  // namespace blip::io
