// blip/vision/encode.hpp — PNG encoding (libpng) of an 8-bit Image, to memory or to a file.
//
// Contract: encode_png(img) writes an 8-bit gray (1 channel) or RGB (3 channels) PNG; a BGR
// image is written as RGB, so decode_image(encode_png(img)) gives back the same pixels in the
// order asked for. write_png(path, img) writes the bytes to a file. An empty or inconsistent
// image, a libpng failure or an unwritable path throws blip::Error naming the path (or `name`).
// Used by tests and demos to make image files; there is no JPEG writer (nothing needs one).
#pragma once

#include <png.h>

#include <csetjmp>
#include <fstream>
#include <string>
#include <vector>

#include "blip/io/atomic_file.hpp"
#include "blip/vision/image.hpp"

namespace blip::vision {

namespace encode_detail {

struct PngSink {
  std::vector<uint8_t> bytes;
  std::string error;
};

// Only plain values live in this frame, so libpng's longjmp back to the setjmp clobbers nothing.
inline bool write_png_rows(png_structp png, png_infop info, PngSink* sink, png_bytepp rows, png_uint_32 width,
                           png_uint_32 height, int color_type, bool bgr) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, sink, [](png_structp p, png_bytep data, png_size_t n) {
    auto* s = static_cast<PngSink*>(png_get_io_ptr(p));
    s->bytes.insert(s->bytes.end(), data, data + n);
  }, [](png_structp) {});
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  if (bgr) png_set_bgr(png);  // libpng's set_bgr swaps on write as well as on read
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

}  // namespace encode_detail

inline std::vector<uint8_t> encode_png(const Image& img, const std::string& name = "image") {
  BLIP_CHECK(img.height > 0 && img.width > 0 && (img.channels == 1 || img.channels == 3) &&
                 img.pixels.size() == static_cast<size_t>(img.height * img.width * img.channels),
             "encode_png: '", name, "' is not a valid image (", img.height, "x", img.width, "x", img.channels, ", ",
             img.pixels.size(), " bytes)");
  BLIP_CHECK(img.height <= 0x7fffffff && img.width <= 0x7fffffff, "encode_png: '", name, "' is too large for PNG");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  BLIP_CHECK(png, "encode_png: libpng could not start for '", name, "'");
  png_infop info = png_create_info_struct(png);
  encode_detail::PngSink sink;
  std::vector<png_bytep> rows(static_cast<size_t>(img.height));
  for (int64_t y = 0; y < img.height; ++y) rows[static_cast<size_t>(y)] = const_cast<png_bytep>(img.row(y));
  png_set_error_fn(png, &sink.error, [](png_structp p, png_const_charp msg) {
    *static_cast<std::string*>(png_get_error_ptr(p)) = msg;
    png_longjmp(p, 1);
  }, [](png_structp, png_const_charp) {});
  const bool ok = info && encode_detail::write_png_rows(png, info, &sink, rows.data(), static_cast<png_uint_32>(img.width),
                                                        static_cast<png_uint_32>(img.height),
                                                        img.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                                                        img.channels == 3 && img.order == ChannelOrder::bgr);
  png_destroy_write_struct(&png, &info);
  BLIP_CHECK(ok, "encode_png: libpng failed on '", name, "': ", sink.error.empty() ? "no memory" : sink.error);
  return std::move(sink.bytes);
}

// Written atomically (io/atomic_file.hpp): never a partial PNG, never through a planted symlink.
inline void write_png(const std::string& path, const Image& img) {
  const std::vector<uint8_t> bytes = encode_png(img, path);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace blip::vision
