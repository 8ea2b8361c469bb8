// blip/io/mapped_file.hpp — a whole file mapped read-only into memory (RAII).
//
// Contract: MappedFile(path) maps the file (an empty file gives size() == 0 and data() ==
// nullptr) or throws blip::Error naming the path and the system's reason; anything but a
// regular file (directory, FIFO, device) is refused (io/regular_file.hpp). MappedFile(bytes,
// size, name) keeps a copy of an in-memory image instead, so parsers run the same code on both
// (tests, fuzzers); `name` stands for the path in errors. The mapping lives as long as the object
// (hold it in a shared_ptr to let tensors loaded in place keep it alive). The mapping is private
// and copy-on-write: while tensors view it, the file should not be truncated or rewritten.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "blip/core/error.hpp"
#include "blip/io/regular_file.hpp"

namespace blip::io {

class MappedFile {
 public:
  explicit MappedFile(std::string path, const std::string& what = {}) : path_(std::move(path)) {
    const RegularFile file(path_, what);  // a FIFO or device is refused, not mapped or waited on
    size_ = file.size();
    if (size_ > 0) {
      // Copy-on-write: tensors loaded in place (io/tensor_bytes.hpp) may be written to; their
      // writes go to private pages, never to the file.
      void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd(), 0);
      BLIP_CHECK(p != MAP_FAILED, "cannot map '", path_, "' (", size_, " bytes): ", std::strerror(errno));
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  MappedFile(const uint8_t* bytes, size_t size, std::string name) : path_(std::move(name)) {
    owned_.assign(bytes, bytes + size);
    data_ = owned_.empty() ? nullptr : owned_.data();
    size_ = size;
  }
  ~MappedFile() {
    if (data_ && owned_.empty()) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  bool holds(const uint8_t* p) const { return data_ && p >= data_ && p < data_ + size_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::vector<uint8_t> owned_;
};

}  // namespace blip::io
