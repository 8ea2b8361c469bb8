// blip/ops/dropout.hpp — inverted dropout with an explicit generator.
//
// Contract: in training, each element is zeroed with probability p and the rest scaled by
// 1/(1-p). The mask is Philox4x32-10 keyed by one draw from `gen` (backend/portable.hpp), made on
// x's device: the same seed gives the same mask on the CPU and on CUDA, with no transfer.
// Outside training, or with p == 0, returns x unchanged. p must be in [0, 1].
#pragma once

#include "blip/ops/creation.hpp"
#include "blip/ops/elementwise.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> dropout(const Tensor<T, D>& x, double p, Generator& gen, bool training = true) {
  BLIP_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability ", p, " is outside [0, 1]");
  if (!training || p == 0.0) return x;
  const T keep_scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
  Tensor<T, D> mask = Tensor<T, D>::empty(x.shape());
  kernels<D>::dropout_mask(mask.data(), mask.numel(), backend::portable::dropout_threshold(p), keep_scale,
                           gen.next_u64());
  return mul(x, mask);
}

}  // namespace blip
