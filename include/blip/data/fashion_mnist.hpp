// blip/data/fashion_mnist.hpp — the IDX file format (gzipped or raw) and the Fashion-MNIST
// data set read from it, with the class names and caption templates the demo trains on.
//
// Contract:
// - gunzip(bytes, name, max_bytes): the decompressed bytes of a gzip stream (several members
//   allowed); input that is not gzip is returned as is (plain IDX files work too). Corrupt or
//   truncated gzip, or output over max_bytes, throws blip::Error naming `name` and the byte
//   offset in the compressed input.
// - parse_idx(bytes, name): magic 0x00 0x00 <type> <ndims>, big-endian uint32 dims, then the
//   elements; only type 0x08 (unsigned byte) is accepted. A wrong magic, a zero or oversized
//   dimension, fewer data bytes than the dims promise, or trailing bytes throw blip::Error
//   naming `name` and the byte offset (in the decompressed stream). Nothing is allocated before
//   the sizes have been checked against the bytes present.
// - load_fashion_mnist(dir): train-{images,labels}-idx?-ubyte.gz and t10k-* from `dir`;
//   images must be [N, 28, 28], labels [N] with values < 10 and the same N.
#pragma once

#include <zlib.h>

#include <array>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "blip/core/error.hpp"
#include "blip/io/regular_file.hpp"

namespace blip::data {

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  return io::read_regular_file(path, uint64_t{1} << 30, "IDX file");
}

inline std::vector<uint8_t> gunzip(const std::vector<uint8_t>& bytes, const std::string& name,
                                   size_t max_bytes = size_t{1} << 30) {
  if (bytes.size() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) return bytes;
  std::vector<uint8_t> out;
  z_stream zs{};
  BLIP_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "gunzip: zlib could not start for '", name, "'");
  zs.next_in = const_cast<Bytef*>(bytes.data());
  zs.avail_in = static_cast<uInt>(bytes.size());
  std::array<uint8_t, 1 << 16> chunk;
  int rc = Z_OK;
  for (;;) {
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = chunk.size() - zs.avail_out;
    const size_t offset = bytes.size() - zs.avail_in;
    if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && produced > 0)) {
      const std::string why = rc == Z_BUF_ERROR ? "truncated gzip stream" : (zs.msg ? zs.msg : "corrupt gzip stream");
      inflateEnd(&zs);
      fail("gunzip: '", name, "': ", why, " at compressed byte ", offset);
    }
    if (out.size() + produced > max_bytes) {
      inflateEnd(&zs);
      fail("gunzip: '", name, "' decompresses to more than ", max_bytes, " bytes (at compressed byte ", offset, ")");
    }
    out.insert(out.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(produced));
    if (rc == Z_STREAM_END) {
      // Concatenated members (gzip allows several); anything else after the end is an error.
      if (zs.avail_in == 0) break;
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      inflateEnd(&zs);
      fail("gunzip: '", name, "': ", zs.avail_in, " bytes of garbage after the gzip stream at compressed byte ", offset);
    }
  }
  inflateEnd(&zs);
  return out;
}

// An IDX array of unsigned bytes: dims (row-major) and the elements.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

inline IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& name) {
  BLIP_CHECK(bytes.size() >= 4, "parse_idx: '", name, "' has ", bytes.size(), " bytes, fewer than the 4-byte magic at byte 0");
  BLIP_CHECK(bytes[0] == 0 && bytes[1] == 0, "parse_idx: '", name, "': bad magic at byte 0 (expected 00 00, found ",
             int(bytes[0]), " ", int(bytes[1]), ")");
  BLIP_CHECK(bytes[2] == 0x08, "parse_idx: '", name, "': element type ", int(bytes[2]),
             " at byte 2 is not 8 (unsigned byte)");
  const int64_t ndims = bytes[3];
  BLIP_CHECK(ndims >= 1 && ndims <= 4, "parse_idx: '", name, "': ", ndims, " dimensions at byte 3 (1 to 4 expected)");
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  BLIP_CHECK(bytes.size() >= header, "parse_idx: '", name, "' is truncated in its header at byte ", bytes.size(),
             " (", header, " header bytes expected)");
  IdxArray out;
  uint64_t count = 1;  // saturates: four 32-bit dims can overflow 64 bits
  for (int64_t d = 0; d < ndims; ++d) {
    const size_t at = 4 + 4 * static_cast<size_t>(d);
    const uint64_t n = (uint64_t{bytes[at]} << 24) | (uint64_t{bytes[at + 1]} << 16) | (uint64_t{bytes[at + 2]} << 8) |
                       uint64_t{bytes[at + 3]};
    BLIP_CHECK(n > 0, "parse_idx: '", name, "': dimension ", d, " at byte ", at, " is 0");
    count = count > UINT64_MAX / n ? UINT64_MAX : count * n;
    out.dims.push_back(static_cast<int64_t>(n));
  }
  const size_t available = bytes.size() - header;
  BLIP_CHECK(available >= count, "parse_idx: '", name, "' is truncated: dims ", out.dims, " need ", count,
             " data bytes from byte ", header, " but the data ends at byte ", bytes.size());
  BLIP_CHECK(available == count, "parse_idx: '", name, "': ", available - count, " unexpected bytes after the data at byte ",
             header + count);
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

inline IdxArray read_idx(const std::string& path) { return parse_idx(gunzip(read_file_bytes(path), path), path); }

inline constexpr int64_t fashion_mnist_side = 28;
inline constexpr int64_t fashion_mnist_classes = 10;

inline const std::array<const char*, 10>& fashion_mnist_class_names() {
  static const std::array<const char*, 10> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

// Captions per class: several phrasings each, so the text encoder must learn the category from
// different words rather than one fixed string ("a photo of a sneaker", "a pair of trainers").
inline const std::array<std::vector<std::string>, 10>& fashion_mnist_captions() {
  static const std::array<std::vector<std::string>, 10> captions{{
      {"a photo of a t-shirt", "a short sleeved top", "a plain tee", "a casual t-shirt"},
      {"a photo of trousers", "a pair of pants", "long trousers", "a pair of jeans"},
      {"a photo of a pullover", "a warm sweater", "a knitted jumper", "a long sleeved pullover"},
      {"a photo of a dress", "a summer dress", "an elegant gown", "a woman's dress"},
      {"a photo of a coat", "a winter jacket", "a warm overcoat", "a coat with buttons"},
      {"a photo of a sandal", "an open summer shoe", "a pair of sandals", "a strappy sandal"},
      {"a photo of a shirt", "a button-up shirt", "a collared shirt", "a long sleeved blouse"},
      {"a photo of a sneaker", "a pair of trainers", "a running shoe", "a sports shoe"},
      {"a photo of a bag", "a leather handbag", "a purse with a handle", "a shopping bag"},
      {"a photo of an ankle boot", "a short boot", "a leather boot", "a pair of ankle boots"},
  }};
  return captions;
}

// One split: images [N, 28, 28] (row-major, 0-255) and labels [N].
struct FashionMnistSplit {
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  const uint8_t* image(int64_t i) const { return images.data() + i * fashion_mnist_side * fashion_mnist_side; }
};

inline FashionMnistSplit fashion_mnist_split(const IdxArray& images, const IdxArray& labels,
                                             const std::string& images_name, const std::string& labels_name) {
  BLIP_CHECK(images.dims.size() == 3 && images.dims[1] == fashion_mnist_side && images.dims[2] == fashion_mnist_side,
             "fashion_mnist: '", images_name, "' has dims ", images.dims, ", expected [N, 28, 28]");
  BLIP_CHECK(labels.dims.size() == 1 && labels.dims[0] == images.dims[0], "fashion_mnist: '", labels_name,
             "' has dims ", labels.dims, ", expected [", images.dims[0], "] to match '", images_name, "'");
  for (size_t i = 0; i < labels.data.size(); ++i)
    BLIP_CHECK(labels.data[i] < fashion_mnist_classes, "fashion_mnist: '", labels_name, "': label ",
               int(labels.data[i]), " at byte ", 8 + i, " is not a class in [0, 10)");
  return {images.data, labels.data};
}

struct FashionMnist {
  FashionMnistSplit train, test;
};

inline FashionMnist load_fashion_mnist(const std::string& dir) {
  const auto split = [&](const std::string& prefix) {
    const std::string images = dir + "/" + prefix + "-images-idx3-ubyte.gz";
    const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
    const IdxArray image_array = read_idx(images);  // images first: errors come in a fixed order
    return fashion_mnist_split(image_array, read_idx(labels), images, labels);
  };
  return {split("train"), split("t10k")};
}

}  // namespace blip::data
