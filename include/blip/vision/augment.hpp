// blip/vision/augment.hpp — BLIP's training augmentations, as mmpretrain 1.2's COCO retrieval
// train pipeline defines them (configs/_base_/datasets/coco_retrieval.py):
//   RandomResizedCrop(384, crop_ratio_range=(0.5, 1.0), interpolation='bicubic', backend='cv2')
//   -> RandomFlip(prob=0.5, 'horizontal')
//   -> RandAugment(BLIP's rand_increasing_policies, num_policies=2, magnitude_level=5).
//
// Contract.
// * Randomness comes only from the Generator passed in: the same seed gives the same output on
//   every build. The draws follow the reference's order and distributions (numpy's
//   uniform/randint/choice/rand/normal) but come from xoshiro, not numpy's Mersenne twister, so
//   the random decisions match the reference only in distribution. sample() exposes them.
// * Given the decisions (a CropBox, a flip, the AugmentSteps), the pixels are those of the
//   reference stack mmpretrain 1.2 / mmcv 2.2 / OpenCV 5.0 (x86-64 wheel, AVX2 dispatch) / NumPy
//   2.4, checked on thousands of random images (tests/data/augment/README.md):
//   - bit for bit: hflip, crop, equalize, auto_contrast, rotate (cv2.warpAffine INTER_NEAREST),
//     shear (INTER_CUBIC), rotate/shear with the other interpolation, adjust_brightness and
//     adjust_sharpness for any factor, and resize_bicubic_cv2 with CubicResizePath::opencv
//     (cv2.resize INTER_CUBIC with IPP off). OpenCV 5's warps work in float32 with FMA on AVX2;
//     the exact float recipe of each is written out at the function. An OpenCV build without
//     AVX2/FMA (or another version: 4.x used fixed-point warps) rounds some pixels differently.
//   - not bit for bit: cv2.resize INTER_CUBIC as the reference runs it. OpenCV's x86 wheels hand
//     it to Intel IPP, whose float arithmetic is closed (and may differ between CPU generations);
//     CubicResizePath::ipp (the default) computes the same resampling exactly and rounds half to
//     even, which differs from IPP by one level in about 1 value in 10^5 (values within ~4e-5 of a
//     half) and more often for sources under 8 pixels on a side, where IPP's border differs.
//   In the BLIP policies Brightness and Sharpness have magnitude range (0, 0): factor 1, identity.
// * Channel order: every op treats channels alike except the constant border of rotate/shear,
//   which is given in BGR (the order mmcv's LoadImageFromFile decodes to) and mapped through
//   Image::order. mmpretrain's Rotate passes pad_val=128 to cv2 as the scalar 128, which OpenCV
//   reads as (128, 0, 0, 0): the border is blue 128, green and red 0. Shear expands it to
//   (128, 128, 128). Both quirks are reproduced (kRotateFillBgr, kShearFillBgr).
// * Images may have 1 or 3 channels (mmcv's equalize/auto_contrast assume 3; here a gray image
//   is treated as one such channel).
// * Errors: blip::Error naming the op and the offending values (empty image, bad size, bad
//   probability or range, crop box outside the image, an unknown policy).
// * Floating-point contraction: every product or sum the references round on their own passes
//   through opaque() (an empty asm, or a volatile off x86), so -ffp-contract=fast with FMA (this
//   project's -march=native build) cannot fuse it and change the last bit; the FMAs the
//   references do use are written as std::fma. Verified under both -O2 and -O3 -march=native.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "blip/core/error.hpp"
#include "blip/core/rng.hpp"
#include "blip/vision/image.hpp"

namespace blip::vision {

namespace augment_detail {

// A value the optimiser must take as it is: it cannot fuse the operation that produced it into a
// later add (GCC contracts a*b + c into an FMA under -ffp-contract=fast, its default for gnu++ with
// -march=native, and even narrows (float)((double)a * b) to a float multiply first). The
// references round every product and sum on its own except where they call an FMA explicitly.
template <class T>
inline T opaque(T v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
  return v;
#else
  volatile T t = v;
  return t;
#endif
}
inline double rounded(double x) { return opaque(x); }

// float32 arithmetic, each operation rounded once.
inline float fmul(float a, float b) { return opaque(a * b); }
inline float fadd(float a, float b) { return opaque(a + b); }
inline float fsub(float a, float b) { return opaque(a - b); }

// cvRound: round half to even (the SSE conversion under the default rounding mode).
inline int64_t cv_round(double v) { return static_cast<int64_t>(std::nearbyint(v)); }
inline int64_t cv_floor(double v) { return static_cast<int64_t>(std::floor(v)); }
inline uint8_t sat_u8(int64_t v) { return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255)); }
inline int64_t sat_s16(int64_t v) { return std::clamp<int64_t>(v, -32768, 32767); }

inline void check_image(const Image& img, const char* op) {
  BLIP_CHECK(img.height > 0 && img.width > 0 && (img.channels == 1 || img.channels == 3) &&
                 img.pixels.size() == static_cast<size_t>(img.height * img.width * img.channels),
             op, ": invalid image ", img.height, "x", img.width, "x", img.channels, " with ", img.pixels.size(), " bytes");
}

// OpenCV's interpolateCubic (Keys kernel, A = -0.75) in float32, term by term as written there.
inline std::array<float, 4> cubic_coeffs(float x) {
  std::array<float, 4> c{};
  const float t = fadd(x, 1.f);
  c[0] = fsub(fmul(fadd(fmul(fsub(fmul(-0.75f, t), -3.75f), t), -6.f), t), -3.f);
  c[1] = fadd(fmul(fmul(fsub(fmul(1.25f, x), 2.25f), x), x), 1.f);
  const float u = fsub(1.f, x);
  c[2] = fadd(fmul(fmul(fsub(fmul(1.25f, u), 2.25f), u), u), 1.f);
  c[3] = fsub(fsub(fsub(1.f, c[0]), c[1]), c[2]);
  return c;
}

constexpr int kResizeCoefBits = 11, kResizeCoefScale = 1 << kResizeCoefBits;

// Keys cubic (a = -0.75) in double, taps at distances 1+t, t, 1-t, 2-t.
inline std::array<double, 4> keys_weights(double t) {
  auto near = [](double x) { return (1.25 * x - 2.25) * x * x + 1; };
  auto far = [](double x) { return ((-0.75 * x + 3.75) * x - 6) * x + 3; };
  return {far(t + 1), near(t), near(1 - t), far(2 - t)};
}

// The float32 weights of OpenCV 5's warp bicubic kernel (bicubicWeights, SIMD form: the FMAs
// are OpenCV's v_fma, not contractions).
inline std::array<float, 4> warp_cubic_weights(float a) {
  constexpr float A = -0.75f;
  const float a2 = fmul(a, a), b = fsub(1.f, a), b2 = fmul(b, b);
  std::array<float, 4> w{};
  w[0] = fmul(A, fmul(a, b2));
  w[3] = fmul(A, fmul(a2, b));
  w[1] = std::fma(a2, std::fma(A + 2.f, a, -(A + 3.f)), 1.f);
  w[2] = fsub(fsub(fsub(1.f, w[0]), w[1]), w[3]);
  return w;
}

// The border colour per channel of `img`, from a BGR triple.
inline std::array<uint8_t, 3> fill_for(const Image& img, const std::array<uint8_t, 3>& fill_bgr) {
  if (img.channels == 1) return {fill_bgr[0], fill_bgr[0], fill_bgr[0]};
  if (img.order == ChannelOrder::bgr) return fill_bgr;
  return {fill_bgr[2], fill_bgr[1], fill_bgr[0]};
}

// 256-bin histogram of one channel. np.histogram(im, 256, (0, 255)) puts value v in bin v
// (bin edges i*255/256 are exact), so this is the reference's histogram.
inline std::array<int64_t, 256> channel_histogram(const Image& img, int64_t ch) {
  std::array<int64_t, 256> h{};
  for (size_t i = static_cast<size_t>(ch); i < img.pixels.size(); i += static_cast<size_t>(img.channels)) ++h[img.pixels[i]];
  return h;
}

inline void apply_lut(Image& img, int64_t ch, const std::array<uint8_t, 256>& lut) {
  for (size_t i = static_cast<size_t>(ch); i < img.pixels.size(); i += static_cast<size_t>(img.channels)) img.pixels[i] = lut[img.pixels[i]];
}

}  // namespace augment_detail

enum class Interpolation { nearest, bicubic };
enum class ShearDirection { horizontal, vertical };

// Border colours (BGR) of mmpretrain's Rotate and Shear with their default pad_val = 128.
inline constexpr std::array<uint8_t, 3> kRotateFillBgr{128, 0, 0};
inline constexpr std::array<uint8_t, 3> kShearFillBgr{128, 128, 128};

// ---------------------------------------------------------------------------------------------
// Deterministic ops

// mmcv.imflip(img, 'horizontal').
inline Image hflip(const Image& img) {
  augment_detail::check_image(img, "hflip");
  Image out = img;
  const int64_t C = img.channels;
  for (int64_t y = 0; y < img.height; ++y) {
    const uint8_t* src = img.row(y);
    uint8_t* dst = out.row(y);
    for (int64_t x = 0; x < img.width; ++x)
      for (int64_t c = 0; c < C; ++c) dst[x * C + c] = src[(img.width - 1 - x) * C + c];
  }
  return out;
}

// img[top:top+height, left:left+width] (mmcv.imcrop with a box inside the image).
inline Image crop(const Image& img, int64_t top, int64_t left, int64_t height, int64_t width) {
  augment_detail::check_image(img, "crop");
  BLIP_CHECK(height > 0 && width > 0 && top >= 0 && left >= 0 && top + height <= img.height && left + width <= img.width,
             "crop: box (top ", top, ", left ", left, ", ", height, "x", width, ") is not inside the ", img.height, "x",
             img.width, " image");
  Image out(height, width, img.channels, img.order);
  const size_t row_bytes = static_cast<size_t>(width * img.channels);
  for (int64_t y = 0; y < height; ++y) std::copy_n(img.row(top + y) + left * img.channels, row_bytes, out.row(y));
  return out;
}

// Which implementation of cv2.resize(..., INTER_CUBIC) on uint8 to mirror. OpenCV's x86-64 wheels
// hand it to Intel IPP (cv2.ipp.useIPP() is true by default, as in the reference runs); builds
// without IPP, or with it switched off, run OpenCV's own fixed-point code.
enum class CubicResizePath { ipp, opencv };

// cv2.resize(img, (out_width, out_height), interpolation=cv2.INTER_CUBIC).
// opencv: OpenCV's resizeGeneric_ bit for bit — 11-bit taps from the float32 Keys kernel,
//   replicated borders, an int32 horizontal pass, and a vertical pass in float32 for blocks of 8
//   values (the SSE path) and exact int32 for the rest of each row.
// ipp: IPP's arithmetic is closed; this computes the same separable Keys (a = -0.75) resampling
//   with pixel-centre mapping and replicated borders in double and rounds half to even. It equals
//   IPP's output except where the exact value lies within ~4e-5 of a half (about 1 value in 10^5
//   differs by one) and for sources narrower or shorter than 8 pixels, where IPP's border differs.
inline Image resize_bicubic_cv2(const Image& src, int64_t out_width, int64_t out_height,
                                CubicResizePath path = CubicResizePath::ipp) {
  using namespace augment_detail;
  check_image(src, "resize_bicubic_cv2");
  BLIP_CHECK(out_width > 0 && out_height > 0 && out_width <= 32767 && out_height <= 32767,
             "resize_bicubic_cv2: target ", out_width, "x", out_height, " must be within 1..32767");
  if (out_width == src.width && out_height == src.height) return src;  // cv2.resize copies
  const int64_t C = src.channels, sw = src.width, sh = src.height, dw = out_width, dh = out_height;
  if (path == CubicResizePath::ipp) {
    auto plan = [](int64_t in, int64_t out_n) {
      std::vector<std::pair<int64_t, std::array<double, 4>>> taps(static_cast<size_t>(out_n));
      const double scale = static_cast<double>(in) / static_cast<double>(out_n);
      for (int64_t d = 0; d < out_n; ++d) {
        const double f = (static_cast<double>(d) + 0.5) * scale - 0.5;
        const double fl = std::floor(f);
        taps[static_cast<size_t>(d)] = {static_cast<int64_t>(fl), keys_weights(f - fl)};
      }
      return taps;
    };
    const auto tx = plan(sw, dw), ty = plan(sh, dh);
    const int64_t row_elems = dw * C;
    std::vector<double> hrows(static_cast<size_t>(sh * row_elems));
    for (int64_t y = 0; y < sh; ++y) {
      const uint8_t* S = src.row(y);
      double* Dr = hrows.data() + y * row_elems;
      for (int64_t dx = 0; dx < dw; ++dx) {
        const auto& [s0, w] = tx[static_cast<size_t>(dx)];
        for (int64_t c = 0; c < C; ++c) {
          double v = 0;
          for (int64_t j = 0; j < 4; ++j) v += w[static_cast<size_t>(j)] * S[std::clamp<int64_t>(s0 - 1 + j, 0, sw - 1) * C + c];
          Dr[dx * C + c] = v;
        }
      }
    }
    Image out(dh, dw, C, src.order);
    for (int64_t dy = 0; dy < dh; ++dy) {
      const auto& [s0, w] = ty[static_cast<size_t>(dy)];
      const double* rows[4];
      for (int64_t k = 0; k < 4; ++k) rows[k] = hrows.data() + std::clamp<int64_t>(s0 - 1 + k, 0, sh - 1) * row_elems;
      uint8_t* Dr = out.row(dy);
      for (int64_t i = 0; i < row_elems; ++i) {
        const double v = w[0] * rows[0][i] + w[1] * rows[1][i] + w[2] * rows[2][i] + w[3] * rows[3][i];
        Dr[i] = sat_u8(cv_round(std::clamp(v, -1.0, 256.0)));
      }
    }
    return out;
  }
  const double scale_x = 1. / (static_cast<double>(dw) / static_cast<double>(sw));
  const double scale_y = 1. / (static_cast<double>(dh) / static_cast<double>(sh));

  // Source position of an output pixel centre, its floor and four fixed-point taps.
  auto taps = [](int64_t d, double scale, int64_t& s0) {
    float f = static_cast<float>(rounded((static_cast<double>(d) + 0.5) * scale) - 0.5);
    s0 = cv_floor(f);
    f -= static_cast<float>(s0);
    const auto c = cubic_coeffs(f);
    std::array<int32_t, 4> w{};
    for (int k = 0; k < 4; ++k) w[static_cast<size_t>(k)] = static_cast<int32_t>(sat_s16(cv_round(static_cast<double>(c[static_cast<size_t>(k)] * static_cast<float>(kResizeCoefScale)))));
    return w;
  };

  std::vector<int64_t> xofs(static_cast<size_t>(dw));
  std::vector<std::array<int32_t, 4>> alpha(static_cast<size_t>(dw));
  for (int64_t dx = 0; dx < dw; ++dx) alpha[static_cast<size_t>(dx)] = taps(dx, scale_x, xofs[static_cast<size_t>(dx)]);

  // Horizontal pass over every source row (int32, taps clamped to the edge as OpenCV's
  // border loop does).
  const int64_t row_elems = dw * C;
  std::vector<int32_t> hrows(static_cast<size_t>(sh * row_elems));
  for (int64_t y = 0; y < sh; ++y) {
    const uint8_t* S = src.row(y);
    int32_t* D = hrows.data() + y * row_elems;
    for (int64_t dx = 0; dx < dw; ++dx) {
      const auto& a = alpha[static_cast<size_t>(dx)];
      int64_t sx[4];
      for (int j = 0; j < 4; ++j) sx[j] = std::clamp<int64_t>(xofs[static_cast<size_t>(dx)] - 1 + j, 0, sw - 1);
      for (int64_t c = 0; c < C; ++c) {
        int32_t v = 0;
        for (int j = 0; j < 4; ++j) v += static_cast<int32_t>(S[sx[j] * C + c]) * a[static_cast<size_t>(j)];
        D[dx * C + c] = v;
      }
    }
  }

  // Vertical pass: OpenCV's SSE code (VResizeCubicVec_32s8u) handles blocks of 8 values in
  // float32 — b3*S3, then b2*S2 + that, b1*S1 + that, b0*S0 + that, rounded half to even — and
  // the tail of each row in exact int32 with a 22-bit rounding shift.
  constexpr int64_t kLanes = 8;
  const int64_t vec_end = row_elems - row_elems % kLanes;
  constexpr float kInvScale2 = 1.f / static_cast<float>(kResizeCoefScale * kResizeCoefScale);
  Image out(dh, dw, C, src.order);
  for (int64_t dy = 0; dy < dh; ++dy) {
    int64_t sy = 0;
    const auto b = taps(dy, scale_y, sy);
    const int32_t* rows[4];
    for (int k = 0; k < 4; ++k) rows[k] = hrows.data() + std::clamp<int64_t>(sy - 1 + k, 0, sh - 1) * row_elems;
    float bf[4];
    for (int k = 0; k < 4; ++k) bf[k] = static_cast<float>(b[static_cast<size_t>(k)]) * kInvScale2;
    uint8_t* D = out.row(dy);
    for (int64_t x = 0; x < vec_end; ++x) {
      float s = fmul(static_cast<float>(rows[3][x]), bf[3]);
      s = fadd(fmul(static_cast<float>(rows[2][x]), bf[2]), s);
      s = fadd(fmul(static_cast<float>(rows[1][x]), bf[1]), s);
      s = fadd(fmul(static_cast<float>(rows[0][x]), bf[0]), s);
      D[x] = sat_u8(sat_s16(cv_round(static_cast<double>(s))));
    }
    for (int64_t x = vec_end; x < row_elems; ++x) {
      const int64_t v = static_cast<int64_t>(rows[0][x]) * b[0] + static_cast<int64_t>(rows[1][x]) * b[1] +
                        static_cast<int64_t>(rows[2][x]) * b[2] + static_cast<int64_t>(rows[3][x]) * b[3];
      D[x] = sat_u8((v + (int64_t{1} << (2 * kResizeCoefBits - 1))) >> (2 * kResizeCoefBits));
    }
  }
  return out;
}

// cv2.warpAffine(img, forward, (w, h), flags=interp, borderMode=BORDER_CONSTANT, borderValue=fill)
// as OpenCV 5.0 computes it, with the output the size of the input. `forward` maps source to
// destination; OpenCV inverts it in double, then works in float32 with the inverse rounded to
// float. INTER_NEAREST (warpAffineNearestInvoker, AVX2 build): sx = fma(M0, x, y*M1 + M2) for
// blocks of 16 columns, fma(x, M0, y*M1) + M2 for the rest, rounded half to even; outside ->
// border. INTER_CUBIC (bicubicVec): sx = x*M0 + (y*M1 + M2) without FMA, Keys weights in
// float32, each row of four taps summed with FMA and the rows accumulated with FMA, rounded half
// to even; taps outside the image read the border colour.
inline Image warp_affine_cv2(const Image& src, const std::array<double, 6>& forward, Interpolation interp,
                             const std::array<uint8_t, 3>& fill_bgr) {
  using namespace augment_detail;
  check_image(src, "warp_affine_cv2");
  for (double m : forward) BLIP_CHECK(std::isfinite(m), "warp_affine_cv2: non-finite matrix entry ", m);
  double M[6] = {forward[0], forward[1], forward[2], forward[3], forward[4], forward[5]};
  {
    double D = rounded(M[0] * M[4]) - rounded(M[1] * M[3]);
    D = D != 0 ? 1. / D : 0;
    const double A11 = M[4] * D, A22 = M[0] * D;
    M[0] = A11;
    M[1] *= -D;
    M[3] *= -D;
    M[4] = A22;
    const double b1 = rounded(-M[0] * M[2]) - rounded(M[1] * M[5]);
    const double b2 = rounded(-M[3] * M[2]) - rounded(M[4] * M[5]);
    M[2] = b1;
    M[5] = b2;
  }
  float Mf[6];
  for (int i = 0; i < 6; ++i) Mf[i] = static_cast<float>(M[i]);
  const int64_t W = src.width, H = src.height, C = src.channels;
  const auto fill = fill_for(src, fill_bgr);
  Image out(H, W, C, src.order);
  if (interp == Interpolation::nearest) {
    // AVX2 lanes: 16 pixels per vector step; the scalar tail is x*M0 + y*M1 + M2 as GCC contracts it.
    const int64_t vec_end = W - W % 16;
    for (int64_t y = 0; y < H; ++y) {
      const float fy = static_cast<float>(y);
      const float row_x = fadd(fmul(fy, Mf[1]), Mf[2]), row_y = fadd(fmul(fy, Mf[4]), Mf[5]);
      uint8_t* D = out.row(y);
      for (int64_t x = 0; x < W; ++x, D += C) {
        const float fx = static_cast<float>(x);
        float sx, sy;
        if (x < vec_end) {
          sx = std::fma(Mf[0], fx, row_x);
          sy = std::fma(Mf[3], fx, row_y);
        } else {
          sx = fadd(std::fma(fx, Mf[0], fmul(fy, Mf[1])), Mf[2]);
          sy = fadd(std::fma(fx, Mf[3], fmul(fy, Mf[4])), Mf[5]);
        }
        sx = std::nearbyint(sx);
        sy = std::nearbyint(sy);
        if (sx >= 0 && sx < static_cast<float>(W) && sy >= 0 && sy < static_cast<float>(H)) {
          const uint8_t* S = src.row(static_cast<int64_t>(sy)) + static_cast<int64_t>(sx) * C;
          for (int64_t c = 0; c < C; ++c) D[c] = S[c];
        } else {
          for (int64_t c = 0; c < C; ++c) D[c] = fill[static_cast<size_t>(c)];
        }
      }
    }
    return out;
  }
  // Coordinates are clamped before the floor so that huge ones stay integral (OpenCV's MIN_SIZE 16).
  const float max_x = static_cast<float>(std::max<int64_t>(W, 16)), max_y = static_cast<float>(std::max<int64_t>(H, 16));
  for (int64_t y = 0; y < H; ++y) {
    const float fy = static_cast<float>(y);
    const float row_x = fadd(fmul(fy, Mf[1]), Mf[2]), row_y = fadd(fmul(fy, Mf[4]), Mf[5]);
    uint8_t* D = out.row(y);
    for (int64_t x = 0; x < W; ++x, D += C) {
      const float fx = static_cast<float>(x);
      const float vx = std::clamp(fadd(fmul(fx, Mf[0]), row_x), -max_x, 2 * max_x);
      const float vy = std::clamp(fadd(fmul(fx, Mf[3]), row_y), -max_y, 2 * max_y);
      const float flx = std::floor(vx), fly = std::floor(vy);
      const auto wx = warp_cubic_weights(vx - flx), wy = warp_cubic_weights(vy - fly);
      const int64_t x0 = static_cast<int64_t>(flx) - 1, y0 = static_cast<int64_t>(fly) - 1;
      for (int64_t c = 0; c < C; ++c) {
        const float border = fill[static_cast<size_t>(c)];
        float acc = 0.f;
        for (int64_t r = 0; r < 4; ++r) {
          const int64_t yy = y0 + r;
          const bool row_in = yy >= 0 && yy < H;
          float v[4];
          for (int64_t j = 0; j < 4; ++j) {
            const int64_t xx = x0 + j;
            v[j] = row_in && xx >= 0 && xx < W ? static_cast<float>(src.row(yy)[xx * C + c]) : border;
          }
          float s = fmul(v[0], wx[0]);
          s = std::fma(v[1], wx[1], s);
          s = std::fma(v[2], wx[2], s);
          s = std::fma(v[3], wx[3], s);
          acc = std::fma(s, wy[static_cast<size_t>(r)], acc);
        }
        D[c] = sat_u8(sat_s16(cv_round(static_cast<double>(acc))));
      }
    }
  }
  return out;
}

// mmcv.imrotate(img, angle_deg, center=None, scale=1.0, border_value, interpolation): positive
// angles turn the image clockwise about ((w-1)/2, (h-1)/2); the matrix is
// cv2.getRotationMatrix2D(center, -angle, 1) (center as float32, as OpenCV's Point2f holds it).
inline Image rotate(const Image& img, double angle_deg, const std::array<uint8_t, 3>& fill_bgr = kRotateFillBgr,
                    Interpolation interp = Interpolation::nearest) {
  using augment_detail::rounded;
  augment_detail::check_image(img, "rotate");
  BLIP_CHECK(std::isfinite(angle_deg), "rotate: angle must be finite, got ", angle_deg);
  const double cx = static_cast<double>(static_cast<float>(static_cast<double>(img.width - 1) * 0.5));
  const double cy = static_cast<double>(static_cast<float>(static_cast<double>(img.height - 1) * 0.5));
  const double angle = -angle_deg * (3.141592653589793238 / 180);
  const double alpha = std::cos(angle), beta = std::sin(angle);
  const std::array<double, 6> m{alpha, beta, rounded((1 - alpha) * cx) - rounded(beta * cy),
                                -beta, alpha, rounded(beta * cx) + rounded((1 - alpha) * cy)};
  return warp_affine_cv2(img, m, interp, fill_bgr);
}

// mmcv.imshear(img, magnitude, direction, border_value, interpolation): x' = x + m*y
// (horizontal) or y' = y + m*x (vertical), with m rounded to float32 as mmcv's np.float32 matrix.
inline Image shear(const Image& img, double magnitude, ShearDirection direction,
                   const std::array<uint8_t, 3>& fill_bgr = kShearFillBgr, Interpolation interp = Interpolation::bicubic) {
  augment_detail::check_image(img, "shear");
  BLIP_CHECK(std::isfinite(magnitude), "shear: magnitude must be finite, got ", magnitude);
  const double m = static_cast<double>(static_cast<float>(magnitude));
  const std::array<double, 6> fwd = direction == ShearDirection::horizontal ? std::array<double, 6>{1, m, 0, 0, 1, 0}
                                                                            : std::array<double, 6>{1, 0, 0, m, 1, 0};
  return warp_affine_cv2(img, fwd, interp, fill_bgr);
}

// mmcv.auto_contrast(img, cutoff=0): per channel, [low, high] (the occupied histogram range) is
// stretched to [0, 255] with a float64 LUT v*scale + offset, clipped and truncated; a channel
// with a single value is left alone.
inline Image auto_contrast(const Image& img) {
  using namespace augment_detail;
  check_image(img, "auto_contrast");
  Image out = img;
  for (int64_t ch = 0; ch < img.channels; ++ch) {
    const auto h = channel_histogram(img, ch);
    int low = 0, high = 255;
    while (h[static_cast<size_t>(low)] == 0) ++low;
    while (h[static_cast<size_t>(high)] == 0) --high;
    if (low >= high) continue;
    const double scale = 255.0 / static_cast<double>(high - low);
    const double offset = -static_cast<double>(low) * scale;
    std::array<uint8_t, 256> lut{};
    for (int v = 0; v < 256; ++v) {
      const double m = std::clamp(rounded(static_cast<double>(v) * scale) + offset, 0.0, 255.0);
      lut[static_cast<size_t>(v)] = static_cast<uint8_t>(m);  // astype(uint8) truncates
    }
    apply_lut(out, ch, lut);
  }
  return out;
}

// mmcv.imequalize(img) (PIL's ImageOps.equalize rule): per channel, step = (pixels - count of the
// highest occupied value) // 255; if step is 0 the channel is unchanged, otherwise value v maps
// to min(255, (cumsum[v-1] + step//2) // step), with 0 for v = 0.
inline Image equalize(const Image& img) {
  using namespace augment_detail;
  check_image(img, "equalize");
  Image out = img;
  for (int64_t ch = 0; ch < img.channels; ++ch) {
    const auto h = channel_histogram(img, ch);
    int64_t total = 0, last_nonzero = 0;
    for (int64_t c : h) {
      total += c;
      if (c > 0) last_nonzero = c;
    }
    const int64_t step = (total - last_nonzero) / 255;
    if (step == 0) continue;
    std::array<uint8_t, 256> lut{};
    int64_t cum = 0;
    for (size_t v = 0; v < 256; ++v) {
      lut[v] = static_cast<uint8_t>(std::min<int64_t>((cum + step / 2) / step, 255));
      cum += h[v];
    }
    apply_lut(out, ch, lut);
  }
  return out;
}

// mmcv.adjust_brightness(img, factor) with the cv2 backend: float32(v) * float32(factor),
// clipped to [0, 255] and truncated.
inline Image adjust_brightness(const Image& img, double factor) {
  using namespace augment_detail;
  check_image(img, "adjust_brightness");
  BLIP_CHECK(std::isfinite(factor), "adjust_brightness: factor must be finite, got ", factor);
  if (factor == 1.0) return img;
  const float f = static_cast<float>(factor);
  Image out = img;
  for (auto& p : out.pixels) p = static_cast<uint8_t>(std::clamp(fmul(static_cast<float>(p), f), 0.f, 255.f));
  return out;
}

// mmcv.adjust_sharpness(img, factor): blend with cv2.filter2D(img, -1, [[1,1,1],[1,5,1],[1,1,1]]/13)
// (float32 taps accumulated with FMA in row-major order, BORDER_REFLECT_101, rounded half to
// even), then cv2.addWeighted in float32 — fma(img, factor, degenerated*(1-factor)) as OpenCV's
// AVX2 kernel computes it — clipped and truncated. Factor 1 returns the image.
inline Image adjust_sharpness(const Image& img, double factor) {
  using namespace augment_detail;
  check_image(img, "adjust_sharpness");
  BLIP_CHECK(std::isfinite(factor), "adjust_sharpness: factor must be finite, got ", factor);
  if (factor == 1.0) return img;
  const int64_t W = img.width, H = img.height, C = img.channels;
  const float k1 = static_cast<float>(1.0 / 13), k5 = static_cast<float>(5.0 / 13);
  auto reflect = [](int64_t i, int64_t n) {
    if (n == 1) return int64_t{0};
    if (i < 0) return -i;
    if (i >= n) return 2 * n - 2 - i;
    return i;
  };
  const float alpha = static_cast<float>(factor), beta = static_cast<float>(1 - factor);
  Image out(H, W, C, img.order);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) {
        float s = 0.f;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const float v = img.row(reflect(y + dy, H))[reflect(x + dx, W) * C + c];
            s = std::fma(v, dx == 0 && dy == 0 ? k5 : k1, s);
          }
        const float degenerated = sat_u8(cv_round(static_cast<double>(s)));
        const float a = img.row(y)[x * C + c];
        const float r = std::fma(a, alpha, fmul(degenerated, beta));
        out.row(y)[x * C + c] = static_cast<uint8_t>(std::clamp(r, 0.f, 255.f));
      }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RandomResizedCrop

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
  bool fallback = false;  // no attempt fitted: the central crop
};

// mmpretrain RandomResizedCrop(scale=size, crop_ratio_range=scale, aspect_ratio_range=ratio,
// max_attempts, interpolation='bicubic', backend='cv2'); resize_path picks which cv2 cubic
// resize to mirror (the default is the IPP path the reference runs took).
struct RandomResizedCrop {
  int64_t size = 384;
  std::pair<double, double> scale{0.5, 1.0};
  std::pair<double, double> ratio{3.0 / 4.0, 4.0 / 3.0};
  int max_attempts = 10;
  CubicResizePath resize_path = CubicResizePath::ipp;

  void validate() const {
    BLIP_CHECK(size > 0 && size <= 32767, "RandomResizedCrop: size must be within 1..32767, got ", size);
    BLIP_CHECK(scale.first <= scale.second && scale.first > 0 && std::isfinite(scale.second),
               "RandomResizedCrop: scale range must be (min, max) with 0 < min <= max, got (", scale.first, ", ",
               scale.second, ")");
    BLIP_CHECK(ratio.first <= ratio.second && ratio.first > 0 && std::isfinite(ratio.second),
               "RandomResizedCrop: ratio range must be (min, max) with 0 < min <= max, got (", ratio.first, ", ",
               ratio.second, ")");
    BLIP_CHECK(max_attempts >= 0, "RandomResizedCrop: max_attempts must be >= 0, got ", max_attempts);
  }

  // rand_crop_params: up to max_attempts draws of (area fraction, log-uniform aspect); the first
  // box that fits is placed uniformly; otherwise the central crop clamped to the ratio range.
  CropBox sample_box(int64_t h, int64_t w, Generator& gen) const {
    validate();
    BLIP_CHECK(h > 0 && w > 0, "RandomResizedCrop: invalid image size ", h, "x", w);
    const double area = static_cast<double>(h * w);
    const double log_lo = std::log(ratio.first), log_hi = std::log(ratio.second);
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
      const double target_area = (scale.first + (scale.second - scale.first) * gen.uniform()) * area;
      const double aspect = std::exp(log_lo + (log_hi - log_lo) * gen.uniform());
      const auto tw = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
      const auto th = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
      if (0 < tw && tw <= w && 0 < th && th <= h) {
        const int64_t top = gen.uniform_int(h - th + 1);
        const int64_t left = gen.uniform_int(w - tw + 1);
        return {top, left, th, tw, false};
      }
    }
    const double in_ratio = static_cast<double>(w) / static_cast<double>(h);
    int64_t tw = w, th = h;
    if (in_ratio < ratio.first) {
      th = static_cast<int64_t>(std::nearbyint(static_cast<double>(tw) / ratio.first));
    } else if (in_ratio > ratio.second) {
      tw = static_cast<int64_t>(std::nearbyint(static_cast<double>(th) * ratio.second));
    }
    th = std::clamp<int64_t>(th, 1, h);
    tw = std::clamp<int64_t>(tw, 1, w);
    return {(h - th) / 2, (w - tw) / 2, th, tw, true};
  }

  // The crop of `box`, resized to size x size with cv2 INTER_CUBIC.
  Image apply(const Image& img, const CropBox& box) const {
    validate();
    return resize_bicubic_cv2(crop(img, box.top, box.left, box.height, box.width), size, size, resize_path);
  }

  Image operator()(const Image& img, Generator& gen) const {
    augment_detail::check_image(img, "RandomResizedCrop");
    return apply(img, sample_box(img.height, img.width, gen));
  }
};

// ---------------------------------------------------------------------------------------------
// RandAugment

enum class AugmentOp { auto_contrast, equalize, rotate, brightness, sharpness, shear_x, shear_y };

inline const char* augment_op_name(AugmentOp op) {
  switch (op) {
    case AugmentOp::auto_contrast: return "AutoContrast";
    case AugmentOp::equalize: return "Equalize";
    case AugmentOp::rotate: return "Rotate";
    case AugmentOp::brightness: return "Brightness";
    case AugmentOp::sharpness: return "Sharpness";
    case AugmentOp::shear_x: return "Shear(horizontal)";
    case AugmentOp::shear_y: return "Shear(vertical)";
  }
  return "unknown";
}

// One entry of RandAugment's policy list: the op, its magnitude_range (val1, val2), the
// probability it runs once chosen, and the probability its magnitude is negated (mmpretrain's
// defaults: prob 0.5, random_negative_prob 0.5). AutoContrast and Equalize have no magnitude.
struct AugmentPolicy {
  AugmentOp op = AugmentOp::auto_contrast;
  double magnitude_lo = 0, magnitude_hi = 0;
  double prob = 0.5;
  double random_negative_prob = 0.5;

  bool has_magnitude() const { return op != AugmentOp::auto_contrast && op != AugmentOp::equalize; }
};

// BLIP's rand_increasing_policies (coco_retrieval.py).
inline std::vector<AugmentPolicy> blip_rand_increasing_policies() {
  return {
      {AugmentOp::auto_contrast}, {AugmentOp::equalize},       {AugmentOp::rotate, 0, 30},
      {AugmentOp::brightness, 0, 0.0}, {AugmentOp::sharpness, 0, 0}, {AugmentOp::shear_x, 0, 0.3},
      {AugmentOp::shear_y, 0, 0.3},
  };
}

// One chosen policy after its random decisions: whether it runs and with which (signed) magnitude.
struct AugmentStep {
  size_t policy = 0;
  bool applied = false;
  double magnitude = 0;
};

struct RandAugment {
  std::vector<AugmentPolicy> policies = blip_rand_increasing_policies();
  int64_t num_policies = 2;
  double magnitude_level = 5;
  double total_level = 10;
  // > 0: level ~ N(magnitude_level, magnitude_std) clipped to [0, total_level]; +infinity: the
  // reference's 'inf', level ~ U(0, magnitude_level); <= 0: fixed.
  double magnitude_std = 0;
  std::array<uint8_t, 3> rotate_fill_bgr = kRotateFillBgr;
  std::array<uint8_t, 3> shear_fill_bgr = kShearFillBgr;

  void validate() const {
    BLIP_CHECK(!policies.empty(), "RandAugment: no policies");
    BLIP_CHECK(num_policies > 0, "RandAugment: num_policies must be > 0, got ", num_policies);
    BLIP_CHECK(magnitude_level >= 0 && std::isfinite(magnitude_level), "RandAugment: magnitude_level must be >= 0, got ",
               magnitude_level);
    BLIP_CHECK(total_level > 0 && std::isfinite(total_level), "RandAugment: total_level must be > 0, got ", total_level);
    BLIP_CHECK(!std::isnan(magnitude_std), "RandAugment: magnitude_std is NaN");
    for (const auto& p : policies) {
      BLIP_CHECK(p.prob >= 0 && p.prob <= 1, "RandAugment: ", augment_op_name(p.op), " prob must be in [0, 1], got ", p.prob);
      BLIP_CHECK(p.random_negative_prob >= 0 && p.random_negative_prob <= 1, "RandAugment: ", augment_op_name(p.op),
                 " random_negative_prob must be in [0, 1], got ", p.random_negative_prob);
      BLIP_CHECK(std::isfinite(p.magnitude_lo) && std::isfinite(p.magnitude_hi), "RandAugment: ", augment_op_name(p.op),
                 " magnitude range must be finite, got (", p.magnitude_lo, ", ", p.magnitude_hi, ")");
    }
  }

  // BaseAugTransform.random_magnitude: (level / total_level) * (val2 - val1) + val1.
  double magnitude_of(const AugmentPolicy& p, double level) const {
    using augment_detail::rounded;
    return rounded((level / total_level) * (p.magnitude_hi - p.magnitude_lo)) + p.magnitude_lo;
  }

  // The random decisions, in the reference's order: the policy indices (uniform, with
  // replacement), then per chosen policy: disable if rand > prob; else the level (if
  // magnitude_std asks), then negation if rand < random_negative_prob.
  std::vector<AugmentStep> sample(Generator& gen) const {
    validate();
    std::vector<AugmentStep> steps(static_cast<size_t>(num_policies));
    for (auto& s : steps) s.policy = static_cast<size_t>(gen.uniform_int(static_cast<int64_t>(policies.size())));
    for (auto& s : steps) {
      const auto& p = policies[s.policy];
      s.applied = !(gen.uniform() > p.prob);
      if (!s.applied || !p.has_magnitude()) continue;
      double level = magnitude_level;
      if (std::isinf(magnitude_std) && magnitude_std > 0) {
        level = level * gen.uniform();
      } else if (magnitude_std > 0) {
        level = std::clamp(magnitude_level + magnitude_std * gen.normal(), 0.0, total_level);
      }
      s.magnitude = magnitude_of(p, level);
      if (gen.uniform() < p.random_negative_prob) s.magnitude = -s.magnitude;
    }
    return steps;
  }

  // Runs one policy with a given (signed) magnitude, as the reference's transform would.
  Image apply_op(const Image& img, AugmentOp op, double magnitude) const {
    switch (op) {
      case AugmentOp::auto_contrast: return auto_contrast(img);
      case AugmentOp::equalize: return equalize(img);
      case AugmentOp::rotate: return rotate(img, magnitude, rotate_fill_bgr, Interpolation::nearest);
      case AugmentOp::brightness: return adjust_brightness(img, 1 + magnitude);
      case AugmentOp::sharpness: return adjust_sharpness(img, 1 + magnitude);
      case AugmentOp::shear_x: return shear(img, magnitude, ShearDirection::horizontal, shear_fill_bgr, Interpolation::bicubic);
      case AugmentOp::shear_y: return shear(img, magnitude, ShearDirection::vertical, shear_fill_bgr, Interpolation::bicubic);
    }
    fail("RandAugment: unknown op ", static_cast<int>(op));
  }

  Image apply(const Image& img, const std::vector<AugmentStep>& steps) const {
    augment_detail::check_image(img, "RandAugment");
    Image out = img;
    for (const auto& s : steps) {
      BLIP_CHECK(s.policy < policies.size(), "RandAugment: step names policy ", s.policy, " of ", policies.size());
      if (s.applied) out = apply_op(out, policies[s.policy].op, s.magnitude);
    }
    return out;
  }

  Image operator()(const Image& img, Generator& gen) const { return apply(img, sample(gen)); }
};

// ---------------------------------------------------------------------------------------------
// The image part of BLIP's train pipeline: RandomResizedCrop -> RandomFlip -> RandAugment.

struct TrainAugmentDecisions {
  CropBox box;
  bool flipped = false;
  std::vector<AugmentStep> steps;
};

struct TrainAugment {
  RandomResizedCrop crop;
  double flip_prob = 0.5;
  RandAugment rand_augment;

  TrainAugmentDecisions sample(int64_t height, int64_t width, Generator& gen) const {
    BLIP_CHECK(flip_prob >= 0 && flip_prob <= 1, "TrainAugment: flip_prob must be in [0, 1], got ", flip_prob);
    TrainAugmentDecisions d;
    d.box = crop.sample_box(height, width, gen);
    d.flipped = gen.uniform() < flip_prob;
    d.steps = rand_augment.sample(gen);
    return d;
  }

  Image apply(const Image& img, const TrainAugmentDecisions& d) const {
    Image out = crop.apply(img, d.box);
    if (d.flipped) out = hflip(out);
    return rand_augment.apply(out, d.steps);
  }

  Image operator()(const Image& img, Generator& gen) const {
    augment_detail::check_image(img, "TrainAugment");
    return apply(img, sample(img.height, img.width, gen));
  }
};

}  // namespace blip::vision
