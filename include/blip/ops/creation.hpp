// blip/ops/creation.hpp — tensors made from nothing: constants, ranges and random fills.
//
// Contract: all results are contiguous leaves (no autograd history). Random fills draw from the
// Generator passed in, element by element in row-major order, so a seed fixes the values.
#pragma once

#include "blip/core/rng.hpp"
#include "blip/ops/copy.hpp"

namespace blip {

template <Element T, Device D = Cpu>
Tensor<T, D> full(const Shape& shape, T value) {
  Tensor<T, D> t = Tensor<T, D>::empty(shape);
  fill_(t, value);
  return t;
}
template <Element T, Device D = Cpu>
Tensor<T, D> zeros(const Shape& shape) {
  return Tensor<T, D>::zeros(shape);
}
template <Element T, Device D = Cpu>
Tensor<T, D> ones(const Shape& shape) {
  return full<T, D>(shape, T(1));
}
template <Element T, Device D>
Tensor<T, D> zeros_like(const Tensor<T, D>& x) {
  return Tensor<T, D>::zeros(x.shape());
}
template <Element T, Device D>
Tensor<T, D> ones_like(const Tensor<T, D>& x) {
  return full<T, D>(x.shape(), T(1));
}

// start, start + 1, ..., start + n - 1, each value `repeat` times in a row (n · repeat elements),
// made on the device.
template <Element T, Device D = Cpu>
Tensor<T, D> arange(int64_t n, T start = T(0), int64_t repeat = 1) {
  BLIP_CHECK(n >= 0 && repeat >= 1, "arange: length ", n, " and repeat ", repeat, " must be >= 0 and >= 1");
  Tensor<T, D> t = Tensor<T, D>::empty({n * repeat});
  if (n > 0) kernels<D>::iota(t.data(), n * repeat, start, repeat);
  return t;
}

// Fills from a per-element draw on the host, then moves to the device.
template <Element T, Device D, class Draw>
Tensor<T, D> generate(const Shape& shape, Draw draw) {
  std::vector<T> values(static_cast<size_t>(numel(shape)));
  for (T& v : values) v = static_cast<T>(draw());
  return Tensor<T, D>::from_vector(shape, values);
}

template <Element T, Device D = Cpu>
Tensor<T, D> randn(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0) {
  return generate<T, D>(shape, [&] { return mean + std * gen.normal(); });
}
template <Element T, Device D = Cpu>
Tensor<T, D> rand_uniform(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0) {
  return generate<T, D>(shape, [&] { return lo + (hi - lo) * gen.uniform(); });
}
template <Element T, Device D = Cpu>
Tensor<T, D> trunc_normal(const Shape& shape, Generator& gen, double mean, double std, double lo,
                          double hi) {
  return generate<T, D>(shape, [&] { return gen.truncated_normal(mean, std, lo, hi); });
}

}  // namespace blip
