// blip/vision/pipeline.hpp — the BLIP retrieval test pipeline, file to model input:
// decode (BGR) -> Pillow bicubic resize to size x size -> RGB -> (x - mean) / std -> CHW float.
//
// Contract: equal to mmpretrain's LoadImageFromFile + Resize(bicubic, pillow) + PackInputs +
// MultiModalDataPreprocessor(to_rgb=True): subtraction then division in float32, mean/std in
// RGB order on the 0-255 scale. Errors are those of decode_image. channels = 1 (a model of gray
// images, as the demo's Fashion-MNIST one) first converts to luma as Pillow's convert("L") does,
// then normalises with mean[0] / std[0] into [1, H, W].
#pragma once

#include <array>

#include "blip/core/tensor.hpp"
#include "blip/vision/decode.hpp"
#include "blip/vision/resize.hpp"

namespace blip::vision {

// Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded (L24 in Convert.c).
inline Image to_luma(const Image& img) {
  if (img.channels == 1) return img;
  Image out(img.height, img.width, 1);
  const bool rgb = img.order == ChannelOrder::rgb;
  const uint8_t* p = img.pixels.data();
  for (int64_t i = 0; i < img.height * img.width; ++i) {
    const uint32_t r = p[i * 3 + (rgb ? 0 : 2)], g = p[i * 3 + 1], b = p[i * 3 + (rgb ? 2 : 0)];
    out.pixels[size_t(i)] = static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
  }
  return out;
}

// [1, H, W] float from a 1-channel image: (v - mean) / std in float32.
inline Tensor<float, Cpu> normalize_gray(const Image& img, double mean, double std) {
  BLIP_CHECK(img.channels == 1, "normalize_gray: needs 1 channel, got ", img.channels);
  Tensor<float, Cpu> out = Tensor<float, Cpu>::empty({1, img.height, img.width});
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) - static_cast<float>(mean)) / static_cast<float>(std);
  float* o = out.data();
  for (size_t i = 0; i < img.pixels.size(); ++i) o[i] = table[img.pixels[i]];
  return out;
}

// [3, H, W] RGB float from an 8-bit image of either channel order.
inline Tensor<float, Cpu> normalize_to_chw(const Image& img, const std::array<double, 3>& mean, const std::array<double, 3>& std) {
  BLIP_CHECK(img.channels == 3, "normalize_to_chw: needs 3 channels, got ", img.channels);
  const int64_t H = img.height, W = img.width;
  Tensor<float, Cpu> out = Tensor<float, Cpu>::empty({3, H, W});
  // Only 256 inputs per channel exist: a table of (v - mean) / std, each computed exactly as
  // torch does (float subtraction, then float division), replaces a division per element.
  float table[3][256];
  for (int64_t c = 0; c < 3; ++c) {
    const float m = static_cast<float>(mean[static_cast<size_t>(c)]), s = static_cast<float>(std[static_cast<size_t>(c)]);
    for (int v = 0; v < 256; ++v) {
      const float diff = static_cast<float>(v) - m;
      table[c][v] = diff / s;
    }
  }
  float* o = out.data();
  const uint8_t* p = img.pixels.data();
  const bool rgb = img.order == ChannelOrder::rgb;
  float* r = o;
  float* g = o + H * W;
  float* b = o + 2 * H * W;
  for (int64_t i = 0; i < H * W; ++i) {
    const uint8_t first = p[i * 3], second = p[i * 3 + 1], third = p[i * 3 + 2];
    r[i] = table[0][rgb ? first : third];
    g[i] = table[1][second];
    b[i] = table[2][rgb ? third : first];
  }
  return out;
}

struct PipelineOptions {
  int64_t size = 384;
  std::array<double, 3> mean{122.770938, 116.7460125, 104.09373615};
  std::array<double, 3> std{68.5005327, 66.6321579, 70.32316305};
  int64_t channels = 3;  // 1: luma, normalised with mean[0] / std[0]
  DecodeOptions decode;
};

// The pipeline after decoding: an image already in memory (either channel order).
inline Tensor<float, Cpu> preprocess_decoded(const Image& decoded, const PipelineOptions& o = {}) {
  BLIP_CHECK(o.channels == 1 || o.channels == 3, "image pipeline: ", o.channels, " channels (1 or 3 are supported)");
  if (o.channels == 1) return normalize_gray(resize_bicubic(to_luma(decoded), o.size, o.size), o.mean[0], o.std[0]);
  BLIP_CHECK(decoded.channels == 3, "image pipeline: a model of RGB images needs 3 channels, the image has ", decoded.channels);
  return normalize_to_chw(resize_bicubic(decoded, o.size, o.size), o.mean, o.std);
}

inline Tensor<float, Cpu> preprocess_image(const uint8_t* data, size_t size, const std::string& name,
                                           const PipelineOptions& o = {}) {
  return preprocess_decoded(decode_image(data, size, name, o.decode), o);
}

inline Tensor<float, Cpu> load_and_preprocess(const std::string& path, const PipelineOptions& o = {}) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, o.decode);
  return preprocess_image(bytes.data(), bytes.size(), path, o);
}

}  // namespace blip::vision
