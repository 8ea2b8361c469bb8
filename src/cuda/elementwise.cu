// src/cuda/elementwise.cu — strided elementwise kernels: binary ops, strided copy (into a
// contiguous or a strided destination: concat and stack write slices of their output), fill.

#include <algorithm>
#include <cstdint>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/cuda/runtime.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::blocks_for;
using detail::check_launch;
using detail::first_index;
using detail::grid_step;
using detail::stream_now;
using detail::threads_per_block;

// Shape and the strides of N operands, passed to kernels by value (fits the parameter space).
template <int N>
struct Layout {
  int rank = 0;
  int64_t extent[max_kernel_rank] = {};
  int64_t stride[N][max_kernel_rank] = {};

  // Element offsets of the row-major `linear` index in each operand.
  __device__ void offsets(int64_t linear, int64_t (&off)[N]) const {
    for (int i = 0; i < N; ++i) off[i] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t index = linear % extent[d];
      linear /= extent[d];
      for (int i = 0; i < N; ++i) off[i] += index * stride[i][d];
    }
  }
};

template <int N>
Layout<N> make_layout(const char* op, const Shape& shape, const Strides* const (&strides)[N]) {
  check_shape(shape, op);
  BLIP_CHECK(static_cast<int64_t>(shape.size()) <= max_kernel_rank, "blip::cuda::", op,
             ": rank ", shape.size(), " of shape ", shape, " exceeds ", max_kernel_rank);
  Layout<N> layout;
  layout.rank = static_cast<int>(shape.size());
  for (int i = 0; i < N; ++i) {
    BLIP_CHECK(strides[i]->size() == shape.size(), "blip::cuda::", op, ": strides ", *strides[i],
               " do not match the rank of shape ", shape);
    for (size_t d = 0; d < shape.size(); ++d) layout.stride[i][d] = (*strides[i])[d];
  }
  for (size_t d = 0; d < shape.size(); ++d) layout.extent[d] = shape[d];
  return layout;
}

// The op is a launch argument rather than a template parameter: one kernel per type keeps
// nvcc time down, and the branch is uniform across the grid.
template <class T>
__global__ void binary_kernel(BinaryOp op, Layout<2> layout, int64_t n, const T* a, const T* b,
                              T* out) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    int64_t off[2];
    layout.offsets(i, off);
    const T x = a[off[0]], y = b[off[1]];
    switch (op) {
      case BinaryOp::add: out[i] = x + y; break;
      case BinaryOp::sub: out[i] = x - y; break;
      case BinaryOp::mul: out[i] = x * y; break;
      case BinaryOp::div: out[i] = x / y; break;
    }
  }
}

template <class T>
__global__ void copy_strided_kernel(Layout<1> layout, int64_t n, const T* src, T* dst) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    int64_t off[1];
    layout.offsets(i, off);
    dst[i] = src[off[0]];
  }
}

template <class T>
__global__ void assign_kernel(Layout<2> layout, int64_t n, const T* src, T* dst) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    int64_t off[2];
    layout.offsets(i, off);
    dst[off[1]] = src[off[0]];
  }
}

template <class T>
__global__ void fill_kernel(T* dst, int64_t n, T value) {
  for (int64_t i = first_index(); i < n; i += grid_step()) dst[i] = value;
}

}  // namespace

template <class T>
void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& a_strides, const T* b,
            const Strides& b_strides, T* out) {
  const Strides* const strides[2] = {&a_strides, &b_strides};
  const Layout<2> layout = make_layout("binary", shape, strides);
  const int64_t n = numel(shape);
  if (n == 0) return;
  binary_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(op, layout, n, a, b, out);
  check_launch("binary");
}

template <class T>
void copy_strided(const Shape& shape, const T* src, const Strides& src_strides, T* dst) {
  const Strides* const strides[1] = {&src_strides};
  const Layout<1> layout = make_layout("copy_strided", shape, strides);
  const int64_t n = numel(shape);
  if (n == 0) return;
  copy_strided_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(layout, n, src, dst);
  check_launch("copy_strided");
}

template <class T>
void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides) {
  const Strides* const strides[2] = {&src_strides, &dst_strides};
  const Layout<2> layout = make_layout("assign", shape, strides);
  const int64_t n = numel(shape);
  if (n == 0) return;
  assign_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(layout, n, src, dst);
  check_launch("assign");
}

template <class T>
void fill(T* dst, int64_t n, T value) {
  BLIP_CHECK(n >= 0, "blip::cuda::fill: negative element count ", n);
  if (n == 0) return;
  fill_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(dst, n, value);
  check_launch("fill");
}

#define BLIP_INSTANTIATE_BINARY(T)                                                            \
  template void binary<T>(BinaryOp, const Shape&, const T*, const Strides&, const T*,        \
                          const Strides&, T*);
#define BLIP_INSTANTIATE_COPY_FILL(T)                                                         \
  template void copy_strided<T>(const Shape&, const T*, const Strides&, T*);                 \
  template void assign<T>(const Shape&, const T*, const Strides&, T*, const Strides&);       \
  template void fill<T>(T*, int64_t, T);

BLIP_INSTANTIATE_BINARY(float)
BLIP_INSTANTIATE_BINARY(double)
BLIP_INSTANTIATE_COPY_FILL(float)
BLIP_INSTANTIATE_COPY_FILL(double)
BLIP_INSTANTIATE_COPY_FILL(int64_t)
BLIP_INSTANTIATE_COPY_FILL(uint8_t)  // masks

}  // namespace blip::cuda
