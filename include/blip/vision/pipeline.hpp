// blip/vision/pipeline.hpp — the BLIP retrieval test pipeline, file to model input:
// decode (BGR) -> Pillow bicubic resize to size x size -> RGB -> (x - mean) / std -> CHW float.
//
// Contract: equal to mmpretrain's LoadImageFromFile + Resize(bicubic, pillow) + PackInputs +
// MultiModalDataPreprocessor(to_rgb=True): subtraction then division in float32, mean/std in
// RGB order on the 0-255 scale. Errors are those of decode_image.
#pragma once

#include <array>

#include "blip/core/tensor.hpp"
#include "blip/vision/decode.hpp"
#include "blip/vision/resize.hpp"

namespace blip::vision {

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
  DecodeOptions decode;
};

inline Tensor<float, Cpu> preprocess_image(const uint8_t* data, size_t size, const std::string& name,
                                           const PipelineOptions& o = {}) {
  const Image decoded = decode_image(data, size, name, o.decode);
  return normalize_to_chw(resize_bicubic(decoded, o.size, o.size), o.mean, o.std);
}

inline Tensor<float, Cpu> load_and_preprocess(const std::string& path, const PipelineOptions& o = {}) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, o.decode);
  return preprocess_image(bytes.data(), bytes.size(), path, o);
}

}  // namespace blip::vision
