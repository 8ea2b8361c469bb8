// blip/ops/norm.hpp — layer_norm and l2_normalize over the last axis.
//
// Contract:
// - layer_norm(x, weight, bias, eps): torch.nn.functional.layer_norm over the last axis with
//   weight and bias of shape [x.size(-1)]; biased variance; eps is a parameter (1e-6 in the
//   ViT, 1e-12 in BERT).
// - l2_normalize(x, eps = 1e-12): x / max(||x||_2, eps) per row (torch F.normalize).
#pragma once

#include "blip/ops/elementwise.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> layer_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias, double eps) {
  BLIP_CHECK(x.dim() >= 1, "layer_norm: input must have rank >= 1, got ", x.shape());
  const int64_t cols = x.size(-1);
  BLIP_CHECK(weight.shape() == Shape{cols} && bias.shape() == Shape{cols}, "layer_norm: weight ", weight.shape(),
             " and bias ", bias.shape(), " must both be [", cols, "] for input ", x.shape());
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const Tensor<T, D> xc = contiguous(x.detach()), w = contiguous(weight.detach()), b = contiguous(bias.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  Tensor<T, D> mean = Tensor<T, D>::empty({rows}), rstd = Tensor<T, D>::empty({rows});
  kernels<D>::layer_norm(xc.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, cols, eps);
  if (grad_needed(x, weight, bias))
    record(y, "layer_norm", {&x, &weight, &bias}, [xc, w, mean, rstd, rows, cols](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(xc.shape());
      Tensor<T, D> gw = Tensor<T, D>::zeros({cols}), gb = Tensor<T, D>::zeros({cols});
      kernels<D>::layer_norm_backward(xc.data(), w.data(), mean.data(), rstd.data(), g.data(), gx.data(), gw.data(),
                                      gb.data(), rows, cols);
      return std::vector{gx, gw, gb};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> l2_normalize(const Tensor<T, D>& x, double eps = 1e-12) {
  BLIP_CHECK(x.dim() >= 1, "l2_normalize: input must have rank >= 1, got ", x.shape());
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const Tensor<T, D> xc = contiguous(x.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  Tensor<T, D> norms = Tensor<T, D>::empty({rows});  // max(||x||, eps) per row
  kernels<D>::l2_normalize(xc.data(), y.data(), norms.data(), rows, cols, eps);
  if (grad_needed(x))
    record(y, "l2_normalize", {&x}, [y = y.detach(), norms, rows, cols, eps](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(y.shape());
      kernels<D>::l2_normalize_backward(y.data(), norms.data(), g.data(), gx.data(), rows, cols, eps);
      return std::vector{gx};
    });
  return y;
}

}  // namespace blip
