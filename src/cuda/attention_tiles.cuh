// src/cuda/attention_tiles.cuh — private to blip::cuda: FlashAttention-2-style attention kernels,
// device code only (attention.cu chooses and launches them; tests/cuda_emulation runs the same
// code on CPU threads, so nothing here may use more of CUDA than that emulation provides).
//
// Semantics are AttentionArgs' (backend/args.hpp), as the direct kernels of attention.cu and the
// CPU kernel: strided q/k/v/out with a contiguous last dimension, an additive mask read through
// strides, kv_index sharing one key/value batch row among query rows, zeros for no keys or a bad
// kv_index.
//
// - forward_simt: a block owns 64 query rows of one (batch row, head) and walks the keys in tiles
//   of 64 (online softmax: running max and sum, the output rescaled per tile), 4 threads per
//   query row; no [Sq, Sk] block exists anywhere. T = float/double, q/k/v of T or bf16 (widened).
// - forward_mma: bf16 q/k/v on the tensor cores (wmma 16x16x16, float accumulation), 4 warps of 16
//   query rows; the score tile goes through shared memory for the softmax, the probabilities are
//   rounded to bf16 for the P·V product (as the CPU's bf16 path rounds them). d, dv multiples of
//   16. sm_80 or newer.
// - backward_rows / backward_keys: the deterministic FlashAttention-2 backward in two passes, no
//   atomics. backward_rows (per 64 query rows) recomputes the softmax statistics and the output,
//   stores lse and D = rowsum(dO ∘ O), and accumulates dQ over the key tiles; backward_keys (per
//   64 key rows of one key/value batch row) loops over every query batch row that uses it, in
//   order, accumulating dK and dV in registers.
// - backward_rows_mma / backward_keys_mma: the same two passes on the tensor cores for the bf16
//   forward's backward (AttentionBackwardBf16Args, bf16 autocast training): q, k, v the bf16 copies
//   the forward read, dO, P and dS rounded to bf16 for the products, float accumulation. D comes
//   from the forward's output (rowsum(dO ∘ out)); the rows kernel finds lse in a first pass over
//   the key tiles (scores only), then dQ. 4 warps of 16 rows (query rows, or key rows), each warp
//   keeping its dQ (or dK and dV) in accumulator fragments.
// Head sizes up to 128 (kMaxHead); the register arrays are sized by HD, a bound on d and dv.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "blip/backend/args.hpp"
#include "blip/core/dtype.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <mma.h>
#define BLIP_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#define BLIP_UNROLL _Pragma("unroll")
#else
#define BLIP_UNROLL  // the emulation (tests/cuda_emulation) compiles this as plain C++
#endif

namespace blip::cuda::tiles {

inline constexpr int kRows = 64;  // query rows per block
inline constexpr int kKeys = 64;  // keys per tile
inline constexpr int kSimtThreads = 256;  // 4 per query (or key) row
inline constexpr int kMmaThreads = 128;   // 4 warps of 16 query rows
inline constexpr int64_t kMaxHead = 128;
// The backward's transposed blocks (keys x query rows) share the query blocks' layouts.
static_assert(kRows == kKeys, "attention tiles: square score tiles assumed");

// The register arrays' bound for head sizes d and dv: 32, 64 or 128.
constexpr int head_bound(int64_t d, int64_t dv) {
  const int64_t n = d > dv ? d : dv;
  return n <= 32 ? 32 : n <= 64 ? 64 : 128;
}

constexpr size_t align128(size_t n) { return (n + 127) / 128 * 128; }

// Shared-memory layouts, computed alike on the host (launch size) and the device (offsets).
// Float tiles are padded by one column so that the 4 threads of a row and the 8 rows of a warp
// read different banks; bf16 tiles by 8 columns (wmma wants leading dimensions of 16 bytes).
struct SimtForwardLayout {
  int64_t ldq, ldk, ldv, ldp;
  size_t q, k, v, p, bytes;
  __host__ __device__ SimtForwardLayout(int64_t d, int64_t dv, size_t element)
      : ldq(d + 1), ldk(d + 1), ldv(dv), ldp(kKeys + 1) {
    q = 0;
    k = align128(q + element * kRows * ldq);
    v = align128(k + element * kKeys * ldk);
    p = align128(v + element * kKeys * ldv);
    bytes = align128(p + element * kRows * ldp);
  }
};

struct MmaForwardLayout {
  int64_t ldq, ldk, ldv, ldp, lds;
  size_t q, k, v, p, s, bytes;
  __host__ __device__ MmaForwardLayout(int64_t d, int64_t dv)
      : ldq(d + 8), ldk(d + 8), ldv(dv + 8), ldp(kKeys + 8), lds((dv > kKeys ? dv : kKeys) + 4) {
    constexpr size_t half = 2;  // bf16
    q = 0;
    k = align128(q + half * kRows * ldq);
    v = align128(k + half * kKeys * ldk);
    p = align128(v + half * kKeys * ldv);
    s = align128(p + half * kRows * ldp);      // 4 warps x 16 rows of probabilities
    bytes = align128(s + 4 * kRows * lds);     // 4 warps x 16 rows of scores, then of P·V
  }
};

// Both backward kernels: q and dO tiles, k and v tiles, two [64, 65] blocks (P and dS), and the
// rows' lse and D.
struct SimtBackwardLayout {
  int64_t ldq, ldo, ldk, ldv, ldp;
  size_t q, o, k, v, p, s, lse, delta, bytes;
  __host__ __device__ SimtBackwardLayout(int64_t d, int64_t dv, size_t element)
      : ldq(d + 1), ldo(dv + 1), ldk(d + 1), ldv(dv + 1), ldp(kKeys + 1) {
    q = 0;
    o = align128(q + element * kRows * ldq);
    k = align128(o + element * kRows * ldo);
    v = align128(k + element * kKeys * ldk);
    p = align128(v + element * kKeys * ldv);
    s = align128(p + element * kRows * ldp);
    lse = align128(s + element * kRows * ldp);
    delta = align128(lse + element * kRows);
    bytes = align128(delta + element * kRows);
  }
};

// Both tensor-core backward kernels: bf16 q, dO, k, v tiles; per warp a bf16 [16, 64] block for P
// and one for dS (the products' A operands) and a float [16, lds] block for scores, dP and the
// accumulators on their way out; the query rows' lse and D (keys kernel).
struct MmaBackwardLayout {
  int64_t ldq, ldo, ldk, ldv, ldp, lds;
  size_t q, o, k, v, p, ds, s, lse, delta, bytes;
  __host__ __device__ MmaBackwardLayout(int64_t d, int64_t dv)
      : ldq(d + 8), ldo(dv + 8), ldk(d + 8), ldv(dv + 8), ldp(kKeys + 8) {
    const int64_t widest = d > dv ? d : dv;
    lds = (widest > kKeys ? widest : kKeys) + 4;
    constexpr size_t half = 2;  // bf16
    q = 0;
    o = align128(q + half * kRows * ldq);
    k = align128(o + half * kRows * ldo);
    v = align128(k + half * kKeys * ldk);
    p = align128(v + half * kKeys * ldv);
    ds = align128(p + half * kRows * ldp);   // 4 warps x 16 rows each
    s = align128(ds + half * kRows * ldp);
    lse = align128(s + 4 * kRows * lds);
    delta = align128(lse + 4 * kRows);
    bytes = align128(delta + 4 * kRows);
  }
};

template <class T>
__device__ __forceinline__ T widen(const T& x) {
  return x;
}
__device__ __forceinline__ float widen(const bf16& x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float log_t(float x) { return logf(x); }
__device__ __forceinline__ double log_t(double x) { return log(x); }
template <class T>
__device__ __forceinline__ T max_t(T a, T b) {
  return a > b ? a : b;
}

// The sum / max over the 4 consecutive lanes of one row.
template <class T>
__device__ __forceinline__ T quad_sum(T v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
template <class T>
__device__ __forceinline__ T quad_max(T v) {
  v = max_t(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return max_t(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

template <class X>
__device__ __forceinline__ const X* row_at(const X* base, const std::array<int64_t, 3>& s, int64_t b, int64_t h,
                                           int64_t r) {
  return base + b * s[0] + h * s[1] + r * s[2];
}

// rows x cols of a [.., rows, cols] strided source into a tile with leading dimension ld,
// zeros past `valid` rows; all threads of the block take part.
template <class T, class In>
__device__ __forceinline__ void load_tile(T* tile, int64_t ld, const In* src, int64_t src_ld, int64_t rows,
                                          int64_t valid, int64_t cols, int threads) {
  for (int64_t e = threadIdx.x; e < rows * cols; e += threads) {
    const int64_t r = e / cols, c = e % cols;
    tile[r * ld + c] = r < valid ? static_cast<T>(widen(src[r * src_ld + c])) : T(0);
  }
}

// The key/value batch row of query batch row b, or -1 when there is none to read (no keys, or a
// kv_index entry outside [0, Bkv), which the op's deferred index check reports).
template <class T, class In>
__device__ __forceinline__ int64_t key_row_of(const backend::AttentionArgs<T, In>& a, int64_t b) {
  const int64_t kb = a.kv_index ? a.kv_index[b] : b;
  return a.Sk == 0 || kb < 0 || kb >= a.Bkv ? -1 : kb;
}

// The scores of the thread's 16 keys of a tile (keys q4, q4 + 4, ... of the k rows in ks):
// scale · q·k plus the mask, -inf past `keys`. mask is the query row's (null: none).
template <class T>
__device__ __forceinline__ void row_scores(const T* q_row, const T* ks, int64_t ldk, int64_t d, int q4, int64_t keys,
                                           T scale, const T* mask, int64_t mask_step, int64_t j0, T (&s)[kKeys / 4]) {
  for (int u = 0; u < kKeys / 4; ++u) {
    const int jj = q4 + 4 * u;
    T dot = T(0);
    for (int64_t c = 0; c < d; ++c) dot += q_row[c] * ks[jj * ldk + c];
    T score = -static_cast<T>(INFINITY);
    if (jj < keys) {
      score = dot * scale;
      if (mask) score += mask[(j0 + jj) * mask_step];
    }
    s[u] = score;
  }
}

// One key tile of the online softmax for the thread's query row: the running max m and sum l, and
// the thread's quarter of the output (columns q4, q4 + 4, ...) rescaled and added to. The tile's
// probabilities pass through the row's block p_row (written and read by the row's 4 lanes).
template <class T, int HD>
__device__ __forceinline__ void online_softmax_tile(const T (&s)[kKeys / 4], T* p_row, const T* vs, int64_t ldv,
                                                    int64_t keys, int64_t dv, int q4, T& m, T& l, T (&o)[HD / 4]) {
  T tile_max = -static_cast<T>(INFINITY);
  for (int u = 0; u < kKeys / 4; ++u) tile_max = max_t(tile_max, s[u]);
  const T m_new = max_t(m, quad_max(tile_max));
  const T base = m_new == -static_cast<T>(INFINITY) ? T(0) : m_new;  // a row masked so far stays at 0
  const T alpha = exp_t(m - base);
  T sum = T(0);
  for (int u = 0; u < kKeys / 4; ++u) {
    const T p = exp_t(s[u] - base);
    p_row[q4 + 4 * u] = p;
    sum += p;
  }
  l = l * alpha + quad_sum(sum);
  m = m_new;
  __syncwarp();  // a row's probabilities come from its 4 lanes, all in this warp
  for (int w = 0; w < HD / 4; ++w) o[w] *= alpha;
  for (int64_t jj = 0; jj < keys; ++jj) {
    const T p = p_row[jj];
    const T* vrow = vs + jj * ldv;
    for (int w = 0; w < HD / 4; ++w)
      if (q4 + 4 * w < dv) o[w] += p * vrow[q4 + 4 * w];
  }
}

// ---------------------------------------------------------------------------------------------
// Forward, SIMT: grid (ceil(Sq / 64), H, B), kSimtThreads threads, SimtForwardLayout bytes.
template <class T, class In, int HD>
__global__ void __launch_bounds__(kSimtThreads) forward_simt(backend::AttentionArgs<T, In> a) {
  BLIP_DYNAMIC_SHARED(raw);
  const SimtForwardLayout L(a.d, a.dv, sizeof(T));
  T* qs = reinterpret_cast<T*>(raw + L.q);
  T* ks = reinterpret_cast<T*>(raw + L.k);
  T* vs = reinterpret_cast<T*>(raw + L.v);
  T* ps = reinterpret_cast<T*>(raw + L.p);
  const int t = static_cast<int>(threadIdx.x), r = t >> 2, q4 = t & 3;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows, h = blockIdx.y, b = blockIdx.z;
  const int64_t i = i0 + r, d = a.d, dv = a.dv;
  const bool row_ok = i < a.Sq;
  T* out = a.out + b * a.out_stride[0] + h * a.out_stride[1] + i * a.out_stride[2];
  const int64_t kb = key_row_of(a, b);
  if (kb < 0) {  // uniform over the block
    if (row_ok)
      for (int64_t c = q4; c < dv; c += 4) out[c] = T(0);
    return;
  }
  load_tile(qs, L.ldq, row_at(a.q, a.q_stride, b, h, i0), a.q_stride[2], kRows, a.Sq - i0, d, kSimtThreads);
  const T* mask = a.mask && row_ok ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2]
                                   : nullptr;
  T o[HD / 4];
  for (int w = 0; w < HD / 4; ++w) o[w] = T(0);
  T m = -static_cast<T>(INFINITY), l = T(0);
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();  // the previous tile's k, v (and the first time q) are done with
    load_tile(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kSimtThreads);
    load_tile(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kSimtThreads);
    __syncthreads();
    T s[kKeys / 4];
    row_scores(qs + r * L.ldq, ks, L.ldk, d, q4, keys, a.scale, mask, a.mask_stride[3], j0, s);
    online_softmax_tile<T, HD>(s, ps + r * L.ldp, vs, L.ldv, keys, dv, q4, m, l, o);
  }
  if (row_ok) {
    const T inv = T(1) / l;
    for (int w = 0; w < HD / 4; ++w)
      if (q4 + 4 * w < dv) out[q4 + 4 * w] = o[w] * inv;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward, tensor cores: bf16 q/k/v, float out; grid (ceil(Sq / 64), H, B), kMmaThreads threads,
// MmaForwardLayout bytes; d and dv multiples of 16, at most HD (64 or 128).
template <int HD>
__global__ void __launch_bounds__(kMmaThreads) forward_mma(backend::AttentionArgs<float, bf16> a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  // bf16 wmma needs sm_80; attention.cu never launches this kernel on an older GPU.
#else
  namespace wmma = nvcuda::wmma;
  using half_t = __nv_bfloat16;
  BLIP_DYNAMIC_SHARED(raw);
  const MmaForwardLayout L(a.d, a.dv);
  half_t* qs = reinterpret_cast<half_t*>(raw + L.q);
  half_t* ks = reinterpret_cast<half_t*>(raw + L.k);
  half_t* vs = reinterpret_cast<half_t*>(raw + L.v);
  const int t = static_cast<int>(threadIdx.x), warp = t >> 5, lane = t & 31;
  half_t* ps = reinterpret_cast<half_t*>(raw + L.p) + warp * 16 * L.ldp;
  float* ss = reinterpret_cast<float*>(raw + L.s) + warp * 16 * L.lds;
  const int rr = lane >> 1, half = lane & 1;  // the lane's row in the warp's 16, and its columns' parity
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows, h = blockIdx.y, b = blockIdx.z;
  const int64_t i = i0 + warp * 16 + rr, d = a.d, dv = a.dv;
  const bool row_ok = i < a.Sq;
  const bool warp_active = i0 + warp * 16 < a.Sq;  // uniform over the warp
  float* out = a.out + b * a.out_stride[0] + h * a.out_stride[1] + i * a.out_stride[2];
  const int64_t kb = key_row_of(a, b);
  if (kb < 0) {
    if (row_ok)
      for (int64_t c = half; c < dv; c += 2) out[c] = 0.0f;
    return;
  }
  {
    const bf16* q = row_at(a.q, a.q_stride, b, h, i0);
    for (int64_t e = t; e < kRows * d; e += kMmaThreads) {
      const int64_t r = e / d, c = e % d;
      qs[r * L.ldq + c] = __ushort_as_bfloat16(i0 + r < a.Sq ? q[r * a.q_stride[2] + c].bits : uint16_t{0});
    }
  }
  const float* mask = a.mask && row_ok ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2]
                                       : nullptr;
  float o[HD / 2];
  for (int c = 0; c < HD / 2; ++c) o[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();
    {
      const bf16* k = row_at(a.k, a.k_stride, kb, h, j0);
      const bf16* v = row_at(a.v, a.v_stride, kb, h, j0);
      for (int64_t e = t; e < kKeys * d; e += kMmaThreads) {
        const int64_t r = e / d, c = e % d;
        ks[r * L.ldk + c] = __ushort_as_bfloat16(r < keys ? k[r * a.k_stride[2] + c].bits : uint16_t{0});
      }
      for (int64_t e = t; e < kKeys * dv; e += kMmaThreads) {
        const int64_t r = e / dv, c = e % dv;
        vs[r * L.ldv + c] = __ushort_as_bfloat16(r < keys ? v[r * a.v_stride[2] + c].bits : uint16_t{0});
      }
    }
    __syncthreads();
    if (!warp_active) continue;  // its 16 rows are all past Sq; the block's loads still need it
    // The warp's scores, 16 x 64: q [16, d] · kᵀ, k read column-major as the product's B.
    for (int nt = 0; nt < kKeys / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int64_t kk = 0; kk < d; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half_t, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half_t, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, qs + warp * 16 * L.ldq + kk, static_cast<unsigned>(L.ldq));
        wmma::load_matrix_sync(fb, ks + nt * 16 * L.ldk + kk, static_cast<unsigned>(L.ldk));
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(ss + nt * 16, acc, static_cast<unsigned>(L.lds), wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax: each lane has half of its row's 64 scores (every other column).
    float s[kKeys / 2];
    float tile_max = -INFINITY;
    for (int c = 0; c < kKeys / 2; ++c) {
      const int jj = half + 2 * c;
      float score = -INFINITY;
      if (jj < keys) {
        score = ss[rr * L.lds + jj] * a.scale;
        if (mask) score += mask[(j0 + jj) * a.mask_stride[3]];
      }
      s[c] = score;
      tile_max = max_t(tile_max, score);
    }
    const float m_new = max_t(m, max_t(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1)));
    const float base = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = expf(m - base);
    float sum = 0.0f;
    for (int c = 0; c < kKeys / 2; ++c) {
      const half_t p = __float2bfloat16_rn(expf(s[c] - base));
      ps[rr * L.ldp + half + 2 * c] = p;
      sum += __bfloat162float(p);  // the weights the product uses, so the output is their average
    }
    l = l * alpha + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
    m = m_new;
    __syncwarp();  // every lane's probabilities are in, and every score read
    // P [16, 64] · v [64, dv] into the score rows (done with).
    for (int64_t nt = 0; nt < dv; nt += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < kKeys; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half_t, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half_t, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, ps + kk, static_cast<unsigned>(L.ldp));
        wmma::load_matrix_sync(fb, vs + kk * L.ldv + nt, static_cast<unsigned>(L.ldv));
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(ss + nt, acc, static_cast<unsigned>(L.lds), wmma::mem_row_major);
    }
    __syncwarp();
    for (int c = 0; c < HD / 2; ++c)
      if (half + 2 * c < dv) o[c] = o[c] * alpha + ss[rr * L.lds + half + 2 * c];
  }
  if (row_ok) {
    const float inv = 1.0f / l;
    for (int c = 0; c < HD / 2; ++c)
      if (half + 2 * c < dv) out[half + 2 * c] = o[c] * inv;
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// Backward, per query rows: grid (ceil(Sq / 64), H, B), kSimtThreads threads, SimtBackwardLayout
// bytes. Writes grad_q (contiguous [B, H, Sq, d]) and each row's lse and D into [B, H, Sq] arrays.
template <class T, int HD>
__global__ void __launch_bounds__(kSimtThreads) backward_rows(backend::AttentionBackwardArgs<T> g, T* lse_out,
                                                               T* delta_out) {
  const backend::AttentionArgs<T>& a = g.forward;
  BLIP_DYNAMIC_SHARED(raw);
  const SimtBackwardLayout L(a.d, a.dv, sizeof(T));
  T* qs = reinterpret_cast<T*>(raw + L.q);
  T* os = reinterpret_cast<T*>(raw + L.o);  // dO rows
  T* ks = reinterpret_cast<T*>(raw + L.k);
  T* vs = reinterpret_cast<T*>(raw + L.v);
  T* ps = reinterpret_cast<T*>(raw + L.p);
  const int t = static_cast<int>(threadIdx.x), r = t >> 2, q4 = t & 3;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows, h = blockIdx.y, b = blockIdx.z;
  const int64_t i = i0 + r, d = a.d, dv = a.dv;
  const bool row_ok = i < a.Sq;
  const int64_t row_index = (b * a.H + h) * a.Sq + i;
  T* gq = g.grad_q + row_index * d;
  const int64_t kb = key_row_of(a, b);
  if (kb < 0) {  // no gradient through a bad kv_index (Sk == 0 is the caller's)
    if (row_ok)
      for (int64_t c = q4; c < d; c += 4) gq[c] = T(0);
    return;
  }
  load_tile(qs, L.ldq, row_at(a.q, a.q_stride, b, h, i0), a.q_stride[2], kRows, a.Sq - i0, d, kSimtThreads);
  load_tile(os, L.ldo, row_at(g.grad_out, g.grad_out_stride, b, h, i0), g.grad_out_stride[2], kRows, a.Sq - i0, dv,
            kSimtThreads);
  const T* mask = a.mask && row_ok ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2]
                                   : nullptr;
  const T neg_inf = -static_cast<T>(INFINITY);
  // Pass 1: the forward's statistics and output, for lse and D = dO · O.
  T o[HD / 4];
  for (int w = 0; w < HD / 4; ++w) o[w] = T(0);
  T m = neg_inf, l = T(0);
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();
    load_tile(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kSimtThreads);
    load_tile(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kSimtThreads);
    __syncthreads();
    T s[kKeys / 4];
    row_scores(qs + r * L.ldq, ks, L.ldk, d, q4, keys, a.scale, mask, a.mask_stride[3], j0, s);
    online_softmax_tile<T, HD>(s, ps + r * L.ldp, vs, L.ldv, keys, dv, q4, m, l, o);
  }
  T partial = T(0);
  for (int w = 0; w < HD / 4; ++w)
    if (q4 + 4 * w < dv) partial += o[w] * os[r * L.ldo + q4 + 4 * w];
  const T lse = m + log_t(l);
  const T D = quad_sum(partial) / l;
  if (row_ok && q4 == 0) {
    lse_out[row_index] = lse;
    delta_out[row_index] = D;
  }
  // Pass 2: dS = P ∘ (dO·vᵀ − D), dQ = scale · dS · k.
  T dq[HD / 4];
  for (int w = 0; w < HD / 4; ++w) dq[w] = T(0);
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();
    load_tile(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kSimtThreads);
    load_tile(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kSimtThreads);
    __syncthreads();
    T s[kKeys / 4];
    row_scores(qs + r * L.ldq, ks, L.ldk, d, q4, keys, a.scale, mask, a.mask_stride[3], j0, s);
    for (int u = 0; u < kKeys / 4; ++u) {
      const int jj = q4 + 4 * u;
      T dp = T(0);
      for (int64_t c = 0; c < dv; ++c) dp += os[r * L.ldo + c] * vs[jj * L.ldv + c];
      ps[r * L.ldp + jj] = jj < keys ? exp_t(s[u] - lse) * (dp - D) : T(0);
    }
    __syncwarp();
    for (int64_t jj = 0; jj < keys; ++jj) {
      const T ds = ps[r * L.ldp + jj];
      for (int w = 0; w < HD / 4; ++w)
        if (q4 + 4 * w < d) dq[w] += ds * ks[jj * L.ldk + q4 + 4 * w];
    }
  }
  if (row_ok)
    for (int w = 0; w < HD / 4; ++w)
      if (q4 + 4 * w < d) gq[q4 + 4 * w] = dq[w] * a.scale;
}

// Backward, per key rows: grid (ceil(Sk / 64), H, Bkv), kSimtThreads threads, SimtBackwardLayout
// bytes. Adds into grad_k [Bkv, H, Sk, d] and grad_v [Bkv, H, Sk, dv]; reads backward_rows' lse/D.
template <class T, int HD>
__global__ void __launch_bounds__(kSimtThreads) backward_keys(backend::AttentionBackwardArgs<T> g, const T* lse_in,
                                                               const T* delta_in) {
  const backend::AttentionArgs<T>& a = g.forward;
  BLIP_DYNAMIC_SHARED(raw);
  const SimtBackwardLayout L(a.d, a.dv, sizeof(T));
  T* qs = reinterpret_cast<T*>(raw + L.q);
  T* os = reinterpret_cast<T*>(raw + L.o);
  T* ks = reinterpret_cast<T*>(raw + L.k);
  T* vs = reinterpret_cast<T*>(raw + L.v);
  T* ps = reinterpret_cast<T*>(raw + L.p);
  T* dss = reinterpret_cast<T*>(raw + L.s);
  T* lse_s = reinterpret_cast<T*>(raw + L.lse);
  T* delta_s = reinterpret_cast<T*>(raw + L.delta);
  const int t = static_cast<int>(threadIdx.x), r = t >> 2, q4 = t & 3;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kKeys, h = blockIdx.y, kb = blockIdx.z;
  const int64_t j = j0 + r, d = a.d, dv = a.dv;
  const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
  const bool key_ok = r < keys;
  load_tile(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kSimtThreads);
  load_tile(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kSimtThreads);
  T dk[HD / 4], dvv[HD / 4];
  for (int w = 0; w < HD / 4; ++w) dk[w] = dvv[w] = T(0);
  for (int64_t b = 0; b < a.B; ++b) {
    if (key_row_of(a, b) != kb) continue;  // uniform over the block
    const T* mask = a.mask ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + j * a.mask_stride[3] : nullptr;
    for (int64_t i0 = 0; i0 < a.Sq; i0 += kRows) {
      const int64_t rows = a.Sq - i0 < kRows ? a.Sq - i0 : kRows;
      __syncthreads();  // the previous query tile is done with (and the first time: k, v loaded)
      load_tile(qs, L.ldq, row_at(a.q, a.q_stride, b, h, i0), a.q_stride[2], kRows, rows, d, kSimtThreads);
      load_tile(os, L.ldo, row_at(g.grad_out, g.grad_out_stride, b, h, i0), g.grad_out_stride[2], kRows, rows, dv,
                kSimtThreads);
      for (int64_t e = t; e < kRows; e += kSimtThreads) {
        const int64_t row_index = (b * a.H + h) * a.Sq + i0 + e;
        lse_s[e] = e < rows ? lse_in[row_index] : T(0);
        delta_s[e] = e < rows ? delta_in[row_index] : T(0);
      }
      __syncthreads();
      for (int u = 0; u < kRows / 4; ++u) {
        const int ii = q4 + 4 * u;
        T p = T(0), ds = T(0);
        if (ii < rows && key_ok) {
          T dot = T(0);
          for (int64_t c = 0; c < d; ++c) dot += qs[ii * L.ldq + c] * ks[r * L.ldk + c];
          T score = dot * a.scale;
          if (mask) score += mask[(i0 + ii) * a.mask_stride[2]];
          p = exp_t(score - lse_s[ii]);
          T dp = T(0);
          for (int64_t c = 0; c < dv; ++c) dp += os[ii * L.ldo + c] * vs[r * L.ldv + c];
          ds = p * (dp - delta_s[ii]);
        }
        ps[r * L.ldp + ii] = p;
        dss[r * L.ldp + ii] = ds;
      }
      __syncwarp();
      for (int64_t ii = 0; ii < rows; ++ii) {
        const T p = ps[r * L.ldp + ii], ds = dss[r * L.ldp + ii];
        for (int w = 0; w < HD / 4; ++w) {
          const int c = q4 + 4 * w;
          if (c < dv) dvv[w] += p * os[ii * L.ldo + c];
          if (c < d) dk[w] += ds * qs[ii * L.ldq + c];
        }
      }
    }
  }
  if (key_ok) {
    T* gk = g.grad_k + ((kb * a.H + h) * a.Sk + j) * d;
    T* gv = g.grad_v + ((kb * a.H + h) * a.Sk + j) * dv;
    for (int w = 0; w < HD / 4; ++w) {
      const int c = q4 + 4 * w;
      if (c < d) gk[c] += dk[w] * a.scale;
      if (c < dv) gv[c] += dvv[w];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward on the tensor cores (bf16 q/k/v, float dO, out and gradients). Shared by both kernels.
// rows x cols of a [.., rows, cols] strided bf16 source into a tile (zeros past `valid` rows).
__device__ __forceinline__ void load_tile_bf16(__nv_bfloat16* tile, int64_t ld, const bf16* src, int64_t src_ld,
                                               int64_t rows, int64_t valid, int64_t cols, int threads) {
  for (int64_t e = threadIdx.x; e < rows * cols; e += threads) {
    const int64_t r = e / cols, c = e % cols;
    tile[r * ld + c] = __ushort_as_bfloat16(r < valid ? src[r * src_ld + c].bits : uint16_t{0});
  }
}

// A float [.., rows, cols] source rounded into a bf16 tile (grad_out).
__device__ __forceinline__ void load_tile_rounded(__nv_bfloat16* tile, int64_t ld, const float* src, int64_t src_ld,
                                                  int64_t rows, int64_t valid, int64_t cols, int threads) {
  for (int64_t e = threadIdx.x; e < rows * cols; e += threads) {
    const int64_t r = e / cols, c = e % cols;
    tile[r * ld + c] = __float2bfloat16_rn(r < valid ? src[r * src_ld + c] : 0.0f);
  }
}

// out [16, 16·n] (float, ld lds) = A [16, kdim] · B, for the warp: A row-major bf16 at a (lda);
// B either column-major (b_transposed: B = Xᵀ for X row-major [16·n, kdim] at b, ldb) or row-major
// [kdim, 16·n] at b (ldb). n ≤ 8, the columns of out past `cols` not computed.
template <bool b_transposed>
__device__ __forceinline__ void warp_product(float* out, int64_t lds, const __nv_bfloat16* a, int64_t lda,
                                             const __nv_bfloat16* b, int64_t ldb, int64_t kdim, int64_t cols) {
  namespace wmma = nvcuda::wmma;
  using layout_b = typename std::conditional<b_transposed, wmma::col_major, wmma::row_major>::type;
  for (int64_t nt = 0; nt < cols; nt += 16) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int64_t kk = 0; kk < kdim; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, layout_b> fb;
      wmma::load_matrix_sync(fa, a + kk, static_cast<unsigned>(lda));
      wmma::load_matrix_sync(fb, b_transposed ? b + nt * ldb + kk : b + kk * ldb + nt, static_cast<unsigned>(ldb));
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + nt, acc, static_cast<unsigned>(lds), wmma::mem_row_major);
  }
}

// acc[nt] += A [16, 64] · B [64, 16·nt..] for the warp's accumulators (cols ≤ HD): A a bf16
// [16, 64] block (ld lda), B row-major bf16 (ldb).
template <int HD>
__device__ __forceinline__ void warp_accumulate(
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> (&acc)[HD / 16], const __nv_bfloat16* a,
    int64_t lda, const __nv_bfloat16* b, int64_t ldb, int64_t cols) {
  namespace wmma = nvcuda::wmma;
BLIP_UNROLL
  for (int nt = 0; nt < HD / 16; ++nt) {
    if (nt * 16 >= cols) break;
    for (int kk = 0; kk < kKeys; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
      wmma::load_matrix_sync(fa, a + kk, static_cast<unsigned>(lda));
      wmma::load_matrix_sync(fb, b + kk * ldb + nt * 16, static_cast<unsigned>(ldb));
      wmma::mma_sync(acc[nt], fa, fb, acc[nt]);
    }
  }
}

// The warp's accumulators into its float block (ld lds), for the lanes to read.
template <int HD>
__device__ __forceinline__ void store_accumulators(
    const nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> (&acc)[HD / 16], float* out,
    int64_t lds, int64_t cols) {
BLIP_UNROLL
  for (int nt = 0; nt < HD / 16; ++nt) {
    if (nt * 16 >= cols) break;
    nvcuda::wmma::store_matrix_sync(out + nt * 16, acc[nt], static_cast<unsigned>(lds), nvcuda::wmma::mem_row_major);
  }
}

// The tensor-core backward's shared-memory tiles (MmaBackwardLayout), the warp's own blocks
// offset for it: one preamble for both kernels.
struct MmaBackwardTiles {
  MmaBackwardLayout L;
  __nv_bfloat16 *qs, *dos, *ks, *vs, *pss, *dss;
  float *ss, *lse, *delta;
  __device__ MmaBackwardTiles(unsigned char* raw, int64_t d, int64_t dv, int warp) : L(d, dv) {
    qs = reinterpret_cast<__nv_bfloat16*>(raw + L.q);
    dos = reinterpret_cast<__nv_bfloat16*>(raw + L.o);
    ks = reinterpret_cast<__nv_bfloat16*>(raw + L.k);
    vs = reinterpret_cast<__nv_bfloat16*>(raw + L.v);
    pss = reinterpret_cast<__nv_bfloat16*>(raw + L.p) + warp * 16 * L.ldp;
    dss = reinterpret_cast<__nv_bfloat16*>(raw + L.ds) + warp * 16 * L.ldp;
    ss = reinterpret_cast<float*>(raw + L.s) + warp * 16 * L.lds;
    lse = reinterpret_cast<float*>(raw + L.lse);
    delta = reinterpret_cast<float*>(raw + L.delta);
  }
};

// Backward, query rows, tensor cores: grid (ceil(Sq / 64), H, B), kMmaThreads threads,
// MmaBackwardLayout bytes; d and dv multiples of 16, at most HD (64 or 128). Writes grad_q
// (contiguous) and each row's lse and D into [B, H, Sq] arrays.
template <int HD>
__global__ void __launch_bounds__(kMmaThreads) backward_rows_mma(backend::AttentionBackwardBf16Args g, float* lse_out,
                                                                  float* delta_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  // bf16 wmma needs sm_80; attention.cu never launches this kernel on an older GPU.
#else
  namespace wmma = nvcuda::wmma;
  using half_t = __nv_bfloat16;
  const backend::AttentionArgs<float, bf16>& a = g.forward;
  BLIP_DYNAMIC_SHARED(raw);
  const int t = static_cast<int>(threadIdx.x), warp = t >> 5, lane = t & 31;
  const MmaBackwardTiles tiles(raw, a.d, a.dv, warp);
  const MmaBackwardLayout& L = tiles.L;
  half_t *qs = tiles.qs, *dos = tiles.dos, *ks = tiles.ks, *vs = tiles.vs, *dss = tiles.dss;
  float* ss = tiles.ss;
  const int rr = lane >> 1, half = lane & 1;  // the lane's row in the warp's 16, and its columns' parity
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows, h = blockIdx.y, b = blockIdx.z;
  const int64_t i = i0 + warp * 16 + rr, d = a.d, dv = a.dv;
  const bool row_ok = i < a.Sq;
  const bool warp_active = i0 + warp * 16 < a.Sq;  // uniform over the warp
  const int64_t row_index = (b * a.H + h) * a.Sq + i;
  float* gq = g.grad_q + row_index * d;
  const int64_t kb = key_row_of(a, b);
  if (kb < 0) {  // no gradient through a bad kv_index (Sk == 0 is the caller's)
    if (row_ok)
      for (int64_t c = half; c < d; c += 2) gq[c] = 0.0f;
    return;
  }
  load_tile_bf16(qs, L.ldq, row_at(a.q, a.q_stride, b, h, i0), a.q_stride[2], kRows, a.Sq - i0, d, kMmaThreads);
  load_tile_rounded(dos, L.ldo, row_at(g.grad_out, g.grad_out_stride, b, h, i0), g.grad_out_stride[2], kRows,
                    a.Sq - i0, dv, kMmaThreads);
  // D = dO · out for the lane's row (its half of the columns, then the pair's sum), in float.
  float D = 0.0f;
  if (row_ok) {
    const float* go = row_at(g.grad_out, g.grad_out_stride, b, h, i);
    const float* o = row_at(static_cast<const float*>(a.out), a.out_stride, b, h, i);
    for (int64_t c = half; c < dv; c += 2) D += go[c] * o[c];
  }
  D += __shfl_xor_sync(0xffffffffu, D, 1);
  const float* mask = a.mask && row_ok ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + i * a.mask_stride[2]
                                       : nullptr;
  const auto score = [&](int64_t j0, int jj, int64_t keys) {  // the lane's score of key j0 + jj
    if (jj >= keys) return -INFINITY;
    float x = ss[rr * L.lds + jj] * a.scale;
    if (mask) x += mask[(j0 + jj) * a.mask_stride[3]];
    return x;
  };
  // Pass 1: the row's log-sum-exp over the key tiles (scores only).
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();
    load_tile_bf16(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kMmaThreads);
    __syncthreads();
    if (!warp_active) continue;
    warp_product<true>(ss, L.lds, qs + warp * 16 * L.ldq, L.ldq, ks, L.ldk, d, kKeys);
    __syncwarp();
    float tile_max = -INFINITY;
    BLIP_UNROLL
    for (int c = 0; c < kKeys / 2; ++c) tile_max = max_t(tile_max, score(j0, half + 2 * c, keys));
    const float m_new = max_t(m, max_t(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1)));
    const float base = m_new == -INFINITY ? 0.0f : m_new;
    float sum = 0.0f;
    BLIP_UNROLL
    for (int c = 0; c < kKeys / 2; ++c) sum += expf(score(j0, half + 2 * c, keys) - base);
    l = l * expf(m - base) + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
    m = m_new;
    __syncwarp();  // every lane has read its scores before the next product overwrites them
  }
  const float lse = l > 0.0f ? m + logf(l) : INFINITY;  // a row with no key to weigh: P = 0,
  if (!(l > 0.0f)) D = 0.0f;                              // and dS = 0 (its output, 0/0, is NaN)
  if (row_ok && half == 0) {
    lse_out[row_index] = lse;
    delta_out[row_index] = D;
  }
  // Pass 2: dS = P ∘ (dO·vᵀ − D) in bf16, dQ += dS · k.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq[HD / 16];
BLIP_UNROLL
  for (int nt = 0; nt < HD / 16; ++nt) wmma::fill_fragment(dq[nt], 0.0f);
  for (int64_t j0 = 0; j0 < a.Sk; j0 += kKeys) {
    const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
    __syncthreads();
    load_tile_bf16(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kMmaThreads);
    load_tile_bf16(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kMmaThreads);
    __syncthreads();
    if (!warp_active) continue;
    warp_product<true>(ss, L.lds, qs + warp * 16 * L.ldq, L.ldq, ks, L.ldk, d, kKeys);
    __syncwarp();
    float p[kKeys / 2];
    BLIP_UNROLL
    for (int c = 0; c < kKeys / 2; ++c) p[c] = expf(score(j0, half + 2 * c, keys) - lse);
    __syncwarp();  // the scores are read; dP goes where they were
    warp_product<true>(ss, L.lds, dos + warp * 16 * L.ldo, L.ldo, vs, L.ldv, dv, kKeys);
    __syncwarp();
    BLIP_UNROLL
    for (int c = 0; c < kKeys / 2; ++c) {
      const int jj = half + 2 * c;
      dss[rr * L.ldp + jj] = __float2bfloat16_rn(p[c] * (ss[rr * L.lds + jj] - D));
    }
    __syncwarp();
    warp_accumulate<HD>(dq, dss, L.ldp, ks, L.ldk, d);
  }
  if (!warp_active) return;
  __syncwarp();
  store_accumulators<HD>(dq, ss, L.lds, d);
  __syncwarp();
  if (row_ok) {
    const float factor = a.scale * g.q_scale;
    for (int64_t c = half; c < d; c += 2) gq[c] = ss[rr * L.lds + c] * factor;
  }
#endif
}

// Backward, key rows, tensor cores: grid (ceil(Sk / 64), H, Bkv), kMmaThreads threads,
// MmaBackwardLayout bytes. Adds into grad_k and grad_v (contiguous); reads backward_rows_mma's
// lse and D. Each warp owns 16 key rows; the scores are formed transposed (keys x queries).
template <int HD>
__global__ void __launch_bounds__(kMmaThreads) backward_keys_mma(backend::AttentionBackwardBf16Args g,
                                                                  const float* lse_in, const float* delta_in) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#else
  namespace wmma = nvcuda::wmma;
  using half_t = __nv_bfloat16;
  const backend::AttentionArgs<float, bf16>& a = g.forward;
  BLIP_DYNAMIC_SHARED(raw);
  const int t = static_cast<int>(threadIdx.x), warp = t >> 5, lane = t & 31;
  const MmaBackwardTiles tiles(raw, a.d, a.dv, warp);
  const MmaBackwardLayout& L = tiles.L;
  half_t *qs = tiles.qs, *dos = tiles.dos, *ks = tiles.ks, *vs = tiles.vs, *pss = tiles.pss, *dss = tiles.dss;
  float *ss = tiles.ss, *lse_s = tiles.lse, *delta_s = tiles.delta;
  const int rr = lane >> 1, half = lane & 1;  // the lane's key row in the warp's 16, its columns' parity
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kKeys, h = blockIdx.y, kb = blockIdx.z;
  const int64_t j = j0 + warp * 16 + rr, d = a.d, dv = a.dv;
  const int64_t keys = a.Sk - j0 < kKeys ? a.Sk - j0 : kKeys;
  const bool key_ok = j < a.Sk;
  const bool warp_active = warp * 16 < keys;  // uniform over the warp
  load_tile_bf16(ks, L.ldk, row_at(a.k, a.k_stride, kb, h, j0), a.k_stride[2], kKeys, keys, d, kMmaThreads);
  load_tile_bf16(vs, L.ldv, row_at(a.v, a.v_stride, kb, h, j0), a.v_stride[2], kKeys, keys, dv, kMmaThreads);
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[HD / 16], dvv[HD / 16];
BLIP_UNROLL
  for (int nt = 0; nt < HD / 16; ++nt) {
    wmma::fill_fragment(dk[nt], 0.0f);
    wmma::fill_fragment(dvv[nt], 0.0f);
  }
  for (int64_t b = 0; b < a.B; ++b) {
    if (key_row_of(a, b) != kb) continue;  // uniform over the block
    const float* mask = a.mask && key_ok ? a.mask + b * a.mask_stride[0] + h * a.mask_stride[1] + j * a.mask_stride[3]
                                         : nullptr;
    for (int64_t i0 = 0; i0 < a.Sq; i0 += kRows) {
      const int64_t rows = a.Sq - i0 < kRows ? a.Sq - i0 : kRows;
      __syncthreads();  // the previous query tile is done with (and the first time: k, v loaded)
      load_tile_bf16(qs, L.ldq, row_at(a.q, a.q_stride, b, h, i0), a.q_stride[2], kRows, rows, d, kMmaThreads);
      load_tile_rounded(dos, L.ldo, row_at(g.grad_out, g.grad_out_stride, b, h, i0), g.grad_out_stride[2], kRows,
                        rows, dv, kMmaThreads);
      for (int64_t e = t; e < kRows; e += kMmaThreads) {
        const int64_t row_index = (b * a.H + h) * a.Sq + i0 + e;
        lse_s[e] = e < rows ? lse_in[row_index] : INFINITY;
        delta_s[e] = e < rows ? delta_in[row_index] : 0.0f;
      }
      __syncthreads();
      if (!warp_active) continue;
      // Pᵀ for the warp's keys: k [16, d] · qᵀ, then exp(score − lse of the query column).
      warp_product<true>(ss, L.lds, ks + warp * 16 * L.ldk, L.ldk, qs, L.ldq, d, kRows);
      __syncwarp();
      float p[kRows / 2];
      BLIP_UNROLL
      for (int c = 0; c < kRows / 2; ++c) {
        const int ii = half + 2 * c;
        float x = -INFINITY;
        if (ii < rows && key_ok) {
          x = ss[rr * L.lds + ii] * a.scale;
          if (mask) x += mask[(i0 + ii) * a.mask_stride[2]];
        }
        p[c] = expf(x - lse_s[ii]);
        pss[rr * L.ldp + ii] = __float2bfloat16_rn(p[c]);
      }
      __syncwarp();  // scores read, Pᵀ written
      // dPᵀ = v [16, dv] · dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ − D of the query column).
      warp_product<true>(ss, L.lds, vs + warp * 16 * L.ldv, L.ldv, dos, L.ldo, dv, kRows);
      __syncwarp();
      BLIP_UNROLL
      for (int c = 0; c < kRows / 2; ++c) {
        const int ii = half + 2 * c;
        dss[rr * L.ldp + ii] = __float2bfloat16_rn(p[c] * (ss[rr * L.lds + ii] - delta_s[ii]));
      }
      __syncwarp();
      warp_accumulate<HD>(dvv, pss, L.ldp, dos, L.ldo, dv);
      warp_accumulate<HD>(dk, dss, L.ldp, qs, L.ldq, d);
    }
  }
  if (!warp_active) return;
  __syncwarp();
  store_accumulators<HD>(dk, ss, L.lds, d);
  __syncwarp();
  if (key_ok) {
    float* gk = g.grad_k + ((kb * a.H + h) * a.Sk + j) * d;
    for (int64_t c = half; c < d; c += 2) gk[c] += ss[rr * L.lds + c] * a.scale;
  }
  __syncwarp();
  store_accumulators<HD>(dvv, ss, L.lds, dv);
  __syncwarp();
  if (key_ok) {
    float* gv = g.grad_v + ((kb * a.H + h) * a.Sk + j) * dv;
    for (int64_t c = half; c < dv; c += 2) gv[c] += ss[rr * L.lds + c];
  }
#endif
}

}  // namespace blip::cuda::tiles
