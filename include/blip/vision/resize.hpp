// blip/vision/resize.hpp — Pillow's BICUBIC resize, bit for bit (Pillow 9.x ImagingResample).
//
// Contract: separable filter with a = -0.5 whose support is scaled by the downscale factor
// (antialiasing); weights computed in double, normalised per output pixel, then rounded to
// 22-bit fixed point; accumulation in int32 with a rounding offset and a clamp to 0..255 after
// each pass. The horizontal pass runs first, over only the rows the vertical pass reads; a pass
// whose size does not change is skipped; equal sizes copy. Works on 1 or 3 channels; channel
// order is irrelevant (each channel is resized on its own).
#pragma once

#include <cmath>

#include "blip/vision/image.hpp"

namespace blip::vision {

namespace detail {

constexpr int kPrecisionBits = 32 - 8 - 2;

inline double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct ResampleCoefficients {
  int64_t ksize = 0;
  std::vector<int64_t> bounds;  // per output: first input index, count
  std::vector<int32_t> weights;  // per output: ksize fixed-point weights
};

inline ResampleCoefficients precompute(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  ResampleCoefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size * 2));
  c.weights.assign(static_cast<size_t>(out_size * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);  // truncation, as C's (int)
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((static_cast<double>(x + xmin) - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = w;
      ww += w;
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double w = k[static_cast<size_t>(x)];
      if (ww != 0.0) w /= ww;
      const double scaled = w * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(xx * c.ksize + x)] = static_cast<int32_t>(scaled < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    c.bounds[static_cast<size_t>(xx * 2)] = xmin;
    c.bounds[static_cast<size_t>(xx * 2 + 1)] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace detail

namespace detail {

// One vertical pass; rows are accumulated whole (contiguous, so the compiler vectorises it).
inline void resample_vertical(const Image& src, Image& dst, const ResampleCoefficients& c, int64_t shift) {
  const int64_t n = dst.width * dst.channels;
  std::vector<int32_t> acc(static_cast<size_t>(n));
  for (int64_t yy = 0; yy < dst.height; ++yy) {
    const int64_t ymin = c.bounds[static_cast<size_t>(yy * 2)] - shift, count = c.bounds[static_cast<size_t>(yy * 2 + 1)];
    const int32_t* k = c.weights.data() + yy * c.ksize;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int64_t y = 0; y < count; ++y) {
      const uint8_t* row = src.row(y + ymin);
      const int32_t w = k[y];
      int32_t* a = acc.data();
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) a[i] += static_cast<int32_t>(row[i]) * w;
    }
    uint8_t* out = dst.row(yy);
    const int32_t* a = acc.data();
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = clip8(a[i]);
  }
}

// Rows [begin, end) of an HxWxC image as a Wx(end-begin)xC image (pixels stay whole).
inline Image transposed(const Image& in, int64_t begin, int64_t end) {
  const int64_t C = in.channels;
  Image out(in.width, end - begin, C, in.order);
  for (int64_t y = begin; y < end; ++y) {
    const uint8_t* src = in.row(y);
    for (int64_t x = 0; x < in.width; ++x)
      for (int64_t ch = 0; ch < C; ++ch) out.pixels[static_cast<size_t>((x * out.width + (y - begin)) * C + ch)] = src[x * C + ch];
  }
  return out;
}

}  // namespace detail

inline Image resize_bicubic(const Image& in, int64_t out_width, int64_t out_height) {
  BLIP_CHECK(out_width > 0 && out_height > 0, "resize_bicubic: target ", out_width, "x", out_height, " must be positive");
  BLIP_CHECK(in.width > 0 && in.height > 0, "resize_bicubic: empty input image");
  const bool horizontal = out_width != in.width, vertical = out_height != in.height;
  if (!horizontal && !vertical) return in;
  const auto vert = detail::precompute(in.height, out_height);
  if (!horizontal) {
    Image out(out_height, in.width, in.channels, in.order);
    detail::resample_vertical(in, out, vert, 0);
    return out;
  }
  const auto horiz = detail::precompute(in.width, out_width);
  // The horizontal pass covers only the rows the vertical pass reads.
  const int64_t first = vertical ? vert.bounds[0] : 0;
  const int64_t last = vertical ? vert.bounds[static_cast<size_t>(out_height * 2 - 2)] +
                                      vert.bounds[static_cast<size_t>(out_height * 2 - 1)]
                                : in.height;
  // The horizontal pass runs as a vertical pass over the transposed rows: the same sums in the
  // same order per output value, but over contiguous memory the compiler vectorises.
  const Image columns = detail::transposed(in, first, last);
  Image resampled(out_width, last - first, in.channels, in.order);
  detail::resample_vertical(columns, resampled, horiz, 0);
  const Image tmp = detail::transposed(resampled, 0, out_width);
  if (!vertical) return tmp;
  Image out(out_height, out_width, in.channels, in.order);
  detail::resample_vertical(tmp, out, vert, first);
  return out;
}

}  // namespace blip::vision
