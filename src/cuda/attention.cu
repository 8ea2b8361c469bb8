// src/cuda/attention.cu — scaled dot-product attention on the device, forward and backward, with
// the CPU kernel's semantics (backend/args.hpp's AttentionArgs: strided q/k/v/out, an additive
// mask read through strides, kv_index sharing one key/value row among query batch rows).
//
// Two families, chosen per call by attention_kernel() (backend/cuda/kernels.hpp):
// - the tiled kernels of attention_tiles.cuh (FlashAttention-2 style: online softmax over key
//   tiles, tensor-core forward and backward for bf16), for heads up to 128 whose tiles fit the GPU's shared
//   memory — what the model uses;
// - the direct kernels below, the first version: one thread block per query row (forward, and the
//   backward's grad_q) and one per key row (the backward's grad_k and grad_v, looping over the
//   query rows in order: no atomics, deterministic), the row's Sk scores in shared memory. They
//   take any head size and serve as the reference the tiled ones are tested against on a GPU.

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/core/device.hpp"
#include "attention_tiles.cuh"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::check_launch;
using detail::DeviceBuffer;
using detail::exp_of;
using detail::log_of;
using detail::stream_now;
using detail::threads_per_block;

template <class T>
__device__ T load(const T& x) {
  return x;
}
__device__ inline float load(const bf16& x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }

template <class X>
__device__ const X* row(const X* base, const std::array<int64_t, 3>& s, int64_t b, int64_t h, int64_t r) {
  return base + b * s[0] + h * s[1] + r * s[2];
}

// scores[j] = scale · q_i · k_j + mask[b, h, i, j] for the block's query row, into shared memory.
template <class T, class In>
__device__ void scores_of(const backend::AttentionArgs<T, In>& a, int64_t b, int64_t kb, int64_t h, int64_t i, T* s) {
  const In* q = row(a.q, a.q_stride, b, h, i);
  for (int64_t j = threadIdx.x; j < a.Sk; j += blockDim.x) {
    const In* k = row(a.k, a.k_stride, kb, h, j);
    T dot = 0;
    for (int64_t c = 0; c < a.d; ++c) dot += static_cast<T>(load(q[c])) * static_cast<T>(load(k[c]));
    T v = dot * a.scale;
    if (a.mask) v += a.mask[b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2] + j * a.mask_stride[3]];
    s[j] = v;
  }
}

// s[j] <- exp(s[j] - max) for the row; returns the row's max and sum (every thread).
template <class T>
__device__ void softmax_in_place(T* s, int64_t n, T& max_out, T& sum_out) {
  __syncthreads();  // the scores written by every thread
  T m = -static_cast<T>(INFINITY);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = s[j] > m ? s[j] : m;
  m = block_max(m);
  T sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const T e = exp_of(s[j] - m);
    s[j] = e;
    sum += e;
  }
  sum_out = block_sum(sum);  // its __syncthreads also publishes s
  max_out = m;
}

template <class T, class In>
__global__ void attention_forward_kernel(backend::AttentionArgs<T, In> a, const int64_t* kv_index) {
  extern __shared__ __align__(16) unsigned char shared[];
  T* s = reinterpret_cast<T*>(shared);
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t kb = kv_index ? kv_index[b] : b;
  T* out = a.out + b * a.out_stride[0] + h * a.out_stride[1] + i * a.out_stride[2];
  // Softmax over no keys: zeros, as the CPU. A kv_index outside [0, Bkv) (reported by the op's
  // deferred index check) reads nothing either.
  if (a.Sk == 0 || kb < 0 || kb >= a.Bkv) {
    for (int64_t c = threadIdx.x; c < a.dv; c += blockDim.x) out[c] = T(0);
    return;
  }
  scores_of(a, b, kb, h, i, s);
  T m, sum;
  softmax_in_place(s, a.Sk, m, sum);
  const T inv = T(1) / sum;
  for (int64_t c = threadIdx.x; c < a.dv; c += blockDim.x) {
    T acc = 0;
    for (int64_t j = 0; j < a.Sk; ++j) acc += s[j] * static_cast<T>(load(row(a.v, a.v_stride, kb, h, j)[c]));
    out[c] = acc * inv;
  }
}

// Per query row: p (recomputed), dp_j = g_i · v_j, D = sum_j p_j dp_j, ds_j = p_j (dp_j - D),
// grad_q_i = scale · sum_j ds_j k_j; saves the row's log-sum-exp and D for the key-row pass.
template <class T>
__global__ void attention_backward_rows_kernel(backend::AttentionBackwardArgs<T> g, const int64_t* kv_index, T* lse,
                                               T* delta) {
  const backend::AttentionArgs<T>& a = g.forward;
  extern __shared__ __align__(16) unsigned char shared[];
  T* p = reinterpret_cast<T*>(shared);
  T* ds = p + a.Sk;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t kb = kv_index ? kv_index[b] : b;
  const int64_t row_index = (b * a.H + h) * a.Sq + i;
  T* gq = g.grad_q + row_index * a.d;
  if (kb < 0 || kb >= a.Bkv) {  // a bad kv_index (see the forward): no gradient through it
    for (int64_t c = threadIdx.x; c < a.d; c += blockDim.x) gq[c] = T(0);
    return;
  }
  scores_of(a, b, kb, h, i, p);
  T m, sum;
  softmax_in_place(p, a.Sk, m, sum);
  const T inv = T(1) / sum;
  const T* gout = row(g.grad_out, g.grad_out_stride, b, h, i);
  T partial = 0;
  for (int64_t j = threadIdx.x; j < a.Sk; j += blockDim.x) {
    p[j] *= inv;
    const T* v = row(a.v, a.v_stride, kb, h, j);
    T dp = 0;
    for (int64_t c = 0; c < a.dv; ++c) dp += gout[c] * v[c];
    ds[j] = dp;
    partial += p[j] * dp;
  }
  const T D = block_sum(partial);
  for (int64_t j = threadIdx.x; j < a.Sk; j += blockDim.x) ds[j] = p[j] * (ds[j] - D);
  __syncthreads();
  if (threadIdx.x == 0) {
    lse[row_index] = m + log_of(sum);
    delta[row_index] = D;
  }
  for (int64_t c = threadIdx.x; c < a.d; c += blockDim.x) {
    T acc = 0;
    for (int64_t j = 0; j < a.Sk; ++j) acc += ds[j] * row(a.k, a.k_stride, kb, h, j)[c];
    gq[c] = acc * a.scale;
  }
}

// Per key row j of key/value batch row kb: over the query rows of every batch row using kb, in
// order, grad_k_j += scale · sum_i ds_ij q_i and grad_v_j += sum_i p_ij g_i.
template <class T>
__global__ void attention_backward_keys_kernel(backend::AttentionBackwardArgs<T> g, const int64_t* kv_index,
                                               const T* lse, const T* delta) {
  const backend::AttentionArgs<T>& a = g.forward;
  extern __shared__ __align__(16) unsigned char shared[];
  T* p = reinterpret_cast<T*>(shared);
  T* ds = p + a.Sq;
  const int64_t j = blockIdx.x, h = blockIdx.y, kb = blockIdx.z;
  const T* k = row(a.k, a.k_stride, kb, h, j);
  const T* v = row(a.v, a.v_stride, kb, h, j);
  T* gk = g.grad_k + ((kb * a.H + h) * a.Sk + j) * a.d;
  T* gv = g.grad_v + ((kb * a.H + h) * a.Sk + j) * a.dv;
  for (int64_t b = 0; b < a.B; ++b) {
    if ((kv_index ? kv_index[b] : b) != kb) continue;  // uniform across the block
    for (int64_t i = threadIdx.x; i < a.Sq; i += blockDim.x) {
      const T* q = row(a.q, a.q_stride, b, h, i);
      T dot = 0;
      for (int64_t c = 0; c < a.d; ++c) dot += q[c] * k[c];
      T sc = dot * a.scale;
      if (a.mask) sc += a.mask[b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2] + j * a.mask_stride[3]];
      const int64_t row_index = (b * a.H + h) * a.Sq + i;
      const T pij = exp_of(sc - lse[row_index]);
      const T* gout = row(g.grad_out, g.grad_out_stride, b, h, i);
      T dp = 0;
      for (int64_t c = 0; c < a.dv; ++c) dp += gout[c] * v[c];
      p[i] = pij;
      ds[i] = pij * (dp - delta[row_index]);
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < a.d; c += blockDim.x) {
      T acc = 0;
      for (int64_t i = 0; i < a.Sq; ++i) acc += ds[i] * row(a.q, a.q_stride, b, h, i)[c];
      gk[c] += acc * a.scale;
    }
    for (int64_t c = threadIdx.x; c < a.dv; c += blockDim.x) {
      T acc = 0;
      for (int64_t i = 0; i < a.Sq; ++i) acc += p[i] * row(g.grad_out, g.grad_out_stride, b, h, i)[c];
      gv[c] += acc;
    }
    __syncthreads();  // p and ds are rewritten for the next batch row
  }
}

dim3 grid_of(int64_t rows, int64_t H, int64_t B, const char* op) {
  BLIP_CHECK(rows >= 0 && rows <= 0x7fffffff && H <= 65535 && B <= 65535, "blip::cuda::", op, ": grid of ", rows,
             " rows x ", H, " heads x ", B, " batch rows exceeds one launch");
  return dim3(static_cast<unsigned>(rows), static_cast<unsigned>(H), static_cast<unsigned>(B));
}

// The dynamic shared memory of one row's values: 48 KiB per block without opting in, less 1 KiB
// for the block reductions' own (static) storage.
size_t shared_bytes(int64_t values, size_t element, const char* op) {
  const size_t bytes = static_cast<size_t>(values) * element;
  BLIP_CHECK(bytes <= 47 * 1024, "blip::cuda::", op, ": ", values, " values per row exceed the 47 KiB of shared memory "
             "this kernel uses");
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The tiled kernels (attention_tiles.cuh): what the current GPU allows, and their launches.

struct DeviceLimits {
  int major = 0;           // compute capability
  size_t shared_optin = 0; // dynamic shared memory one block may opt in to
};

const DeviceLimits& device_limits() {
  static std::mutex mutex;
  static std::map<int, DeviceLimits> known;
  int device = 0;
  BLIP_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = known.find(device);
  if (it == known.end()) {
    DeviceLimits l;
    int optin = 0;
    BLIP_CUDA_CHECK(cudaDeviceGetAttribute(&l.major, cudaDevAttrComputeCapabilityMajor, device));
    BLIP_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    l.shared_optin = static_cast<size_t>(optin);
    it = known.emplace(device, l).first;
  }
  return it->second;
}

// Above the default 48 KiB a kernel must be allowed its dynamic shared memory (per device).
template <class Kernel>
void allow_shared(Kernel* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    BLIP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <class Kernel, class... Args>
void launch_tiles(Kernel* kernel, dim3 grid, int threads, size_t bytes, const char* op, const Args&... args) {
  allow_shared(kernel, bytes);
  kernel<<<grid, threads, bytes, stream_now()>>>(args...);
  check_launch(op);
}

bool heads_fit(int64_t d, int64_t dv) { return d <= tiles::kMaxHead && dv <= tiles::kMaxHead; }

int64_t tile_count(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

template <class T, class In>
void forward_simt(const backend::AttentionArgs<T, In>& a, size_t bytes) {
  const dim3 grid = grid_of(tile_count(a.Sq, tiles::kRows), a.H, a.B, "attention");
  switch (tiles::head_bound(a.d, a.dv)) {
    case 32: launch_tiles(tiles::forward_simt<T, In, 32>, grid, tiles::kSimtThreads, bytes, "attention", a); break;
    case 64: launch_tiles(tiles::forward_simt<T, In, 64>, grid, tiles::kSimtThreads, bytes, "attention", a); break;
    default: launch_tiles(tiles::forward_simt<T, In, 128>, grid, tiles::kSimtThreads, bytes, "attention", a); break;
  }
}

void forward_mma(const backend::AttentionArgs<float, bf16>& a, size_t bytes) {
  const dim3 grid = grid_of(tile_count(a.Sq, tiles::kRows), a.H, a.B, "attention");
  if (tiles::head_bound(a.d, a.dv) <= 64) launch_tiles(tiles::forward_mma<64>, grid, tiles::kMmaThreads, bytes, "attention", a);
  else launch_tiles(tiles::forward_mma<128>, grid, tiles::kMmaThreads, bytes, "attention", a);
}

template <class T, int HD>
void backward_tiles(const backend::AttentionBackwardArgs<T>& g, size_t bytes) {
  const backend::AttentionArgs<T>& a = g.forward;
  const dim3 rows_grid = grid_of(tile_count(a.Sq, tiles::kRows), a.H, a.B, "attention_backward");
  const dim3 keys_grid = grid_of(tile_count(a.Sk, tiles::kKeys), a.H, a.Bkv, "attention_backward");
  const DeviceBuffer<T> lse(a.B * a.H * a.Sq), delta(a.B * a.H * a.Sq);
  launch_tiles(tiles::backward_rows<T, HD>, rows_grid, tiles::kSimtThreads, bytes, "attention_backward", g, lse.data,
               delta.data);
  launch_tiles(tiles::backward_keys<T, HD>, keys_grid, tiles::kSimtThreads, bytes, "attention_backward", g,
               static_cast<const T*>(lse.data), static_cast<const T*>(delta.data));
}

template <int HD>
void backward_mma(const backend::AttentionBackwardBf16Args& g, size_t bytes) {
  const backend::AttentionArgs<float, bf16>& a = g.forward;
  const dim3 rows_grid = grid_of(tile_count(a.Sq, tiles::kRows), a.H, a.B, "attention_backward_bf16");
  const dim3 keys_grid = grid_of(tile_count(a.Sk, tiles::kKeys), a.H, a.Bkv, "attention_backward_bf16");
  const DeviceBuffer<float> lse(a.B * a.H * a.Sq), delta(a.B * a.H * a.Sq);
  launch_tiles(tiles::backward_rows_mma<HD>, rows_grid, tiles::kMmaThreads, bytes, "attention_backward_bf16", g,
               lse.data, delta.data);
  launch_tiles(tiles::backward_keys_mma<HD>, keys_grid, tiles::kMmaThreads, bytes, "attention_backward_bf16", g,
               static_cast<const float*>(lse.data), static_cast<const float*>(delta.data));
}

// [batch, H, rows, cols] bf16 read through strides into contiguous float, one block per row.
__global__ void widen_rows(const bf16* x, std::array<int64_t, 3> stride, int64_t H, int64_t rows, int64_t cols,
                           float* y) {
  const int64_t task = blockIdx.x, b = task / (H * rows), h = task / rows % H, r = task % rows;
  const bf16* src = row(x, stride, b, h, r);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) y[task * cols + c] = load(src[c]);
}

void widen(const bf16* x, const std::array<int64_t, 3>& stride, int64_t batch, int64_t H, int64_t rows, int64_t cols,
           float* y) {
  const int64_t blocks = batch * H * rows;
  BLIP_CHECK(blocks <= 0x7fffffff, "blip::cuda::attention_backward_bf16: ", blocks, " rows exceed one launch");
  if (blocks == 0) return;
  widen_rows<<<static_cast<unsigned>(blocks), 64, 0, stream_now()>>>(x, stride, H, rows, cols, y);
  check_launch("attention_backward_bf16");
}

}  // namespace

template <class T, class In>
void attention(const backend::AttentionArgs<T, In>& a) {
  if (a.B == 0 || a.H == 0 || a.Sq == 0 || a.dv == 0) return;
  const AttentionKernel choice = attention_kernel();
  if (choice != AttentionKernel::direct && heads_fit(a.d, a.dv)) {
    const DeviceLimits& limits = device_limits();
    if constexpr (std::is_same_v<T, float> && std::is_same_v<In, bf16>) {
      const size_t bytes = tiles::MmaForwardLayout(a.d, a.dv).bytes;
      if (choice != AttentionKernel::tiled && limits.major >= 8 && a.d > 0 && a.d % 16 == 0 && a.dv % 16 == 0 &&
          bytes <= limits.shared_optin) {
        forward_mma(a, bytes);
        return;
      }
    }
    const size_t bytes = tiles::SimtForwardLayout(a.d, a.dv, sizeof(T)).bytes;
    if (bytes <= limits.shared_optin) {
      forward_simt(a, bytes);
      return;
    }
  }
  const dim3 grid = grid_of(a.Sq, a.H, a.B, "attention");
  const size_t shared = shared_bytes(a.Sk, sizeof(T), "attention");
  attention_forward_kernel<T, In><<<grid, threads_per_block, shared, stream_now()>>>(a, a.kv_index);
  check_launch("attention");
}

template <class T>
void attention_backward(const backend::AttentionBackwardArgs<T>& g) {
  const backend::AttentionArgs<T>& a = g.forward;
  if (a.B == 0 || a.H == 0 || a.Sq == 0) return;
  if (a.Sk == 0) {
    fill(g.grad_q, a.B * a.H * a.Sq * a.d, T(0));
    return;
  }
  if (attention_kernel() != AttentionKernel::direct && heads_fit(a.d, a.dv)) {
    const size_t bytes = tiles::SimtBackwardLayout(a.d, a.dv, sizeof(T)).bytes;
    if (bytes <= device_limits().shared_optin) {
      switch (tiles::head_bound(a.d, a.dv)) {
        case 32: backward_tiles<T, 32>(g, bytes); break;
        case 64: backward_tiles<T, 64>(g, bytes); break;
        default: backward_tiles<T, 128>(g, bytes); break;
      }
      return;
    }
  }
  // Every size is checked before anything runs, so a refusal leaves the gradients untouched.
  const dim3 rows_grid = grid_of(a.Sq, a.H, a.B, "attention_backward");
  const dim3 keys_grid = grid_of(a.Sk, a.H, a.Bkv, "attention_backward");
  const size_t rows_shared = shared_bytes(2 * a.Sk, sizeof(T), "attention_backward");
  const size_t keys_shared = shared_bytes(2 * a.Sq, sizeof(T), "attention_backward");
  const DeviceBuffer<T> lse(a.B * a.H * a.Sq), delta(a.B * a.H * a.Sq);
  attention_backward_rows_kernel<T><<<rows_grid, threads_per_block, rows_shared, stream_now()>>>(g, a.kv_index, lse.data,
                                                                                                 delta.data);
  check_launch("attention_backward");
  attention_backward_keys_kernel<T><<<keys_grid, threads_per_block, keys_shared, stream_now()>>>(g, a.kv_index, lse.data,
                                                                                                 delta.data);
  check_launch("attention_backward");
}

void attention_backward_bf16(const backend::AttentionBackwardBf16Args& g) {
  const backend::AttentionArgs<float, bf16>& a = g.forward;
  if (a.B == 0 || a.H == 0 || a.Sq == 0) return;
  if (a.Sk == 0) {
    fill(g.grad_q, a.B * a.H * a.Sq * a.d, 0.0f);
    return;
  }
  const AttentionKernel choice = attention_kernel();
  if ((choice == AttentionKernel::automatic || choice == AttentionKernel::tensor_core) && heads_fit(a.d, a.dv) &&
      a.out != nullptr && a.d > 0 && a.d % 16 == 0 && a.dv % 16 == 0) {
    const DeviceLimits& limits = device_limits();
    const size_t bytes = tiles::MmaBackwardLayout(a.d, a.dv).bytes;
    if (limits.major >= 8 && bytes <= limits.shared_optin) {
      if (tiles::head_bound(a.d, a.dv) <= 64) backward_mma<64>(g, bytes);
      else backward_mma<128>(g, bytes);
      return;
    }
  }
  // Elsewhere the float backward on the widened inputs (what the CPU kernel does).
  const DeviceBuffer<float> q(a.B * a.H * a.Sq * a.d), k(a.Bkv * a.H * a.Sk * a.d), v(a.Bkv * a.H * a.Sk * a.dv);
  widen(a.q, a.q_stride, a.B, a.H, a.Sq, a.d, q.data);
  widen(a.k, a.k_stride, a.Bkv, a.H, a.Sk, a.d, k.data);
  widen(a.v, a.v_stride, a.Bkv, a.H, a.Sk, a.dv, v.data);
  attention_backward(backend::widened(g, q.data, k.data, v.data));
  if (g.q_scale != 1.0f) scale(g.grad_q, g.grad_q, a.B * a.H * a.Sq * a.d, g.q_scale);
}

template void attention<float, float>(const backend::AttentionArgs<float, float>&);
template void attention<double, double>(const backend::AttentionArgs<double, double>&);
template void attention<float, bf16>(const backend::AttentionArgs<float, bf16>&);
template void attention_backward<float>(const backend::AttentionBackwardArgs<float>&);
template void attention_backward<double>(const backend::AttentionBackwardArgs<double>&);

}  // namespace blip::cuda
