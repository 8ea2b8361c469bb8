// blip/ops/elementwise.hpp — add, sub, mul, div with broadcasting; scale, neg; GELU (erf), tanh,
// exp, log; and the arithmetic operators on Tensor.
//
// Contract: binary ops broadcast as NumPy/PyTorch and throw blip::Error naming the op and both
// shapes when they cannot; results are contiguous. Gradients of broadcast inputs are summed
// back to the input's shape. Binary ops and scale also run on Cuda.
#pragma once

#include "blip/ops/reduce.hpp"

namespace blip {

using backend::BinaryOp;
using backend::UnaryOp;

namespace detail {

template <Element T, Device D>
Tensor<T, D> binary_forward(BinaryOp op, const Tensor<T, D>& a, const Tensor<T, D>& b, const char* name) {
  BLIP_CHECK(a.defined() && b.defined(), name, ": undefined operand");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const Tensor<T, D> ea = expand(a.detach(), shape), eb = expand(b.detach(), shape);
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  kernels<D>::binary(op, shape, ea.data(), ea.strides(), eb.data(), eb.strides(), out.data());
  return out;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> scale(const Tensor<T, D>& x, T factor) {
  const Tensor<T, D> xc = contiguous(x.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  kernels<D>::scale(xc.data(), y.data(), xc.numel(), factor);
  if (grad_needed(x))
    record(y, "scale", {&x}, [factor](const Tensor<T, D>& gy) { return std::vector{scale(gy, factor)}; });
  return y;
}

template <Element T, Device D>
Tensor<T, D> neg(const Tensor<T, D>& x) {
  return scale(x, T(-1));
}

template <Element T, Device D>
Tensor<T, D> add(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> y = detail::binary_forward(BinaryOp::add, a, b, "add");
  if (grad_needed(a, b))
    record(y, "add", {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& gy) {
      return std::vector{sum_to(gy, sa), sum_to(gy, sb)};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> sub(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> y = detail::binary_forward(BinaryOp::sub, a, b, "sub");
  if (grad_needed(a, b))
    record(y, "sub", {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& gy) {
      return std::vector{sum_to(gy, sa), neg(sum_to(gy, sb))};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> mul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> y = detail::binary_forward(BinaryOp::mul, a, b, "mul");
  if (grad_needed(a, b))
    record(y, "mul", {&a, &b}, [a = a.detach(), b = b.detach(), ra = a.requires_grad(),
                                rb = b.requires_grad()](const Tensor<T, D>& gy) {
      return std::vector{ra ? sum_to(mul(gy, b), a.shape()) : Tensor<T, D>(),
                         rb ? sum_to(mul(gy, a), b.shape()) : Tensor<T, D>()};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> div(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> y = detail::binary_forward(BinaryOp::div, a, b, "div");
  if (grad_needed(a, b))
    record(y, "div", {&a, &b}, [b = b.detach(), y = y.detach(), sa = a.shape(), ra = a.requires_grad(),
                                rb = b.requires_grad()](const Tensor<T, D>& gy) {
      const Tensor<T, D> ga = div(gy, b);  // d(a/b)/db = -(a/b)/b
      return std::vector{ra ? sum_to(ga, sa) : Tensor<T, D>(),
                         rb ? neg(sum_to(mul(ga, y), b.shape())) : Tensor<T, D>()};
    });
  return y;
}

namespace detail {

template <Element T, Device D>
Tensor<T, D> unary_forward(const Tensor<T, D>& x, UnaryOp op) {
  const Tensor<T, D> xc = contiguous(x.detach());
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  kernels<D>::unary(op, xc.data(), y.data(), xc.numel());
  return y;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> gelu(const Tensor<T, D>& x) {
  Tensor<T, D> y = detail::unary_forward(x, UnaryOp::gelu);
  if (grad_needed(x))
    record(y, "gelu", {&x}, [xc = contiguous(x.detach())](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);
      Tensor<T, D> gx = Tensor<T, D>::empty(xc.shape());
      kernels<D>::gelu_backward(xc.data(), g.data(), gx.data(), xc.numel());
      return std::vector{gx};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> tanh(const Tensor<T, D>& x) {
  Tensor<T, D> y = detail::unary_forward(x, UnaryOp::tanh);
  if (grad_needed(x))
    record(y, "tanh", {&x}, [y = y.detach()](const Tensor<T, D>& gy) {
      return std::vector{mul(gy, sub(ones_like(y), mul(y, y)))};
    });
  return y;
}

template <Element T, Device D>
Tensor<T, D> exp(const Tensor<T, D>& x) {
  Tensor<T, D> y = detail::unary_forward(x, UnaryOp::exp);
  if (grad_needed(x))
    record(y, "exp", {&x}, [y = y.detach()](const Tensor<T, D>& gy) { return std::vector{mul(gy, y)}; });
  return y;
}

template <Element T, Device D>
Tensor<T, D> log(const Tensor<T, D>& x) {
  Tensor<T, D> y = detail::unary_forward(x, UnaryOp::log);
  if (grad_needed(x))
    record(y, "log", {&x}, [x = x.detach()](const Tensor<T, D>& gy) { return std::vector{div(gy, x)}; });
  return y;
}

template <Element T, Device D>
Tensor<T, D> operator+(const Tensor<T, D>& a, const Tensor<T, D>& b) { return add(a, b); }
template <Element T, Device D>
Tensor<T, D> operator-(const Tensor<T, D>& a, const Tensor<T, D>& b) { return sub(a, b); }
template <Element T, Device D>
Tensor<T, D> operator*(const Tensor<T, D>& a, const Tensor<T, D>& b) { return mul(a, b); }
template <Element T, Device D>
Tensor<T, D> operator/(const Tensor<T, D>& a, const Tensor<T, D>& b) { return div(a, b); }
template <Element T, Device D>
Tensor<T, D> operator*(const Tensor<T, D>& a, std::type_identity_t<T> s) { return scale(a, s); }
template <Element T, Device D>
Tensor<T, D> operator*(std::type_identity_t<T> s, const Tensor<T, D>& a) { return scale(a, s); }
template <Element T, Device D>
Tensor<T, D> operator/(const Tensor<T, D>& a, std::type_identity_t<T> s) { return scale(a, T(1) / s); }
template <Element T, Device D>
Tensor<T, D> operator-(const Tensor<T, D>& a) { return neg(a); }

}  // namespace blip
