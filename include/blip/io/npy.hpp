// blip/io/npy.hpp — numpy's .npy format (version 1.0) for float32 matrices: what `blip embed`
// writes and numpy.load reads.
//
// Contract: write_npy(path, data, shape) writes a little-endian float32 C-order array of rank 1
// or 2 atomically (io/atomic_file.hpp): magic "\x93NUMPY", version 1.0, a header dict
// {'descr': '<f4', 'fortran_order': False, 'shape': (...), } padded with spaces and '\n' so the
// data starts at a multiple of 64 bytes, as numpy writes it. read_npy(path) reads such a file
// back (rank 1 or 2, '<f4', C order); any other dtype or order, a header over 64 KiB, a shape
// whose bytes differ from the file's, is refused naming the file and the byte offset.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "blip/core/shape.hpp"
#include "blip/io/atomic_file.hpp"
#include "blip/io/regular_file.hpp"

namespace blip::io {

inline void write_npy(const std::string& path, const float* data, const Shape& shape) {
  BLIP_CHECK(shape.size() == 1 || shape.size() == 2, "write_npy: '", path, "' shape ", shape, " is not of rank 1 or 2");
  std::string dims = "(" + std::to_string(shape[0]) + (shape.size() == 1 ? ",)" : ", " + std::to_string(shape[1]) + ")");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + dims + ", }";
  const size_t unpadded = 10 + header.size() + 1;  // magic + version + length, then the dict and '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string head = "\x93NUMPY";
  head += '\x01';
  head += '\x00';
  const uint16_t len = static_cast<uint16_t>(header.size());
  head += static_cast<char>(len & 0xff);
  head += static_cast<char>(len >> 8);
  head += header;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  AtomicFile f(path);
  f.write(head.data(), head.size());
  f.write(data, static_cast<size_t>(n) * sizeof(float));
  f.commit();
}

struct NpyArray {
  Shape shape;
  std::vector<float> data;
};

inline NpyArray read_npy(const std::string& path) {
  const RegularFile file(path, "npy");
  const uint64_t size = file.size();
  auto read_at = [&](uint64_t offset, void* out, size_t n) {
    BLIP_CHECK(offset + n <= size, "npy '", path, "': ", size, " bytes, cut at byte ", size, " (needs ", offset + n, ")");
    file.read_at(out, n, offset);
  };
  char magic[10];
  read_at(0, magic, 10);
  BLIP_CHECK(std::memcmp(magic, "\x93NUMPY", 6) == 0, "npy '", path, "': no \\x93NUMPY magic at byte 0");
  BLIP_CHECK(magic[6] == 1 && magic[7] == 0, "npy '", path, "': version ", int(magic[6]), ".", int(magic[7]),
             " at byte 6 (1.0 is read)");
  const size_t len = static_cast<uint8_t>(magic[8]) | (size_t(static_cast<uint8_t>(magic[9])) << 8);
  std::string header(len, '\0');
  read_at(10, header.data(), len);
  auto value_of = [&](const std::string& key) {
    const size_t at = header.find("'" + key + "':");
    BLIP_CHECK(at != std::string::npos, "npy '", path, "': header at byte 10 has no '", key, "'");
    size_t v = at + key.size() + 3;
    while (v < header.size() && header[v] == ' ') ++v;
    return v;
  };
  const size_t d = value_of("descr");
  BLIP_CHECK(header.compare(d, 6, "'<f4'") == 0 || header.compare(d, 5, "'<f4'") == 0, "npy '", path,
             "': dtype at byte ", 10 + d, " is not '<f4' (float32)");
  BLIP_CHECK(header.compare(value_of("fortran_order"), 5, "False") == 0, "npy '", path, "': Fortran order is not read");
  size_t s = value_of("shape");
  BLIP_CHECK(s < header.size() && header[s] == '(', "npy '", path, "': shape at byte ", 10 + s, " is not a tuple");
  NpyArray out;
  int64_t n = 1;
  for (++s; s < header.size() && header[s] != ')';) {
    if (header[s] == ' ' || header[s] == ',') {
      ++s;
      continue;
    }
    int64_t dim = 0;
    size_t digits = 0;
    while (s < header.size() && header[s] >= '0' && header[s] <= '9' && digits < 12) dim = dim * 10 + (header[s++] - '0'), ++digits;
    BLIP_CHECK(digits > 0 && digits < 12, "npy '", path, "': bad dimension at byte ", 10 + s);
    out.shape.push_back(dim);
    n *= dim;
    BLIP_CHECK(out.shape.size() <= 2 && n <= int64_t{1} << 40, "npy '", path, "': shape of more than rank 2 or too large");
  }
  BLIP_CHECK(out.shape.size() == 1 || out.shape.size() == 2, "npy '", path, "': shape is not of rank 1 or 2");
  const uint64_t data_at = 10 + len;
  BLIP_CHECK(size - data_at == uint64_t(n) * 4, "npy '", path, "': shape ", out.shape, " needs ", n * 4,
             " bytes of data from byte ", data_at, ", the file has ", size - data_at);
  out.data.resize(static_cast<size_t>(n));
  read_at(data_at, out.data.data(), out.data.size() * 4);
  return out;
}

}  // namespace blip::io
