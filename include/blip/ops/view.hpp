// blip/ops/view.hpp — views that share memory: reshape, transpose, permute, narrow, slice,
// select, unsqueeze, squeeze, expand.
//
// Contract: every function returns a tensor over the same memory (reshape copies only when the
// input is not contiguous, as torch.reshape). All are differentiable. Bad axes, extents or
// ranges throw blip::Error naming the op, the shape and the offending value.
#pragma once

#include <numeric>

#include "blip/autograd/graph.hpp"
#include "blip/ops/copy.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> sum_to(const Tensor<T, D>& x, const Shape& shape);  // ops/reduce.hpp

namespace detail {

template <Element T, Device D>
Tensor<T, D> view_of(const Tensor<T, D>& x, Shape shape, Strides strides, int64_t offset) {
  return Tensor<T, D>(x.storage(), x.storage_numel(), offset, std::move(shape), std::move(strides));
}

}  // namespace detail

// -1 in `shape` is inferred from the element count.
template <Element T, Device D>
Tensor<T, D> reshape(const Tensor<T, D>& x, Shape shape) {
  int64_t known = 1, inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      BLIP_CHECK(inferred < 0, "reshape: more than one -1 in ", shape);
      inferred = static_cast<int64_t>(i);
    } else {
      BLIP_CHECK(shape[i] >= 0, "reshape: negative extent in ", shape);
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    BLIP_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", x.shape(), " to ", shape);
    shape[static_cast<size_t>(inferred)] = x.numel() / known;
  }
  BLIP_CHECK(numel(shape) == x.numel(), "reshape: cannot reshape ", x.shape(), " (", x.numel(),
             " elements) to ", shape);
  const Tensor<T, D> xc = contiguous(x);
  Strides strides = contiguous_strides(shape);
  Tensor<T, D> y = detail::view_of(xc, std::move(shape), std::move(strides), xc.offset());
  if (grad_needed(xc))
    record(y, "reshape", {&xc}, [in_shape = xc.shape()](const Tensor<T, D>& gy) {
      return std::vector{reshape(gy, in_shape)};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> permute(const Tensor<T, D>& x, const std::vector<int64_t>& order) {
  BLIP_CHECK(static_cast<int64_t>(order.size()) == x.dim(), "permute: order ", order,
             " does not match rank ", x.dim(), " of shape ", x.shape());
  Shape shape(order.size());
  Strides strides(order.size());
  std::vector<int64_t> inverse(order.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t axis = normalize_axis(order[i], x.dim(), "permute");
    BLIP_CHECK(inverse[static_cast<size_t>(axis)] < 0, "permute: axis ", axis, " repeated in ", order);
    inverse[static_cast<size_t>(axis)] = static_cast<int64_t>(i);
    shape[i] = x.shape()[static_cast<size_t>(axis)];
    strides[i] = x.strides()[static_cast<size_t>(axis)];
  }
  Tensor<T, D> y = detail::view_of(x, std::move(shape), std::move(strides), x.offset());
  if (grad_needed(x))
    record(y, "permute", {&x}, [inverse](const Tensor<T, D>& gy) { return std::vector{permute(gy, inverse)}; });
  return y;
}

template <Element T, Device D>
Tensor<T, D> transpose(const Tensor<T, D>& x, int64_t axis0, int64_t axis1) {
  std::vector<int64_t> order(static_cast<size_t>(x.dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[static_cast<size_t>(normalize_axis(axis0, x.dim(), "transpose"))],
            order[static_cast<size_t>(normalize_axis(axis1, x.dim(), "transpose"))]);
  return permute(x, order);
}

// Elements start, start+step, ... below end along `axis` (end is clamped to the extent).
template <Element T, Device D>
Tensor<T, D> slice(const Tensor<T, D>& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1) {
  const int64_t a = normalize_axis(axis, x.dim(), "slice");
  const int64_t extent = x.shape()[static_cast<size_t>(a)];
  end = std::min(end, extent);
  BLIP_CHECK(step > 0 && start >= 0 && start <= end, "slice: range [", start, ", ", end, ") step ",
             step, " is invalid for axis ", a, " of shape ", x.shape());
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape[static_cast<size_t>(a)] = (end - start + step - 1) / step;
  strides[static_cast<size_t>(a)] *= step;
  Tensor<T, D> y = detail::view_of(x, std::move(shape), std::move(strides),
                                   x.offset() + start * x.strides()[static_cast<size_t>(a)]);
  if (grad_needed(x))
    record(y, "slice", {&x}, [in_shape = x.shape(), a, start, end, step](const Tensor<T, D>& gy) {
      Tensor<T, D> gx = Tensor<T, D>::zeros(in_shape);
      copy_into(slice(gx, a, start, end, step), gy);
      return std::vector{gx};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> narrow(const Tensor<T, D>& x, int64_t axis, int64_t start, int64_t length) {
  const int64_t a = normalize_axis(axis, x.dim(), "narrow");
  BLIP_CHECK(start >= 0 && length >= 0 && start + length <= x.shape()[static_cast<size_t>(a)],
             "narrow: [", start, ", ", start + length, ") is outside axis ", a, " of shape ", x.shape());
  return slice(x, a, start, start + length);
}

template <Element T, Device D>
Tensor<T, D> squeeze(const Tensor<T, D>& x, int64_t axis) {
  const int64_t a = normalize_axis(axis, x.dim(), "squeeze");
  BLIP_CHECK(x.shape()[static_cast<size_t>(a)] == 1, "squeeze: axis ", a, " of shape ", x.shape(),
             " has extent ", x.shape()[static_cast<size_t>(a)], ", not 1");
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape.erase(shape.begin() + a);
  strides.erase(strides.begin() + a);
  Tensor<T, D> y = detail::view_of(x, std::move(shape), std::move(strides), x.offset());
  if (grad_needed(x))
    record(y, "squeeze", {&x}, [in_shape = x.shape()](const Tensor<T, D>& gy) {
      return std::vector{reshape(gy, in_shape)};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> unsqueeze(const Tensor<T, D>& x, int64_t axis) {
  const int64_t a = normalize_axis(axis, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape();
  Strides strides = x.strides();
  const int64_t stride = a < x.dim() ? x.strides()[static_cast<size_t>(a)] * x.shape()[static_cast<size_t>(a)] : 1;
  shape.insert(shape.begin() + a, 1);
  strides.insert(strides.begin() + a, stride);
  Tensor<T, D> y = detail::view_of(x, std::move(shape), std::move(strides), x.offset());
  if (grad_needed(x))
    record(y, "unsqueeze", {&x}, [a](const Tensor<T, D>& gy) { return std::vector{squeeze(gy, a)}; });
  return y;
}

// Index `index` along `axis`, removing the axis.
template <Element T, Device D>
Tensor<T, D> select(const Tensor<T, D>& x, int64_t axis, int64_t index) {
  const int64_t a = normalize_axis(axis, x.dim(), "select");
  const int64_t extent = x.shape()[static_cast<size_t>(a)];
  BLIP_CHECK(index >= -extent && index < extent, "select: index ", index, " is out of range for axis ",
             a, " of shape ", x.shape());
  if (index < 0) index += extent;
  return squeeze(narrow(x, a, index, 1), a);
}

// Broadcasts extent-1 axes (and new leading axes) to `shape` with stride 0.
template <Element T, Device D>
Tensor<T, D> expand(const Tensor<T, D>& x, const Shape& shape) {
  BLIP_CHECK(shape.size() >= x.shape().size(), "expand: cannot expand ", x.shape(), " to ", shape);
  const size_t lead = shape.size() - x.shape().size();
  Strides strides(shape.size(), 0);
  for (size_t i = 0; i < x.shape().size(); ++i) {
    const int64_t from = x.shape()[i], to = shape[lead + i];
    BLIP_CHECK(from == to || from == 1, "expand: cannot expand ", x.shape(), " to ", shape);
    strides[lead + i] = from == to ? x.strides()[i] : 0;
  }
  Tensor<T, D> y = detail::view_of(x, shape, std::move(strides), x.offset());
  if (grad_needed(x))
    record(y, "expand", {&x}, [in_shape = x.shape()](const Tensor<T, D>& gy) {
      return std::vector{sum_to(gy, in_shape)};
    });
  return y;
}

}  // namespace blip
