// blip/backend/cpu/elementwise.hpp — elementwise CPU kernels: broadcasting binary ops and the
// vectorised unary maps (GELU with erf, tanh, exp, log) used by ops/elementwise.hpp.
//
// Contract: `binary` writes a contiguous `shape`-shaped output from two inputs read through
// strides aligned to `shape` (stride 0 on broadcast axes). Unary maps read and write n
// contiguous elements. Transcendentals go through Eigen's vectorised packet functions: a
// scalar std::erf in these loops is ~20x slower (docs/performance.md).
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include <cmath>
#include <cstdint>
#include <numbers>

#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/layout.hpp"

namespace blip::cpu {

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <class T, class Op>
void binary(const Shape& shape, const T* a, const Strides& sa, const T* b, const Strides& sb,
            T* out, Op op) {
  const int64_t n = numel(shape);
  if (n == 0) return;
  const bool a_flat = is_contiguous_layout(shape, sa), b_flat = is_contiguous_layout(shape, sb);
  if (shape.empty() || (a_flat && b_flat)) {
    parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = op(a[i], b[i]);
    });
    return;
  }
  const int64_t last = shape.back();
  const int64_t as = sa.back(), bs = sb.back();
  parallel_for(n / last, last, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* ar = a + offset_of(row * last, shape, sa);
      const T* br = b + offset_of(row * last, shape, sb);
      T* o = out + row * last;
      // The common layouts get loops the compiler vectorises.
      if (as == 1 && bs == 1) {
        for (int64_t j = 0; j < last; ++j) o[j] = op(ar[j], br[j]);
      } else if (as == 1 && bs == 0) {
        const T bv = br[0];
        for (int64_t j = 0; j < last; ++j) o[j] = op(ar[j], bv);
      } else if (as == 0 && bs == 1) {
        const T av = ar[0];
        for (int64_t j = 0; j < last; ++j) o[j] = op(av, br[j]);
      } else {
        for (int64_t j = 0; j < last; ++j) o[j] = op(ar[j * as], br[j * bs]);
      }
    }
  });
}

// Applies an Eigen array expression chunk-wise over n contiguous elements in parallel.
template <class T, class Expr>
void map_unary(const T* x, T* y, int64_t n, int64_t cost, Expr expr) {
  parallel_for(n, cost, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ArrayMap<T> ys(y + begin, end - begin);
    ys = expr(xs);
  });
}

// GELU with the exact erf: 0.5 x (1 + erf(x / sqrt 2)).
template <class T>
void gelu(const T* x, T* y, int64_t n) {
  map_unary(x, y, n, 16, [](const auto& xs) {
    return T(0.5) * xs * (T(1) + (xs * T(std::numbers::sqrt2 / 2)).erf());
  });
}

// d/dx GELU = Phi(x) + x phi(x).
template <class T>
void gelu_backward(const T* x, const T* gy, T* gx, int64_t n) {
  parallel_for(n, 24, [&](int64_t begin, int64_t end) {
    const int64_t m = end - begin;
    ConstArrayMap<T> xs(x + begin, m), g(gy + begin, m);
    ArrayMap<T> out(gx + begin, m);
    const T inv_sqrt_2pi = T(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
    out = g * (T(0.5) * (T(1) + (xs * T(std::numbers::sqrt2 / 2)).erf()) +
               xs * inv_sqrt_2pi * (T(-0.5) * xs.square()).exp());
  });
}

template <class T>
void tanh(const T* x, T* y, int64_t n) {
  map_unary(x, y, n, 8, [](const auto& xs) { return xs.tanh(); });
}

template <class T>
void exp(const T* x, T* y, int64_t n) {
  map_unary(x, y, n, 8, [](const auto& xs) { return xs.exp(); });
}

template <class T>
void log(const T* x, T* y, int64_t n) {
  map_unary(x, y, n, 8, [](const auto& xs) { return xs.log(); });
}

template <class T>
void scale(const T* x, T* y, int64_t n, T factor) {
  map_unary(x, y, n, 1, [factor](const auto& xs) { return xs * factor; });
}

}  // namespace blip::cpu
