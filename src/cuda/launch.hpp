// src/cuda/launch.hpp — private to blip::cuda: what every kernel launch of src/cuda shares (the
// grid of a grid-stride loop, the calling thread's stream, the launch check, block reductions).
#pragma once

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "blip/backend/cuda/runtime.hpp"
#include "blip/core/device.hpp"
#include "blip/core/error.hpp"

namespace blip::cuda::detail {

inline constexpr int threads_per_block = 256;

// Grid-stride loops cover any n; the cap only bounds the launch, with enough blocks to fill
// every SM of current GPUs several times over.
inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + threads_per_block - 1) / threads_per_block, int64_t{1} << 16));
}

inline cudaStream_t stream_now() { return static_cast<cudaStream_t>(current_stream()); }

inline void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail("blip::cuda::", op, ": kernel launch failed: ", cudaGetErrorString(err));
}

// A launch over n elements: true when there is nothing to do; a negative n is an error.
inline bool empty(int64_t n, const char* op) {
  BLIP_CHECK(n >= 0, "blip::cuda::", op, ": negative element count ", n);
  return n == 0;
}

// One block per row: rows must fit the grid's x extent.
inline unsigned row_blocks(int64_t rows, const char* op) {
  BLIP_CHECK(rows <= int64_t{0x7fffffff}, "blip::cuda::", op, ": ", rows, " rows exceed one launch's grid");
  return static_cast<unsigned>(rows);
}

__device__ inline int64_t first_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_step() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

// float or double math without promoting float to double.
template <class T>
__device__ T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) return expf(x);
  else return exp(x);
}
template <class T>
__device__ T log_of(T x) {
  if constexpr (std::is_same_v<T, float>) return logf(x);
  else return log(x);
}
template <class T>
__device__ T erf_of(T x) {
  if constexpr (std::is_same_v<T, float>) return erff(x);
  else return erf(x);
}

// Scratch device memory released (stream-ordered, by the caching allocator) when it goes.
template <class T>
struct DeviceBuffer {
  T* data = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(int64_t n) : bytes(sizeof(T) * static_cast<size_t>(n)) {
    if (n > 0) data = static_cast<T*>(DeviceMemory<Cuda>::allocate(bytes));
  }
  ~DeviceBuffer() {
    if (data) DeviceMemory<Cuda>::release(data, bytes);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct MaxOp {
  template <class T>
  __device__ T operator()(const T& a, const T& b) const {
    return a > b ? a : b;
  }
};

// The block-wide sum / max of every thread's v, returned to every thread (CUB's BlockReduce:
// a fixed order, so results are deterministic). Every thread of the block must call it.
template <class T>
__device__ T block_sum(T v) {
  using Reduce = cub::BlockReduce<T, threads_per_block>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ T result;
  const T s = Reduce(storage).Sum(v);
  if (threadIdx.x == 0) result = s;
  __syncthreads();
  const T out = result;
  __syncthreads();  // storage and result may be reused by the next call
  return out;
}
template <class T>
__device__ T block_max(T v) {
  using Reduce = cub::BlockReduce<T, threads_per_block>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ T result;
  const T m = Reduce(storage).Reduce(v, MaxOp{});
  if (threadIdx.x == 0) result = m;
  __syncthreads();
  const T out = result;
  __syncthreads();
  return out;
}

}  // namespace blip::cuda::detail
