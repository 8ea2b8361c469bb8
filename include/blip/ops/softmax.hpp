// blip/ops/softmax.hpp — softmax and log_softmax over the last axis.
//
// Contract: rows along the last axis (a rank-0 input is treated as one element); results are
// contiguous. Numerically stable (row maximum subtracted).
#pragma once

#include "blip/ops/elementwise.hpp"

namespace blip {

namespace detail {

// forward(x, y, rows, cols) and backward(y, gy, gx, rows, cols) are kernels of Kernels<D>.
template <Element T, Device D, class Forward, class Backward>
Tensor<T, D> rowwise_op(const Tensor<T, D>& x, const char* name, Forward forward, Backward backward) {
  const Tensor<T, D> xc = contiguous(x.detach());
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  forward(xc.data(), y.data(), rows, cols);
  if (grad_needed(x))
    record(y, name, {&x}, [y = y.detach(), rows, cols, name, backward](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(y.shape());
      backward(y.data(), g.data(), gx.data(), rows, cols);
      return std::vector{gx};
    });
  return y;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> softmax(const Tensor<T, D>& x) {
  return detail::rowwise_op(
      x, "softmax", [](const T* in, T* out, int64_t rows, int64_t cols) { kernels<D>::softmax(in, out, rows, cols); },
      [](const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) { kernels<D>::softmax_backward(y, gy, gx, rows, cols); });
}

template <Element T, Device D>
Tensor<T, D> log_softmax(const Tensor<T, D>& x) {
  return detail::rowwise_op(
      x, "log_softmax",
      [](const T* in, T* out, int64_t rows, int64_t cols) { kernels<D>::log_softmax(in, out, rows, cols); },
      [](const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
        kernels<D>::log_softmax_backward(y, gy, gx, rows, cols);
      });
}

}  // namespace blip
