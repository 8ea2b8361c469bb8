// blip/ops/softmax.hpp — softmax and log_softmax over the last axis.
//
// Contract: rows along the last axis (a rank-0 input is treated as one element); results are
// contiguous. Numerically stable (row maximum subtracted). CPU kernels.
#pragma once

#include "blip/backend/cpu/rowwise.hpp"
#include "blip/ops/elementwise.hpp"

namespace blip {

namespace detail {

template <Element T, Device D, class Forward, class Backward>
Tensor<T, D> rowwise_op(const Tensor<T, D>& x, const char* name, Forward forward, Backward backward) {
  const Tensor<T, D> xc = contiguous(x.detach());
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  if constexpr (on_cpu<D>) forward(xc.data(), y.data(), rows, cols);
  else no_kernel<D>(name);
  if (grad_needed(x))
    record(y, name, {&x}, [y = y.detach(), rows, cols, name, backward](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(y.shape());
      if constexpr (on_cpu<D>) backward(y.data(), g.data(), gx.data(), rows, cols);
      else no_kernel<D>(name);
      return std::vector{gx};
    });
  return y;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> softmax(const Tensor<T, D>& x) {
  return detail::rowwise_op(x, "softmax", cpu::softmax_rows<T>, cpu::softmax_backward_rows<T>);
}

template <Element T, Device D>
Tensor<T, D> log_softmax(const Tensor<T, D>& x) {
  return detail::rowwise_op(x, "log_softmax", cpu::log_softmax_rows<T>, cpu::log_softmax_backward_rows<T>);
}

}  // namespace blip
