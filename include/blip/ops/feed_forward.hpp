// blip/ops/feed_forward.hpp — the transformer FFN, linear -> GELU(erf) -> linear, as one op.
//
// Contract: feed_forward_gelu(x, w1, b1, w2, b2) = linear(gelu(linear(x, w1, b1)), w2, b2) with
// PyTorch weight layouts. Why fused: the composed ops keep both the hidden pre-activation and
// its GELU for the backward (2 x [tokens, 4D] floats per layer); this op keeps only the
// pre-activation and recomputes the GELU in the backward — for BLIP-base training that is
// ~340 MB less, for one extra elementwise pass. Same results as the composition. Without a
// recorded gradient the GELU runs in place on the pre-activation.
#pragma once

#include "blip/ops/matmul.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> feed_forward_gelu(const Tensor<T, D>& x, const Tensor<T, D>& w1, const Tensor<T, D>& b1,
                               const Tensor<T, D>& w2, const Tensor<T, D>& b2) {
  Tensor<T, D> hidden, y;
  const bool needs_grad = grad_needed(x, w1, b1, w2, b2);
  {
    NoGradGuard no_grad;
    hidden = linear(x.detach(), w1.detach(), b1.detach());
    if (needs_grad) {
      y = linear(gelu(hidden), w2.detach(), b2.detach());
    } else {
      // Inference keeps no pre-activation: the GELU overwrites it, so a layer needs one [tokens, 4D]
      // buffer instead of two (fewer fresh pages, docs/performance.md).
      kernels<D>::unary(UnaryOp::gelu, hidden.data(), hidden.data(), hidden.numel());
      y = linear(hidden, w2.detach(), b2.detach());
    }
  }
  // In a reduced-precision PrecisionScope the backward's products follow the forward's
  // (ops/precision.hpp: fp16, bf16 or float).
  const Products products = scope_products<D>();
  if (needs_grad)
    record(y, "feed_forward_gelu", {&x, &w1, &b1, &w2, &b2},
           [x = x.detach(), w1 = w1.detach(), w2 = w2.detach(), hidden, products, rx = x.requires_grad()](const Tensor<T, D>& gy) {
             const int64_t in = w1.size(1), mid = w1.size(0), out = w2.size(0);
             const int64_t rows = numel(Shape(x.shape().begin(), x.shape().end() - 1));
             const Tensor<T, D> g2 = reshape(gy, {rows, out});
             const Tensor<T, D> h2 = reshape(hidden, {rows, mid});
             const Tensor<T, D> activated = gelu(h2);  // recomputed, not kept
             const Tensor<T, D> gw2 = detail::product(transpose(g2, 0, 1), activated, products);
             const Tensor<T, D> gb2 = sum(g2, {0});
             const Tensor<T, D> g_act = detail::product(g2, w2, products);
             Tensor<T, D> gh = Tensor<T, D>::empty({rows, mid});
             kernels<D>::gelu_backward(h2.data(), g_act.data(), gh.data(), gh.numel());
             const Tensor<T, D> x2 = reshape(x, {rows, in});
             const Tensor<T, D> gw1 = detail::product(transpose(gh, 0, 1), x2, products);
             const Tensor<T, D> gb1 = sum(gh, {0});
             const Tensor<T, D> gx = rx ? reshape(detail::product(gh, w1, products), x.shape()) : Tensor<T, D>();
             return std::vector{gx, gw1, gb1, gw2, gb2};
           });
  return y;
}

}  // namespace blip
