// blip/ops/conv.hpp — conv2d with stride equal to the kernel (ViT patch embedding).
//
// Contract: x [B, C, H, W], weight [O, C, p, q], bias [O] (or undefined), stride (p, q):
// the non-overlapping patches of x, each projected by the weight. H and W must be multiples
// of p and q (pad first; mmcv's corner padding is the caller's job). Returns [B, O, H/p, W/q]
// (a view whose memory is [B, H/p, W/q, O]; flatten it with patches_to_tokens for a ViT).
// Other strides throw blip::Error: this is the only convolution BLIP needs.
#pragma once

#include "blip/ops/matmul.hpp"

namespace blip {

// [B, C, H, W] -> [B * (H/p) * (W/q), C * p * q]: each row one patch, columns in the
// weight's (c, i, j) order. Pure data movement, differentiable through the views.
template <Element T, Device D>
Tensor<T, D> patchify(const Tensor<T, D>& x, int64_t p, int64_t q) {
  BLIP_CHECK(x.dim() == 4, "patchify: input must be [B, C, H, W], got ", x.shape());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  BLIP_CHECK(p > 0 && q > 0 && H % p == 0 && W % q == 0, "patchify: image ", H, "x", W,
             " is not a multiple of the patch ", p, "x", q, " (pad it first)");
  const Tensor<T, D> grid = reshape(x, {B, C, H / p, p, W / q, q});
  return reshape(permute(grid, {0, 2, 4, 1, 3, 5}), {B * (H / p) * (W / q), C * p * q});
}

template <Element T, Device D>
Tensor<T, D> conv2d(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                    std::array<int64_t, 2> stride) {
  BLIP_CHECK(weight.dim() == 4 && x.dim() == 4 && weight.size(1) == x.size(1), "conv2d: input ", x.shape(),
             " and weight ", weight.shape(), " do not agree");
  const int64_t p = weight.size(2), q = weight.size(3);
  BLIP_CHECK(stride[0] == p && stride[1] == q, "conv2d: only stride == kernel is supported (kernel ", p, "x", q,
             ", stride ", stride[0], "x", stride[1], ")");
  const int64_t B = x.size(0), O = weight.size(0), gh = x.size(2) / p, gw = x.size(3) / q;
  const Tensor<T, D> tokens = linear(patchify(x, p, q), reshape(weight, {O, -1}), bias);
  return permute(reshape(tokens, {B, gh, gw, O}), {0, 3, 1, 2});
}

}  // namespace blip
