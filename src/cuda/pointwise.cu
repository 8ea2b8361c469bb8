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
using detail::empty;
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

// Multi-tensor launches (as PyTorch's multi_tensor_apply): up to `capacity` tensor descriptors
// travel by value in the kernel's parameters (under the 4 KiB every GPU takes); blockIdx.y picks
// the tensor, blocks along x stride over its elements.
template <class Item, int capacity>
struct TensorList {
  Item items[capacity];
  int count = 0;
};
inline constexpr int adamw_list_capacity = 64;  // 40-byte descriptors for float: 2.5 KiB
inline constexpr int ema_list_capacity = 96;    // 24-byte descriptors: 2.3 KiB

template <class T>
__global__ void ema_kernel(TensorList<backend::EmaTensor<T>, ema_list_capacity> list, T keep, T take) {
  const backend::EmaTensor<T> t = list.items[blockIdx.y];
  for (int64_t i = first_index(); i < t.n; i += grid_step()) t.m[i] = t.m[i] * keep + t.v[i] * take;
}

template <class T>
__global__ void adamw_kernel(TensorList<backend::AdamWTensor<T>, adamw_list_capacity> list,
                             backend::AdamWCoefficients<T> c) {
  const backend::AdamWTensor<T> t = list.items[blockIdx.y];
  for (int64_t i = first_index(); i < t.n; i += grid_step()) {
    const T gi = t.g[i];
    const T pi = t.p[i] * c.decay;
    const T mi = t.m[i] * c.beta1 + c.one_minus_beta1 * gi;
    const T vi = t.v[i] * c.beta2 + c.one_minus_beta2 * (gi * gi);
    const T denom = sqrt(vi) / c.bias_correction2_sqrt + c.eps;
    t.m[i] = mi;
    t.v[i] = vi;
    t.p[i] = pi + c.neg_step_size * (mi / denom);
  }
}

// Launches kernel(list, args...) over the non-empty `tensors`, `capacity` per list. Blocks along
// x: enough for the list's largest tensor, at most 1024 (262k threads, about what a GPU holds at
// once; the grid-stride loop covers the rest), so the blocks of the small tensors that exit at
// once stay few.
template <int capacity, class Item, class Kernel, class... Args>
void for_tensor_lists(const Item* tensors, size_t count, const char* op, Kernel kernel, Args... args) {
  constexpr unsigned max_blocks_per_tensor = 1024;
  size_t i = 0;
  while (i < count) {
    TensorList<Item, capacity> list;
    int64_t largest = 0;
    for (; i < count && list.count < capacity; ++i) {
      BLIP_CHECK(tensors[i].n >= 0, "blip::cuda::", op, ": negative element count ", tensors[i].n);
      if (tensors[i].n == 0) continue;
      list.items[list.count++] = tensors[i];
      largest = std::max(largest, tensors[i].n);
    }
    if (list.count == 0) continue;
    const dim3 grid(std::min(blocks_for(largest), max_blocks_per_tensor), static_cast<unsigned>(list.count));
    kernel<<<grid, threads_per_block, 0, stream_now()>>>(list, args...);
    check_launch(op);
  }
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
void ema(const backend::EmaTensor<T>* tensors, size_t count, T keep, T take) {
  for_tensor_lists<ema_list_capacity>(tensors, count, "ema", ema_kernel<T>, keep, take);
}

template <class T>
void adamw(const backend::AdamWTensor<T>* tensors, size_t count, const backend::AdamWCoefficients<T>& c) {
  for_tensor_lists<adamw_list_capacity>(tensors, count, "adamw", adamw_kernel<T>, c);
}

#define BLIP_INSTANTIATE_POINTWISE(T)                                                                 \
  template void unary<T>(UnaryOp, const T*, T*, int64_t);                                             \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t);                                    \
  template void scale<T>(const T*, T*, int64_t, T);                                                   \
  template void masked_fill<T, uint8_t>(const T*, const uint8_t*, T, T*, int64_t);                    \
  template void masked_fill<T, int32_t>(const T*, const int32_t*, T, T*, int64_t);                    \
  template void masked_fill<T, int64_t>(const T*, const int64_t*, T, T*, int64_t);                    \
  template void ema<T>(const backend::EmaTensor<T>*, size_t, T, T);                                   \
  template void adamw<T>(const backend::AdamWTensor<T>*, size_t, const backend::AdamWCoefficients<T>&);

BLIP_INSTANTIATE_POINTWISE(float)
BLIP_INSTANTIATE_POINTWISE(double)

}  // namespace blip::cuda
