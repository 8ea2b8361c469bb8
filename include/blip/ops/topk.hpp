// blip/ops/topk.hpp — the k largest values along the last axis, with PyTorch's CPU tie order.
//
// Contract: returns values and int64 indices [..., k], largest first. Ties (and NaN, which
// ranks first) are ordered exactly as PyTorch 1.13's CPU topk orders them, because retrieval
// metrics over re-ranked rows full of equal -100 scores depend on it: per row, (value, column)
// pairs in column order, comparator "a > b (NaN first)", then std::partial_sort of the first k
// when k * 64 <= n, else std::nth_element at k-1 followed by std::sort of the first k-1.
// The values are differentiable (the gradient goes back to the selected columns).
// k > n throws blip::Error.
#pragma once

#include "blip/ops/elementwise.hpp"
#include "blip/ops/index.hpp"

namespace blip {

template <Element T, Device D>
struct TopK {
  Tensor<T, D> values;
  Tensor<int64_t, D> indices;
};

template <Element T, Device D>
TopK<T, D> topk(const Tensor<T, D>& x, int64_t k) {
  BLIP_CHECK(x.dim() >= 1, "topk: input must have rank >= 1, got ", x.shape());
  const int64_t n = x.size(-1);
  BLIP_CHECK(k >= 0 && k <= n, "topk: k = ", k, " is outside [0, ", n, "] for shape ", x.shape());
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Shape out_shape = x.shape();
  out_shape.back() = k;
  const Tensor<T, D> xc = contiguous(x.detach());
  TopK<T, D> result{Tensor<T, D>::empty(out_shape), Tensor<int64_t, D>::empty(out_shape)};
  kernels<D>::topk(xc.data(), rows, n, k, result.values.data(), result.indices.data());
  if (grad_needed(x))
    record(result.values, "topk", {&x}, [in_shape = x.shape(), indices = result.indices, rows, n, k](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(in_shape);
      kernels<D>::topk_backward(g.data(), indices.data(), rows, n, k, T(0), gx.data());
      return std::vector{gx};
    });
  return result;
}

// out [rows, n] = `fill` except out[r, indices[r, j]] = values[r, j] (values and indices [rows, k]
// as topk returns them): topk's inverse, on the device. No gradient.
template <Element T, Device D>
Tensor<T, D> topk_scatter(const Tensor<T, D>& values, const Tensor<int64_t, D>& indices, int64_t n, T fill) {
  BLIP_CHECK(values.dim() == 2 && indices.shape() == values.shape() && values.size(1) <= n, "topk_scatter: values ",
             values.shape(), " and indices ", indices.shape(), " must be one [rows, k <= ", n, "]");
  const int64_t rows = values.size(0), k = values.size(1);
  const Tensor<T, D> v = contiguous(values.detach());
  const Tensor<int64_t, D> idx = detail::checked_indices(indices, n, "topk_scatter");
  Tensor<T, D> out = Tensor<T, D>::empty({rows, n});
  kernels<D>::topk_backward(v.data(), idx.data(), rows, n, k, fill, out.data());
  return out;
}

}  // namespace blip
