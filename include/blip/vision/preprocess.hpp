// blip/vision/preprocess.hpp — the data preprocessor: raw 0-255 images to the model's input.
//
// Contract: raw [N, 3, H, W] (channel order BGR when `bgr_input`, as mmpretrain's
// MultiModalDataPreprocessor with to_rgb=True receives them) -> RGB, (x - mean[c]) / std[c]
// with mean/std in RGB order on the 0-255 scale. Float arithmetic per element as
// torch: (x - mean) / std.
#pragma once

#include <array>

#include "blip/ops/elementwise.hpp"
#include "blip/ops/index.hpp"

namespace blip {

template <Differentiable T, Device D>
Tensor<T, D> normalize_images(const Tensor<T, D>& raw, const std::array<double, 3>& mean, const std::array<double, 3>& std,
                              bool bgr_input = true) {
  BLIP_CHECK(raw.dim() == 4 && raw.size(1) == 3, "normalize_images: expected [N, 3, H, W], got ", raw.shape());
  Tensor<T, D> rgb = raw;
  if (bgr_input) rgb = index_select(raw, 1, Tensor<int64_t, D>::from_vector({3}, {2, 1, 0}));
  const Tensor<T, D> m = Tensor<T, D>::from_vector({1, 3, 1, 1}, {static_cast<T>(mean[0]), static_cast<T>(mean[1]), static_cast<T>(mean[2])});
  const Tensor<T, D> s = Tensor<T, D>::from_vector({1, 3, 1, 1}, {static_cast<T>(std[0]), static_cast<T>(std[1]), static_cast<T>(std[2])});
  return div(sub(rgb, m), s);
}

}  // namespace blip
