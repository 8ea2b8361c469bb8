// blip/vision/decode.hpp — PNG (libpng) and JPEG (libjpeg-turbo) decoding as mmcv's
// LoadImageFromFile / cv2.imdecode(IMREAD_COLOR) does it; WebP (libwebp) and GIF (giflib, the
// first frame) as Pillow's Image.open(f).convert("RGB") does.
//
// Contract: always 3 channels, BGR by default (RGB on request): gray is replicated, palette
// expanded (tRNS ignored), alpha dropped without compositing, 16-bit samples become v >> 8, and
// a JPEG's EXIF Orientation (1-8) is applied. JPEG uses libjpeg's defaults (ISLOW IDCT, fancy
// upsampling), so pixels equal OpenCV's. The pixel count is checked against `max_pixels` from
// the header, before any allocation, and bounds libjpeg's working memory too. Truncated or
// corrupt data (libjpeg's corrupt-data and premature-end warnings included), a JPEG too small for
// the size its header claims, zero sizes, CMYK JPEGs and other formats throw blip::Error naming
// the file (or `name`) and what is wrong. WebP: alpha dropped without compositing, animated
// files refused. GIF: the first frame on its logical screen (the rest in the background
// colour), interlacing undone; later frames are not decoded. Both check the size from the header
// against max_pixels before allocating. load_image reads only regular files of at most
// max_file_bytes (io/regular_file.hpp).
#pragma once

#include <gif_lib.h>
#include <png.h>
#include <stdio.h>
#include <webp/decode.h>

#include <jpeglib.h>
// After jpeglib.h: the message codes (JWRN_*) need its types.
#include <jerror.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <utility>
#include <vector>

#include "blip/io/regular_file.hpp"
#include "blip/vision/image.hpp"

namespace blip::vision {

struct DecodeOptions {
  ChannelOrder order = ChannelOrder::bgr;
  int64_t max_pixels = int64_t{1} << 28;  // 268 M pixels; Pillow's bomb limit is 179 M
  uint64_t max_file_bytes = uint64_t{1} << 28;  // 256 MiB of encoded data (load_image)
  bool apply_exif_orientation = true;
};

namespace detail {

inline void check_size(int64_t w, int64_t h, const DecodeOptions& o, const std::string& name) {
  BLIP_CHECK(w > 0 && h > 0, "decode_image: '", name, "' has an empty size ", w, "x", h);
  BLIP_CHECK(w <= o.max_pixels / h, "decode_image: '", name, "' claims ", w, "x", h, " pixels, over the limit of ",
             o.max_pixels, " (DecodeOptions::max_pixels)");
}

// ---- PNG ------------------------------------------------------------------------------------
struct PngReader {
  const uint8_t* data;
  size_t size, pos;
};

inline Image decode_png(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& o) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  BLIP_CHECK(png, "decode_image: libpng could not start for '", name, "'");
  png_infop info = png_create_info_struct(png);
  std::string error;
  png_set_error_fn(png, &error, [](png_structp p, png_const_charp msg) {
    *static_cast<std::string*>(png_get_error_ptr(p)) = msg;
    png_longjmp(p, 1);
  }, [](png_structp, png_const_charp) {});
  PngReader reader{data, size, 0};
  Image img;
  std::vector<png_bytep> rows;
  // Nothing with a destructor may be created between setjmp and a longjmp back to it.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail("decode_image: '", name, "' is not a valid PNG: ", error.empty() ? "corrupt data" : error);
  }
  png_set_read_fn(png, &reader, [](png_structp p, png_bytep out, png_size_t n) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(p));
    if (r->pos + n > r->size) png_error(p, "truncated data");
    std::memcpy(out, r->data + r->pos, n);
    r->pos += n;
  });
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  error.clear();
  try {
    check_size(w, h, o, name);
  } catch (const Error& e) {
    error = e.what();
  }
  if (!error.empty()) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(error);
  }
  if (depth == 16) png_set_strip_16(png);  // v >> 8
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((color & PNG_COLOR_MASK_COLOR) == 0 && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);  // also the alpha that palette expansion makes from tRNS
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (o.order == ChannelOrder::bgr) png_set_bgr(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<png_size_t>(w) * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail("decode_image: '", name, "' has an unsupported PNG layout (color type ", color, ", depth ", depth, ")");
  }
  img = Image(h, w, 3, o.order);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.row(y);
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

// ---- JPEG -----------------------------------------------------------------------------------
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// EXIF Orientation (tag 0x0112) from the APP1 segment, 1 when absent or malformed.
inline int exif_orientation(const uint8_t* p, size_t n) {
  if (n < 14 || std::memcmp(p, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* t = p + 6;
  const size_t tn = n - 6;
  const bool little = t[0] == 'I' && t[1] == 'I';
  if (!little && !(t[0] == 'M' && t[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> uint32_t { return little ? t[at] | (t[at + 1] << 8) : (t[at] << 8) | t[at + 1]; };
  auto u32 = [&](size_t at) -> uint32_t {
    return little ? t[at] | (t[at + 1] << 8) | (t[at + 2] << 16) | (static_cast<uint32_t>(t[at + 3]) << 24)
                  : (static_cast<uint32_t>(t[at]) << 24) | (t[at + 1] << 16) | (t[at + 2] << 8) | t[at + 3];
  };
  const size_t ifd = u32(4);  // size_t: ifd + 2 must not wrap around in 32 bits (fuzzer-found)
  if (ifd + 2 > tn) return 1;
  const uint32_t count = u16(ifd);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = ifd + 2 + static_cast<size_t>(i) * 12;
    if (e + 12 > tn) return 1;
    if (u16(e) == 0x0112) {
      const uint32_t v = u16(e + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

// libjpeg reports damaged data as warnings and goes on with gray or repeated pixels; the decode
// contract says damaged data throws, so these warnings are errors. Harmless ones (an unknown
// JFIF revision or Adobe transform, a bad ICC profile that is not used) stay warnings.
inline bool jpeg_warning_is_error(int code) {
  switch (code) {
    case JWRN_ARITH_BAD_CODE:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_JPEG_EOF:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_TOO_MUCH_DATA: return true;
    default: return false;
  }
}

inline Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& o) {
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = [](j_common_ptr c) {
    auto* e = reinterpret_cast<JpegError*>(c->err);
    (*c->err->format_message)(c, e->message);
    std::longjmp(e->jump, 1);
  };
  err.mgr.emit_message = [](j_common_ptr c, int level) {
    if (level < 0 && jpeg_warning_is_error(c->err->msg_code)) (*c->err->error_exit)(c);
  };
  err.mgr.output_message = [](j_common_ptr) {};
  int orientation = 1;
  int64_t w = 0, h = 0;
  // Nothing with a destructor may be created between a setjmp and a longjmp back to it: the
  // image is made between the two setjmps below.
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail("decode_image: '", name, "' is not a valid JPEG: ", err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && orientation == 1) orientation = exif_orientation(m->data, m->data_length);
  w = cinfo.image_width;
  h = cinfo.image_height;
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  const bool too_big = w <= 0 || h <= 0 || w > o.max_pixels / std::max<int64_t>(h, 1);
  // Huffman-coded data spends at least one bit per 8x8 block (progressive DC scans) and two in
  // sequential ones, so fewer than w*h/1024 bytes cannot hold the image: a small file whose
  // header claims a huge size is refused before its pixels are allocated.
  const bool implausible = !too_big && !cinfo.arith_code && static_cast<uint64_t>(size) * 1024 < static_cast<uint64_t>(w * h);
  if (cmyk || too_big || implausible) {
    jpeg_destroy_decompress(&cinfo);
    BLIP_CHECK(!cmyk, "decode_image: '", name, "' is a CMYK JPEG, which blip does not decode");
    check_size(w, h, o, name);
    fail("decode_image: '", name, "' claims ", w, "x", h, " pixels but holds only ", size,
         " bytes: truncated or corrupt JPEG");
  }
  // libjpeg's own buffers (progressive JPEGs keep every coefficient) are bounded by the pixel limit too.
  cinfo.mem->max_memory_to_use = static_cast<long>(std::min<int64_t>(o.max_pixels, int64_t{1} << 40) * 3 + (16 << 20));
  cinfo.out_color_space = o.order == ChannelOrder::bgr ? JCS_EXT_BGR : JCS_EXT_RGB;
  jpeg_start_decompress(&cinfo);
  if (int64_t{cinfo.output_width} != w || int64_t{cinfo.output_height} != h || cinfo.output_components != 3) {
    jpeg_destroy_decompress(&cinfo);
    fail("decode_image: '", name, "': libjpeg decodes it to an unexpected layout");
  }
  Image img(h, w, 3, o.order);  // decoded in place: the pixels are held once
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail("decode_image: '", name, "' is not a valid JPEG: ", err.message);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.row(static_cast<int64_t>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (o.apply_exif_orientation && orientation != 1) {
    // OpenCV's ExifTransform: 2 flip-x, 3 rot180, 4 flip-y, 5 transpose, 6 rot90 cw,
    // 7 transverse, 8 rot90 ccw.
    const bool transpose = orientation >= 5;
    const bool flip_x = orientation == 2 || orientation == 3 || orientation == 6 || orientation == 7;
    const bool flip_y = orientation == 3 || orientation == 4 || orientation == 7 || orientation == 8;
    Image out(transpose ? w : h, transpose ? h : w, 3, o.order);
    for (int64_t y = 0; y < out.height; ++y)
      for (int64_t x = 0; x < out.width; ++x) {
        int64_t tx = x, ty = y;  // position in the (possibly transposed) intermediate
        if (flip_x) tx = out.width - 1 - tx;
        if (flip_y) ty = out.height - 1 - ty;
        const int64_t src_x = transpose ? ty : tx, src_y = transpose ? tx : ty;
        std::memcpy(out.row(y) + x * 3, img.row(src_y) + src_x * 3, 3);
      }
    return out;
  }
  return img;
}


// ---- WebP -----------------------------------------------------------------------------------
inline Image decode_webp(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& o) {
  WebPBitstreamFeatures f;
  const VP8StatusCode status = WebPGetFeatures(data, size, &f);
  BLIP_CHECK(status == VP8_STATUS_OK, "decode_image: '", name, "' is not a valid WebP (libwebp status ", int(status), ")");
  BLIP_CHECK(!f.has_animation, "decode_image: '", name, "' is an animated WebP, which is not supported");
  check_size(f.width, f.height, o, name);
  Image img(f.height, f.width, 3, o.order);
  const int stride = f.width * 3;
  // Colour channels as stored; alpha dropped without compositing, as cv2.imdecode does.
  const uint8_t* ok = o.order == ChannelOrder::rgb
                          ? WebPDecodeRGBInto(data, size, img.pixels.data(), img.pixels.size(), stride)
                          : WebPDecodeBGRInto(data, size, img.pixels.data(), img.pixels.size(), stride);
  BLIP_CHECK(ok, "decode_image: '", name, "' is a corrupt or truncated WebP");
  return img;
}

// ---- GIF (first frame) ------------------------------------------------------------------------
struct GifReader {
  const uint8_t* data;
  size_t size, pos;
};

inline Image decode_gif(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& o) {
  GifReader reader{data, size, 0};
  int error = 0;
  GifFileType* gif = DGifOpen(&reader, [](GifFileType* g, GifByteType* buf, int n) -> int {
    auto* r = static_cast<GifReader*>(g->UserData);
    const size_t k = std::min(static_cast<size_t>(n), r->size - r->pos);
    std::memcpy(buf, r->data + r->pos, k);
    r->pos += k;
    return static_cast<int>(k);
  }, &error);
  BLIP_CHECK(gif, "decode_image: '", name, "' is not a valid GIF (", GifErrorString(error), ")");
  struct Close {
    GifFileType* g;
    ~Close() {
      int e = 0;
      DGifCloseFile(g, &e);
    }
  } close{gif};
  auto gif_fail = [&](const char* what) {
    fail("decode_image: '", name, "' is a corrupt or truncated GIF (", what, ": ", GifErrorString(gif->Error), ")");
  };
  check_size(gif->SWidth, gif->SHeight, o, name);
  // Records up to the first image: extensions are read past.
  for (;;) {
    GifRecordType type = UNDEFINED_RECORD_TYPE;
    if (DGifGetRecordType(gif, &type) == GIF_ERROR) gif_fail("record");
    if (type == IMAGE_DESC_RECORD_TYPE) break;
    BLIP_CHECK(type != TERMINATE_RECORD_TYPE, "decode_image: '", name, "' is a GIF without an image");
    if (type == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* ext = nullptr;
      if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) gif_fail("extension");
      while (ext)
        if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) gif_fail("extension");
    }
  }
  if (DGifGetImageDesc(gif) == GIF_ERROR) gif_fail("image descriptor");
  const GifImageDesc& d = gif->Image;
  const ColorMapObject* map = d.ColorMap ? d.ColorMap : gif->SColorMap;
  BLIP_CHECK(map && map->ColorCount > 0, "decode_image: '", name, "' is a GIF without a colour table");
  BLIP_CHECK(d.Width > 0 && d.Height > 0 && d.Left >= 0 && d.Top >= 0 && d.Left + d.Width <= gif->SWidth &&
                 d.Top + d.Height <= gif->SHeight,
             "decode_image: '", name, "' has a first frame ", d.Width, "x", d.Height, " at (", d.Left, ", ", d.Top,
             ") outside its ", gif->SWidth, "x", gif->SHeight, " screen");
  std::vector<GifPixelType> index(static_cast<size_t>(d.Width) * static_cast<size_t>(d.Height));
  auto read_row = [&](int y) {
    if (DGifGetLine(gif, index.data() + static_cast<size_t>(y) * static_cast<size_t>(d.Width), d.Width) == GIF_ERROR)
      gif_fail("pixels");
  };
  if (d.Interlace) {
    for (const auto& [start, step] : {std::pair{0, 8}, std::pair{4, 8}, std::pair{2, 4}, std::pair{1, 2}})
      for (int y = start; y < d.Height; y += step) read_row(y);
  } else {
    for (int y = 0; y < d.Height; ++y) read_row(y);
  }
  // The logical screen, the first frame placed on it and the rest in the background colour.
  Image img(gif->SHeight, gif->SWidth, 3, o.order);
  auto put = [&](uint8_t* px, int i) {
    const GifColorType& c = map->Colors[i < map->ColorCount ? i : 0];
    px[0] = o.order == ChannelOrder::rgb ? c.Red : c.Blue;
    px[1] = c.Green;
    px[2] = o.order == ChannelOrder::rgb ? c.Blue : c.Red;
  };
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < img.width; ++x) put(img.row(y) + x * 3, gif->SBackGroundColor);
  for (int y = 0; y < d.Height; ++y)
    for (int x = 0; x < d.Width; ++x)
      put(img.row(d.Top + y) + (d.Left + x) * 3, index[static_cast<size_t>(y) * static_cast<size_t>(d.Width) + size_t(x)]);
  return img;
}

}  // namespace detail

inline Image decode_image(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& options = {}) {
  BLIP_CHECK(size >= 8, "decode_image: '", name, "' is ", size, " bytes, too short to be an image");
  if (std::memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return detail::decode_png(data, size, name, options);
  if (data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return detail::decode_jpeg(data, size, name, options);
  if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0)
    return detail::decode_webp(data, size, name, options);
  if (std::memcmp(data, "GIF87a", 6) == 0 || std::memcmp(data, "GIF89a", 6) == 0)
    return detail::decode_gif(data, size, name, options);
  fail("decode_image: '", name, "' is not PNG, JPEG, WebP or GIF (unsupported format)");
}

// An encoded image file: a regular file of at most max_file_bytes (io/regular_file.hpp).
inline std::vector<uint8_t> read_file_bytes(const std::string& path, const DecodeOptions& options = {}) {
  return io::read_regular_file(path, options.max_file_bytes, "image");
}

inline Image load_image(const std::string& path, const DecodeOptions& options = {}) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, options);
  return decode_image(bytes.data(), bytes.size(), path, options);
}

}  // namespace blip::vision
