// blip/ops/index.hpp — embedding lookup, index_select, concat/stack, masked_fill.
//
// Contract:
// - embedding(ids, weight, padding_idx): ids int64 of any shape, weight [V, E] -> ids.shape + [E];
//   the padding_idx row (if >= 0) receives zero gradient, as torch.nn.Embedding.
// - index_select(x, axis, index): index int64 [n]; gathers n slices along axis; repeated
//   indices accumulate gradient.
// - concat(xs, axis) / stack(xs, axis): shapes must agree off the axis.
// - masked_fill(x, mask, value): mask (integral, nonzero = fill) broadcasts to x's shape.
// Out-of-range ids/indices throw blip::Error naming the op, the position and the value.
#pragma once

#include "blip/ops/elementwise.hpp"

namespace blip {

namespace detail {

// The indices as a contiguous int64 tensor, checked on the device (blip::Error naming the op, the
// position and the value of the first one outside [0, extent)).
template <Device D>
Tensor<int64_t, D> checked_indices(const Tensor<int64_t, D>& index, int64_t extent, const char* op,
                                   const char* what = "index") {
  const Tensor<int64_t, D> idx = contiguous(index);
  kernels<D>::check_indices(idx.data(), idx.numel(), extent, op, what);
  return idx;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> index_select(const Tensor<T, D>& x, int64_t axis, const Tensor<int64_t, D>& index) {
  const int64_t a = normalize_axis(axis, x.dim(), "index_select");
  BLIP_CHECK(index.dim() == 1, "index_select: index must be 1-D, got ", index.shape());
  const int64_t extent = x.shape()[static_cast<size_t>(a)];
  const Tensor<int64_t, D> idx = detail::checked_indices(index, extent, "index_select");
  const int64_t n = idx.numel();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= x.shape()[static_cast<size_t>(i)];
  for (int64_t i = a + 1; i < x.dim(); ++i) inner *= x.shape()[static_cast<size_t>(i)];
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(a)] = n;
  const Tensor<T, D> xc = contiguous(x.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(out_shape);
  kernels<D>::gather(xc.data(), extent, y.data(), idx.data(), n, outer, inner);
  if (grad_needed(x))
    record(y, "index_select", {&x}, [in_shape = x.shape(), idx, n, extent, outer, inner](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::zeros(in_shape);
      kernels<D>::scatter_add(g.data(), gx.data(), extent, idx.data(), n, outer, inner, int64_t{-1});
      return std::vector{gx};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> embedding(const Tensor<int64_t, D>& ids, const Tensor<T, D>& weight, int64_t padding_idx = -1) {
  BLIP_CHECK(weight.dim() == 2, "embedding: weight must be [vocab, dim], got ", weight.shape());
  const int64_t vocab = weight.size(0), width = weight.size(1);
  const Tensor<int64_t, D> idx = detail::checked_indices(ids, vocab, "embedding");
  const int64_t n = idx.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(width);
  const Tensor<T, D> w = contiguous(weight.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(out_shape);
  kernels<D>::gather(w.data(), vocab, y.data(), idx.data(), n, int64_t{1}, width);
  if (grad_needed(weight))
    record(y, "embedding", {&weight}, [idx, n, vocab, width, padding_idx](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gw = Tensor<T, D>::zeros({vocab, width});
      kernels<D>::scatter_add(g.data(), gw.data(), vocab, idx.data(), n, int64_t{1}, width, padding_idx);
      return std::vector{gw};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> concat(const std::vector<Tensor<T, D>>& xs, int64_t axis) {
  BLIP_CHECK(!xs.empty(), "concat: no tensors given");
  const int64_t a = normalize_axis(axis, xs[0].dim(), "concat");
  Shape out_shape = xs[0].shape();
  out_shape[static_cast<size_t>(a)] = 0;
  std::vector<int64_t> extents;
  for (const auto& x : xs) {
    BLIP_CHECK(x.dim() == xs[0].dim(), "concat: ranks differ: ", xs[0].shape(), " and ", x.shape());
    for (int64_t i = 0; i < x.dim(); ++i)
      BLIP_CHECK(i == a || x.shape()[static_cast<size_t>(i)] == xs[0].shape()[static_cast<size_t>(i)],
                 "concat: shapes ", xs[0].shape(), " and ", x.shape(), " differ off axis ", a);
    extents.push_back(x.shape()[static_cast<size_t>(a)]);
    out_shape[static_cast<size_t>(a)] += extents.back();
  }
  Tensor<T, D> y = Tensor<T, D>::empty(out_shape);
  int64_t start = 0;
  for (const auto& x : xs) {
    const int64_t e = x.shape()[static_cast<size_t>(a)];
    copy_into(narrow(y, a, start, e), x.detach());
    start += e;
  }
  std::vector<const Tensor<T, D>*> inputs;
  for (const auto& x : xs) inputs.push_back(&x);
  if (grad_needed(inputs))
    record(y, "concat", inputs, [a, extents](const Tensor<T, D>& gy) {
      std::vector<Tensor<T, D>> grads;
      int64_t begin = 0;
      for (int64_t e : extents) {
        grads.push_back(contiguous(narrow(gy, a, begin, e)));
        begin += e;
      }
      return grads;
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> stack(const std::vector<Tensor<T, D>>& xs, int64_t axis) {
  BLIP_CHECK(!xs.empty(), "stack: no tensors given");
  const int64_t a = normalize_axis(axis, xs[0].dim() + 1, "stack");
  std::vector<Tensor<T, D>> expanded;
  for (const auto& x : xs) {
    BLIP_CHECK(x.shape() == xs[0].shape(), "stack: shapes differ: ", xs[0].shape(), " and ", x.shape());
    expanded.push_back(unsqueeze(x, a));
  }
  return concat(expanded, a);
}

template <Element T, Device D, class M>
  requires std::integral<M>
Tensor<T, D> masked_fill(const Tensor<T, D>& x, const Tensor<M, D>& mask, T value) {
  const Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  BLIP_CHECK(shape == x.shape(), "masked_fill: mask ", mask.shape(), " does not broadcast to input ", x.shape());
  const Tensor<M, D> m = contiguous(expand(mask, shape));
  const Tensor<T, D> xc = contiguous(x.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(shape);
  kernels<D>::masked_fill(xc.data(), m.data(), value, y.data(), y.numel());
  if (grad_needed(x))
    record(y, "masked_fill", {&x}, [m](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(g.shape());
      kernels<D>::masked_fill_backward(g.data(), m.data(), gx.data(), g.numel());
      return std::vector{gx};
    });
  return y;
}

}  // namespace blip
