// src/cuda/pointwise.cu — contiguous one-element-at-a-time kernels: the unary maps (GELU with
// erf, tanh, exp, log), GELU's backward, scale, masked_fill and its backward, float -> bf16, the
// momentum EMA and AdamW. The formulas are those of the CPU kernels (backend/cpu/elementwise.hpp,
// index.hpp, optim.hpp) in the same order of operations.

#include <cstdint>
#include <cstring>
#include <numbers>
#include <type_traits>

#include "blip/backend/cuda/kernels.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::blocks_for;
using detail::check_launch;
using detail::erf_of;
using detail::exp_of;
using detail::first_index;
using detail::grid_step;
using detail::stream_now;
using detail::threads_per_block;

template <class T>
__device__ T gelu_of(T x) {
  return T(0.5) * x * (T(1) + erf_of(x * T(std::numbers::sqrt2 / 2)));
}

template <class T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    const T v = x[i];
    switch (op) {
      case UnaryOp::gelu: y[i] = gelu_of(v); break;
      case UnaryOp::tanh: y[i] = tanh(v); break;
      case UnaryOp::exp: y[i] = exp_of(v); break;
      case UnaryOp::log: y[i] = log(v); break;
    }
  }
}

// d/dx GELU = Phi(x) + x phi(x).
template <class T>
__global__ void gelu_backward_kernel(const T* x, const T* gy, T* gx, int64_t n) {
  const T inv_sqrt_2pi = T(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    const T v = x[i];
    gx[i] = gy[i] * (T(0.5) * (T(1) + erf_of(v * T(std::numbers::sqrt2 / 2))) +
                     v * inv_sqrt_2pi * exp_of(T(-0.5) * v * v));
  }
}

template <class T>
__global__ void scale_kernel(const T* x, T* y, int64_t n, T factor) {
  for (int64_t i = first_index(); i < n; i += grid_step()) y[i] = x[i] * factor;
}

template <class T, class M>
__global__ void masked_fill_kernel(const T* x, const M* mask, T value, T* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) y[i] = mask[i] ? value : x[i];
}

// Round to nearest even; a NaN stays a quiet NaN (blip::bf16's constructor).
__global__ void to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    const uint32_t u = __float_as_uint(x[i]);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    y[i] = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16));
  }
}

template <class T>
__global__ void ema_kernel(T* m, const T* v, int64_t n, T keep, T take) {
  for (int64_t i = first_index(); i < n; i += grid_step()) m[i] = m[i] * keep + v[i] * take;
}

template <class T>
__global__ void adamw_kernel(T* p, T* m, T* v, const T* g, int64_t n, backend::AdamWCoefficients<T> c) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    const T gi = g[i];
    const T pi = p[i] * c.decay;
    const T mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    const T vi = v[i] * c.beta2 + c.one_minus_beta2 * (gi * gi);
    const T denom = sqrt(vi) / c.bias_correction2_sqrt + c.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + c.neg_step_size * (mi / denom);
  }
}

bool empty(int64_t n, const char* op) {
  BLIP_CHECK(n >= 0, "blip::cuda::", op, ": negative element count ", n);
  return n == 0;
}

}  // namespace

template <class T>
void unary(UnaryOp op, const T* x, T* y, int64_t n) {
  if (empty(n, "unary")) return;
  unary_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(op, x, y, n);
  check_launch("unary");
}

template <class T>
void gelu_backward(const T* x, const T* gy, T* gx, int64_t n) {
  if (empty(n, "gelu_backward")) return;
  gelu_backward_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(x, gy, gx, n);
  check_launch("gelu_backward");
}

template <class T>
void scale(const T* x, T* y, int64_t n, T factor) {
  if (empty(n, "scale")) return;
  scale_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(x, y, n, factor);
  check_launch("scale");
}

template <class T, class M>
void masked_fill(const T* x, const M* mask, T value, T* y, int64_t n) {
  if (empty(n, "masked_fill")) return;
  masked_fill_kernel<T, M><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(x, mask, value, y, n);
  check_launch("masked_fill");
}

void to_bf16(const float* x, bf16* y, int64_t n) {
  if (empty(n, "to_bf16")) return;
  static_assert(sizeof(bf16) == sizeof(uint16_t));
  to_bf16_kernel<<<blocks_for(n), threads_per_block, 0, stream_now()>>>(x, reinterpret_cast<uint16_t*>(y), n);
  check_launch("to_bf16");
}

template <class T>
void ema(T* m, const T* v, int64_t n, T keep, T take) {
  if (empty(n, "ema")) return;
  ema_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(m, v, n, keep, take);
  check_launch("ema");
}

template <class T>
void adamw(T* p, T* m, T* v, const T* g, int64_t n, const backend::AdamWCoefficients<T>& c) {
  if (empty(n, "adamw")) return;
  adamw_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(p, m, v, g, n, c);
  check_launch("adamw");
}

#define BLIP_INSTANTIATE_POINTWISE(T)                                                                 \
  template void unary<T>(UnaryOp, const T*, T*, int64_t);                                             \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t);                                    \
  template void scale<T>(const T*, T*, int64_t, T);                                                   \
  template void masked_fill<T, uint8_t>(const T*, const uint8_t*, T, T*, int64_t);                    \
  template void masked_fill<T, int32_t>(const T*, const int32_t*, T, T*, int64_t);                    \
  template void masked_fill<T, int64_t>(const T*, const int64_t*, T, T*, int64_t);                    \
  template void ema<T>(T*, const T*, int64_t, T, T);                                                  \
  template void adamw<T>(T*, T*, T*, const T*, int64_t, const backend::AdamWCoefficients<T>&);

BLIP_INSTANTIATE_POINTWISE(float)
BLIP_INSTANTIATE_POINTWISE(double)

}  // namespace blip::cuda
