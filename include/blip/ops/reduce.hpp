// blip/ops/reduce.hpp — sum and mean over axes, and sum_to (undoing a broadcast).
//
// Contract: `axes` may be negative and in any order; duplicates throw. keepdim keeps reduced
// axes with extent 1. An empty axis list reduces everything to a scalar (shape []).
// sum_to(x, shape) sums x down to a shape it was broadcast from (throws if it was not).
#pragma once

#include <algorithm>

#include "blip/ops/creation.hpp"
#include "blip/ops/view.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> scale(const Tensor<T, D>& x, T factor);  // ops/elementwise.hpp

namespace detail {

// Sums one axis of x; keeps it with extent 1.
template <Element T, Device D>
Tensor<T, D> sum_one_axis(const Tensor<T, D>& x, int64_t axis) {
  const Tensor<T, D> xc = contiguous(x.detach());
  Shape out_shape = xc.shape();
  const int64_t r = out_shape[static_cast<size_t>(axis)];
  out_shape[static_cast<size_t>(axis)] = 1;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= xc.shape()[static_cast<size_t>(i)];
  for (int64_t i = axis + 1; i < xc.dim(); ++i) inner *= xc.shape()[static_cast<size_t>(i)];
  Tensor<T, D> out = Tensor<T, D>::empty(out_shape);
  kernels<D>::sum_middle(xc.data(), outer, r, inner, out.data());
  return out;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> sum(const Tensor<T, D>& x, std::vector<int64_t> axes, bool keepdim = false) {
  if (axes.empty()) {
    axes.resize(static_cast<size_t>(x.dim()));
    std::iota(axes.begin(), axes.end(), 0);
  }
  for (int64_t& a : axes) a = normalize_axis(a, x.dim(), "sum");
  std::sort(axes.begin(), axes.end());
  BLIP_CHECK(std::adjacent_find(axes.begin(), axes.end()) == axes.end(), "sum: repeated axis in ", axes,
             " for shape ", x.shape());
  Tensor<T, D> kept = x.detach();
  for (auto it = axes.rbegin(); it != axes.rend(); ++it) kept = detail::sum_one_axis(kept, *it);
  if (axes.empty()) kept = clone(kept);  // rank 0: nothing to reduce, still a new tensor
  Shape kept_shape = kept.shape();
  Tensor<T, D> y = kept;
  if (!keepdim) {
    Shape squeezed;
    for (int64_t i = 0; i < x.dim(); ++i)
      if (!std::binary_search(axes.begin(), axes.end(), i)) squeezed.push_back(x.shape()[static_cast<size_t>(i)]);
    y = reshape(kept, squeezed);
  }
  if (grad_needed(x))
    record(y, "sum", {&x}, [kept_shape, in_shape = x.shape()](const Tensor<T, D>& gy) {
      return std::vector{expand(reshape(gy, kept_shape), in_shape)};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> sum(const Tensor<T, D>& x) {
  return sum(x, {}, false);
}

template <Element T, Device D>
Tensor<T, D> mean(const Tensor<T, D>& x, std::vector<int64_t> axes, bool keepdim = false) {
  int64_t count = 1;
  if (axes.empty()) {
    count = x.numel();
  } else {
    for (int64_t a : axes) count *= x.shape()[static_cast<size_t>(normalize_axis(a, x.dim(), "mean"))];
  }
  return scale(sum(x, std::move(axes), keepdim), T(1) / static_cast<T>(std::max<int64_t>(count, 1)));
}

template <Element T, Device D>
Tensor<T, D> mean(const Tensor<T, D>& x) {
  return mean(x, {}, false);
}

template <Element T, Device D>
Tensor<T, D> sum_to(const Tensor<T, D>& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  BLIP_CHECK(x.shape().size() >= shape.size(), "sum_to: cannot reduce ", x.shape(), " to ", shape);
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      axes.push_back(static_cast<int64_t>(i));
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      axes.push_back(static_cast<int64_t>(i));
    } else {
      BLIP_CHECK(shape[i - lead] == x.shape()[i], "sum_to: cannot reduce ", x.shape(), " to ", shape);
    }
  }
  if (axes.empty()) return reshape(x, shape);
  return reshape(sum(x, axes, true), shape);
}

}  // namespace blip
