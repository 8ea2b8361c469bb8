// tests/cuda_emulation/simt.hpp — the CUDA execution model on CPU threads, for testing device
// code on a machine without a GPU.
//
// Contract: a translation unit that includes this header first, then a device-code header of
// src/cuda (one that uses only what is below), compiles as plain C++ and runs each kernel with
// simt::launch(grid, block, shared_bytes, kernel, args...). Each thread of a block is a
// std::thread; blocks run one after another. Emulated: threadIdx/blockIdx/blockDim/gridDim,
// dynamic shared memory (filled with 0xFF bytes, so a float read before it is written is a NaN),
// __syncthreads, __syncwarp, __shfl_xor_sync/__shfl_sync, the bf16 conversions, and
// nvcuda::wmma's 16x16x16 fragments. A fragment's elements sit in lanes by a scrambled
// mapping, so code that assumed one layout would fail here; load/store check the pointer
// alignment (32 bytes) and leading dimension (16 bytes) the hardware requires.
//
// What it cannot show: speed, the hardware's shared-memory limits, races between warps that the
// barriers here happen to order, or the tensor cores' exact rounding (products are summed in
// float in a fixed order). A kernel tested here still needs its GPU run.
#pragma once

#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define BLIP_DYNAMIC_SHARED(name) unsigned char* name = ::simt::dynamic_shared()

namespace simt {

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

inline constexpr int warp_size = 32;

struct Block {
  explicit Block(unsigned threads, size_t shared_bytes)
      : all(static_cast<std::ptrdiff_t>(threads)),
        exchange(threads),
        mma(((threads + warp_size - 1) / warp_size) * 3 * 256),
        shared_size(shared_bytes) {
    for (unsigned w = 0; w * warp_size < threads; ++w)
      warps.push_back(std::make_unique<std::barrier<>>(std::min<unsigned>(warp_size, threads - w * warp_size)));
    // 128-byte aligned, as the kernels' __align__(128) declaration asks of the hardware
    shared = static_cast<unsigned char*>(std::aligned_alloc(128, (shared_bytes + 127) / 128 * 128 + 128));
    std::memset(shared, 0xFF, shared_bytes);
  }
  ~Block() { std::free(shared); }
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<double> exchange;  // one slot per thread, for the shuffles
  std::vector<float> mma;        // per warp: a, b and c of one wmma::mma_sync
  unsigned char* shared = nullptr;
  size_t shared_size;
};

struct ThreadState {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
  Block* blk = nullptr;
  unsigned linear = 0;
};
inline thread_local ThreadState current;

inline unsigned char* dynamic_shared() { return current.blk->shared; }
inline unsigned lane() { return current.linear % warp_size; }
inline unsigned warp_first() { return current.linear - lane(); }
inline void warp_sync() { current.blk->warps[current.linear / warp_size]->arrive_and_wait(); }

// Runs kernel(args...) over grid x block threads; blocks in order, a block's threads at once.
template <class... P, class... A>
void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel)(P...), const A&... args) {
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024) throw std::invalid_argument("simt::launch: block of " + std::to_string(threads));
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Block blk(threads, shared_bytes);
        std::vector<std::thread> team;
        team.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          team.emplace_back([&, t] {
            current.blk = &blk;
            current.linear = t;
            current.thread = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            current.block = {x, y, z};
            current.block_dim = block;
            current.grid_dim = grid;
            kernel(P(args)...);
            // An exited thread no longer holds up the barriers, as on the hardware.
            blk.warps[t / warp_size]->arrive_and_drop();
            blk.all.arrive_and_drop();
          });
        for (std::thread& th : team) th.join();
      }
}

template <class T>
T shuffle_from(T v, unsigned source_lane) {
  static_assert(std::is_arithmetic_v<T>, "simt: shuffles of arithmetic values only");
  Block& b = *current.blk;
  warp_sync();  // every lane has read the previous shuffle's slots
  b.exchange[current.linear] = static_cast<double>(v);
  warp_sync();
  return static_cast<T>(b.exchange[warp_first() + (source_lane % warp_size)]);
}

}  // namespace simt

#define threadIdx (::simt::current.thread)
#define blockIdx (::simt::current.block)
#define blockDim (::simt::current.block_dim)
#define gridDim (::simt::current.grid_dim)

inline void __syncthreads() { ::simt::current.blk->all.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::simt::warp_sync(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int = 32) {
  return ::simt::shuffle_from(v, ::simt::lane() ^ static_cast<unsigned>(lane_mask));
}
template <class T>
T __shfl_sync(unsigned, T v, int source_lane, int = 32) {
  return ::simt::shuffle_from(v, static_cast<unsigned>(source_lane));
}
inline float __uint_as_float(uint32_t u) { return std::bit_cast<float>(u); }

// bf16 as cuda_bf16.h names it: the bits, converted with round-to-nearest-even.
struct __nv_bfloat16 {
  uint16_t bits = 0;
};
inline __nv_bfloat16 __ushort_as_bfloat16(uint16_t bits) { return {bits}; }
inline float __bfloat162float(__nv_bfloat16 x) { return std::bit_cast<float>(static_cast<uint32_t>(x.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "simt::wmma: 16x16x16 only");
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols / ::simt::warp_size;
  T x[num_elements];
};

namespace detail {
// Element (r, c) of a 16x16 fragment lives in lane slot % 32, element slot / 32.
inline int slot(int r, int c) { return ((r * 16 + c) * 37 + 11) % 256; }
inline float value(float v) { return v; }
inline float value(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
void check(const T* p, unsigned ldm, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    throw std::logic_error(std::string("simt::wmma::") + what + ": pointer not 32-byte aligned");
  if ((ldm * sizeof(T)) % 16 != 0)
    throw std::logic_error(std::string("simt::wmma::") + what + ": ldm not a multiple of 16 bytes");
}
template <class F>
void for_mine(F f) {
  const int lane = static_cast<int>(::simt::lane());
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) {
      const int s = slot(r, c);
      if (s % 32 == lane) f(r, c, s / 32);
    }
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout, class V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  for (auto& e : f.x) e = static_cast<T>(v);
}

template <class Use, class T, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  detail::check(p, ldm, "load_matrix_sync");
  ::simt::warp_sync();
  constexpr bool row = std::is_same_v<Layout, row_major>;
  detail::for_mine([&](int r, int c, int e) { f.x[e] = row ? p[r * ldm + c] : p[c * ldm + r]; });
  ::simt::warp_sync();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  detail::check(p, ldm, "load_matrix_sync");
  ::simt::warp_sync();
  detail::for_mine([&](int r, int c, int e) { f.x[e] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]; });
  ::simt::warp_sync();
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  detail::check(p, ldm, "store_matrix_sync");
  ::simt::warp_sync();
  detail::for_mine([&](int r, int c, int e) { (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e]; });
  ::simt::warp_sync();
}

// d = a·b + c, in float, every lane computing its own elements from the whole warp's operands.
template <class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
              const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  float* scratch = ::simt::current.blk->mma.data() + (::simt::current.linear / ::simt::warp_size) * 3 * 256;
  float *sa = scratch, *sb = scratch + 256, *sc = scratch + 512;
  ::simt::warp_sync();
  detail::for_mine([&](int r, int col, int e) {
    sa[r * 16 + col] = detail::value(a.x[e]);
    sb[r * 16 + col] = detail::value(b.x[e]);
    sc[r * 16 + col] = c.x[e];
  });
  ::simt::warp_sync();
  detail::for_mine([&](int r, int col, int e) {
    float acc = sc[r * 16 + col];
    for (int k = 0; k < 16; ++k) acc += sa[r * 16 + k] * sb[k * 16 + col];
    d.x[e] = acc;
  });
  ::simt::warp_sync();
}

}  // namespace nvcuda::wmma
