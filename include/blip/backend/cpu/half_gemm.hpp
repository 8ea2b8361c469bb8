// blip/backend/cpu/half_gemm.hpp — fp16 products on CPUs with AVX512-FP16: linear layers and GEMMs.
//
// Contract:
// - f16_products_available(): this CPU has AVX512-FP16, the active instruction set is avx512
//   (BLIP_CPU_ISA / set_isa can turn it off) and the library was compiled by GCC ≥ 12 (clang 14
//   has no AVX512-FP16 intrinsics; without them the functions below pack nothing and gemm_f16
//   multiplies in float).
// - pack_linear_f16(w, out, in): the float weight w [out, in] rounded to fp16 once, each output
//   channel scaled by a power of two, in panels of 32 output columns; empty where not available or
//   where w holds a non-finite value or one of magnitude 2^64 or more.
// - linear_f16_packed(x, rows, in, packed, w, out, bias, y): y = x · wᵀ + bias with x rounded to
//   fp16 per call, each row scaled by a power of two.
// - gemm_f16(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, c, ldc): c [m, n] = op(a) · op(b)
//   (+ bias per column where given) for float a [m, k] (stored [k, m] with trans_a) and b [k, n]
//   (stored [n, k] with trans_b), both rounded to fp16 per call: the training products (weights
//   that change every step, gradients).
// - Numerics, all three: every row of the left operand and every column of the right one is
//   scaled by a power of two so that its largest |value| lies in [8, 16) (exact: only exponents
//   change) before rounding to fp16, and unscaled in float at the end. Products are then below 256
//   and a lane's run of at most 64 fp16 products below 16384: fp16 cannot overflow, whatever the
//   data's range, and gradients of 1e-6 keep fp16's 11 bits instead of falling into its
//   subnormals. Each output lane multiplies and adds in fp16 for runs of at most 64 products (half
//   the k values of a 128-wide window: the even and the odd ones go to separate lanes), then the
//   run is added to float accumulators; the bias is added in float. Relative error about 6e-4 of
//   the output's scale at K = 768, 9e-4 at K = 3072 where products have mixed signs, as with
//   trained weights (the bf16 product's is ~2e-3); a run of 64 same-signed products can drift by
//   up to 64 half-ulps of fp16 (~1.5 %; 0.75 % in the kernel test's run of equal ones). Scales stay
//   within 2^±60 (the row's and the column's unscaling, applied one after the other, can then
//   neither overflow nor underflow where the float result does not): a row or column whose largest
//   |value| is below 2^-57 is scaled by 2^60 only, and values below ~2^-74 of it flush to zero.
//   Where an operand holds a non-finite value or one of magnitude 2^64 or more, the product is
//   computed in float, so NaN and infinity propagate as they would there.
// Why: an Intel core with AVX512-FP16 but no AMX exposed (the Xeon of docs/performance.md) runs
// fp16 FMAs at 2.15x its float rate (32 lanes per instruction at the same throughput) while its bf16
// dot products (VDPBF16PS, what oneDNN 2.6's bf16 matmul uses) run at half the float rate; oneDNN
// 2.6 has no fp16 matmul on CPUs. Accumulating a whole row in fp16 would lose ~1 % at K = 768;
// runs of 64 keep the error below bf16's, and the float additions between runs (two conversions
// and two adds per 64 FMAs) cost ~11 % of the FMA ports (runs of 32: twice that; the GEMM was
// 4-17 % slower). The left operand is broadcast a dword (two k values) at a time: a 16-bit
// broadcast from memory costs a shuffle uop on the FMA port, a 32-bit one does not. The scaling
// replaced a range guard that sent a layer to float where a run could overflow: it costs one
// more pass over each row (in L1) and one multiply per output vector. An output of 2 MiB or more
// (a core's L2) is written with non-temporal stores: an ordinary store first reads its line from
// memory, and those reads slowed the tiles by 10-15 % wherever the output was not already cached
// (BLIP's 2308- and 4616-row products: 1.63-1.68x fp32 before, 1.84-1.94x after).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/gemm.hpp"
#include "blip/backend/cpu/isa.hpp"
#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/error.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && !defined(__CUDACC__)
#define BLIP_HAVE_F16_GEMM 1
#include <immintrin.h>
#else
#define BLIP_HAVE_F16_GEMM 0
#endif

namespace blip::cpu {

namespace half_detail {
constexpr int64_t kPanel = 32;  // output columns per panel: two zmm of 16 columns x 2 k parities
constexpr int64_t kRun = 64;    // k pairs (a window of 128 k) added in fp16 before the float accumulators
constexpr int kRows = 12;       // rows per tile (12 x 32 outputs: 24 fp16 accumulators in registers)
constexpr int64_t kAhead = 8;   // pairs of the panel prefetched ahead (+0-9 % measured); also its padding
constexpr int64_t kStreamBytes = int64_t{2} << 20;  // outputs from this size are streamed (a core's L2)
constexpr int kTop = 4;         // a scaled row or column has max |v| in [2^(kTop-1), 2^kTop)
constexpr int kMaxShift = 60;   // scales within 2^±60: |v| ≥ 2^64 takes the float path, rows or
                                // columns below 2^-57 are scaled by 2^60 only (see the contract)

// The right operand: [panels][pairs][64] halves (half h: columns 16h..16h+15, column, k parity),
// then kAhead x 64 zeros so the last prefetch stays inside; and 1 / (each column's scale).
struct HalfPanels {
  static constexpr uint32_t kTag = 0x50363146;  // "F16P": first member, checked by linear_f16_packed
  uint32_t tag = kTag;
  std::vector<uint16_t> data;
  std::vector<float> unscale;  // [panels * 32]
  int64_t out = 0, in = 0, pairs = 0, panels = 0;
};

// The power of two s with max_abs · s in [2^(kTop-1), 2^kTop) (1 for zero; at most 2^kMaxShift),
// and 1 / s; false where max_abs is not finite or at least 2^(kMaxShift + kTop).
inline bool scale_for(float max_abs, float& scale, float& unscale) {
  if (!(max_abs <= 3.0e38f)) return false;
  if (max_abs == 0.0f) {
    scale = unscale = 1.0f;
    return true;
  }
  int e = 0;
  (void)std::frexp(max_abs, &e);  // max_abs = f · 2^e, f in [0.5, 1)
  const int shift = std::min(kTop - e, kMaxShift);
  if (shift < -kMaxShift) return false;
  scale = std::ldexp(1.0f, shift);
  unscale = std::ldexp(1.0f, -shift);
  return true;
}
}  // namespace half_detail

inline bool f16_products_available() {
#if BLIP_HAVE_F16_GEMM
  static const bool cpu_has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512fp16") != 0;
  }();
  return cpu_has && active_isa() == Isa::avx512;
#else
  return false;
#endif
}

}  // namespace blip::cpu

#if BLIP_HAVE_F16_GEMM
#pragma GCC push_options
#pragma GCC target("avx512fp16,avx512f,avx512bw,avx512dq,avx512vl,f16c,fma")
// GCC 12 reports the placeholder operand of its own masked builtins (extract, max, cvtps_ph) as
// maybe uninitialised once they are inlined here (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace blip::cpu::f16 {

using half_detail::kPanel;
using half_detail::kRows;

inline __mmask16 first(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}
constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// max |x| over n floats; +inf where one is NaN or infinite.
inline float max_abs(const float* x, int64_t n) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 m = _mm512_setzero_ps();
  __mmask16 unordered = 0;
  for (int64_t k = 0; k < n; k += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(first(n - k), x + k);
    m = _mm512_max_ps(m, _mm512_andnot_ps(sign, v));
    unordered |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  return unordered ? INFINITY : _mm512_reduce_max_ps(m);
}

// Columnwise max |x| of columns [c0, c1) of a [rows, ·] matrix (row stride ld) into out[0, c1 - c0),
// row by row (a column strip walked downwards defeats the prefetchers); false where one is NaN.
inline bool column_max_abs(const float* x, int64_t rows, int64_t c0, int64_t c1, int64_t ld, float* out) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  std::fill(out, out + (c1 - c0), 0.0f);
  __mmask16 unordered = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = c0; j < c1; j += 16) {
      const __mmask16 mask = first(c1 - j);
      const __m512 v = _mm512_maskz_loadu_ps(mask, x + r * ld + j);
      const __m512 m = _mm512_max_ps(_mm512_maskz_loadu_ps(mask, out + (j - c0)), _mm512_andnot_ps(sign, v));
      _mm512_mask_storeu_ps(out + (j - c0), mask, m);
      unordered |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
  return unordered == 0;
}

// fp16 bits of x · scale for n floats into dst, padded with zeros to `padded`.
inline void convert_row(const float* x, int64_t n, float scale, uint16_t* dst, int64_t padded) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t k = 0; k < padded; k += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(first(n - k), x + k), s);
    _mm256_mask_storeu_epi16(dst + k, first(padded - k), _mm512_cvtps_ph(v, kRound));
  }
}

// Sixteen dwords (lo_k, hi_k) from two rows' 16 floats, each column scaled: fp16 of lo in the low
// half of each dword, of hi in the high one.
inline __m512i pair_dwords(__m512 lo, __m512 hi, __m512 scale) {
  const __m512i l = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(_mm512_mul_ps(lo, scale), kRound));
  const __m512i h = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(_mm512_mul_ps(hi, scale), kRound));
  return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

inline __m512 low_to_float(__m512h v) { return _mm512_cvtxph_ps(_mm512_castph512_ph256(v)); }
inline __m512 high_to_float(__m512h v) {
  return _mm512_cvtxph_ps(_mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(v), 1)));
}

// The left operand in fp16: either rows of `ld` dwords (two halves each: k = 2q, 2q + 1), or packed
// in tiles of kRows rows, [tile][pair][row] (then zero rows pad the last tile).
struct Left {
  const uint32_t* data = nullptr;
  bool packed = false;
  int64_t ld = 0;                  // dwords per row (rows layout)
  const float* unscale = nullptr;  // [rows]: 1 / each row's scale
};

// y[r, 0..cols) = (a[r] · panel) · unscale_r · unscale_c + bias for the tile's rows r < rows_valid.
// b: one panel, `pairs` x 64 halves (and kAhead x 64 readable after it). Float accumulators (in
// memory: only the fp16 ones fit in registers): per row four zmm, (16 columns of half 0 or 1) x
// (lanes 0-15 or 16-31 of the fp16 one), each lane one (column, k parity).
template <bool Packed, bool Stream, int... R>
inline void tile(std::integer_sequence<int, R...>, const uint32_t* a, int64_t lda, int rows_valid,
                 const float* row_unscale, const uint16_t* b, int64_t pairs, const float* col_unscale,
                 const float* bias, float* y, int64_t ldy, int cols) {
  constexpr int rows = sizeof...(R);
  // Rows layout: rows past the end read the last valid one (results not stored): x needs no padding.
  const uint32_t* ar[rows] = {(a + (Packed ? R : std::min(R, rows_valid - 1) * lda))...};
  const int64_t step = Packed ? rows : 1;  // dwords from one pair to the next
  __m512 f[rows][4];
  __m512h h0[rows], h1[rows];
  ((f[R][0] = f[R][1] = f[R][2] = f[R][3] = _mm512_setzero_ps()), ...);
  for (int64_t q0 = 0; q0 < pairs; q0 += half_detail::kRun) {
    const int64_t q1 = std::min(pairs, q0 + half_detail::kRun);
    ((h0[R] = _mm512_setzero_ph(), h1[R] = _mm512_setzero_ph()), ...);
    for (int64_t q = q0; q < q1; ++q) {
      const __m512h b0 = _mm512_castsi512_ph(_mm512_loadu_si512(b + q * 64));
      const __m512h b1 = _mm512_castsi512_ph(_mm512_loadu_si512(b + q * 64 + 32));
      _mm_prefetch(reinterpret_cast<const char*>(b + (q + half_detail::kAhead) * 64), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + (q + half_detail::kAhead) * 64 + 32), _MM_HINT_T0);
      ((h0[R] = _mm512_fmadd_ph(_mm512_castsi512_ph(_mm512_set1_epi32(static_cast<int>(ar[R][q * step]))), b0, h0[R]),
        h1[R] = _mm512_fmadd_ph(_mm512_castsi512_ph(_mm512_set1_epi32(static_cast<int>(ar[R][q * step]))), b1, h1[R])),
       ...);
    }
    ((f[R][0] = _mm512_add_ps(f[R][0], low_to_float(h0[R])), f[R][1] = _mm512_add_ps(f[R][1], high_to_float(h0[R])),
      f[R][2] = _mm512_add_ps(f[R][2], low_to_float(h1[R])), f[R][3] = _mm512_add_ps(f[R][3], high_to_float(h1[R]))),
     ...);
  }
  // Lane 2c + e of f[r][2h + i] holds column 16h + 8i + c, parity e: add the parities.
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __mmask16 m0 = first(cols), m1 = first(cols - 16);
  const bool high = cols > 16;  // (bias + 16 is not read otherwise)
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias && high ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  const __m512 unscale0 = _mm512_loadu_ps(col_unscale), unscale1 = _mm512_loadu_ps(col_unscale + 16);
  const bool stream = Stream && cols == kPanel;  // whole lines only
  for (int r = 0; r < rows && r < rows_valid; ++r) {
    const __m512 ur = _mm512_set1_ps(row_unscale[r]);
    const __m512 c0 = _mm512_add_ps(_mm512_permutex2var_ps(f[r][0], even, f[r][1]),
                                    _mm512_permutex2var_ps(f[r][0], odd, f[r][1]));
    const __m512 y0 = _mm512_fmadd_ps(_mm512_mul_ps(c0, ur), unscale0, bias0);
    if (stream) _mm512_stream_ps(y + r * ldy, y0);
    else _mm512_mask_storeu_ps(y + r * ldy, m0, y0);
    if (high) {
      const __m512 c1 = _mm512_add_ps(_mm512_permutex2var_ps(f[r][2], even, f[r][3]),
                                      _mm512_permutex2var_ps(f[r][2], odd, f[r][3]));
      const __m512 y1 = _mm512_fmadd_ps(_mm512_mul_ps(c1, ur), unscale1, bias1);
      if (stream) _mm512_stream_ps(y + r * ldy + 16, y1);
      else _mm512_mask_storeu_ps(y + r * ldy + 16, m1, y1);
    }
  }
}

// The right operand B [k, n] (logical) as panels, from b stored [n, k] (`n_major`, a linear
// weight) or [k, n], row stride ld; false where it holds a non-finite value or one of 2^64 or more.
inline bool pack_into(const float* b, bool n_major, int64_t k, int64_t n, int64_t ld, half_detail::HalfPanels& p) {
  using namespace half_detail;
  p.out = n;
  p.in = k;
  p.pairs = (k + 1) / 2;
  p.panels = (n + kPanel - 1) / kPanel;
  const size_t halves = static_cast<size_t>((p.panels * p.pairs + kAhead) * 64);
  if (p.data.size() < halves) p.data.resize(halves);
  std::fill(p.data.begin() + static_cast<std::ptrdiff_t>(p.panels * p.pairs * 64), p.data.begin() +
            static_cast<std::ptrdiff_t>(halves), uint16_t{0});
  p.unscale.assign(static_cast<size_t>(p.panels * kPanel), 1.0f);
  std::vector<float> scale(static_cast<size_t>(p.panels * kPanel), 0.0f);  // 0 for padded columns
  std::atomic<bool> out_of_range{false};
  // Each column's scale (a row of b when n_major).
  if (n_major) {
    parallel_for(n, k, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        if (!scale_for(max_abs(b + j * ld, k), scale[static_cast<size_t>(j)], p.unscale[static_cast<size_t>(j)]))
          out_of_range.store(true, std::memory_order_relaxed);
    });
  } else {
    parallel_for((n + 15) / 16, 16 * k, [&](int64_t begin, int64_t end) {
      const int64_t c0 = begin * 16, c1 = std::min(n, end * 16);
      std::vector<float> m(static_cast<size_t>(c1 - c0));
      bool ok = column_max_abs(b, k, c0, c1, ld, m.data());
      for (int64_t j = c0; ok && j < c1; ++j)
        ok = scale_for(m[static_cast<size_t>(j - c0)], scale[static_cast<size_t>(j)], p.unscale[static_cast<size_t>(j)]);
      if (!ok) out_of_range.store(true, std::memory_order_relaxed);
    });
  }
  if (out_of_range.load()) return false;
  auto* dst = reinterpret_cast<uint32_t*>(p.data.data());  // 32 dwords per (panel, pair)
  if (!n_major) {  // rows 2q and 2q + 1 of b, 16 columns each: one (panel, pair, half) slot; by blocks
    // of 16 pairs, so the rows read stay in cache while every (panel, half) of the range is written
    parallel_for(p.panels * 2, 16 * k, [&](int64_t begin, int64_t end) {
      for (int64_t q0 = 0; q0 < p.pairs; q0 += 16)
        for (int64_t ph = begin; ph < end; ++ph) {
          const int64_t panel = ph / 2, half = ph % 2, j0 = panel * kPanel + half * 16;
          const __mmask16 mask = first(n - j0);
          const __m512 s = _mm512_loadu_ps(scale.data() + j0);
          uint32_t* out = dst + panel * p.pairs * 32 + half * 16;
          for (int64_t q = q0; q < std::min(p.pairs, q0 + 16); ++q) {
            const __m512 lo = _mm512_maskz_loadu_ps(mask, b + 2 * q * ld + j0);
            const __m512 hi = 2 * q + 1 < k ? _mm512_maskz_loadu_ps(mask, b + (2 * q + 1) * ld + j0) : _mm512_setzero_ps();
            _mm512_storeu_si512(out + q * 32, pair_dwords(lo, hi, s));
          }
        }
    });
    return true;
  }
  parallel_for(p.panels * 2, 16 * k, [&](int64_t begin, int64_t end) {
    alignas(64) uint32_t block[16 * 16];
    const __m512i across = _mm512_mullo_epi32(_mm512_set1_epi32(16), _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8,
                                                                                      7, 6, 5, 4, 3, 2, 1, 0));
    for (int64_t ph = begin; ph < end; ++ph) {  // (panel, half): 16 columns
      const int64_t panel = ph / 2, half = ph % 2, j0 = panel * kPanel + half * 16;
      const int64_t cols = std::clamp<int64_t>(n - j0, 0, 16);
      uint32_t* out = dst + panel * p.pairs * 32 + half * 16;
      // n_major: 16 rows of b (columns of B) x 16 pairs, converted, then transposed by gathers.
      for (int64_t q0 = 0; q0 < p.pairs; q0 += 16) {
        for (int64_t c = 0; c < 16; ++c) {
          __m512i v = _mm512_setzero_si512();
          if (c < cols) {
            const float* row = b + (j0 + c) * ld + 2 * q0;
            const __m512 s = _mm512_set1_ps(scale[static_cast<size_t>(j0 + c)]);
            const __m256i lo = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_maskz_loadu_ps(first(k - 2 * q0), row), s), kRound);
            const __m256i hi =
                _mm512_cvtps_ph(_mm512_mul_ps(_mm512_maskz_loadu_ps(first(k - 2 * q0 - 16), row + 16), s), kRound);
            v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);  // pairs q0..q0+15 in order
          }
          _mm512_store_si512(block + c * 16, v);
        }
        for (int64_t q = q0; q < std::min(p.pairs, q0 + 16); ++q)
          _mm512_storeu_si512(out + q * 32, _mm512_i32gather_epi32(across, block + (q - q0), 4));
      }
    }
  });
  return true;
}

// The left operand A [m, k] (logical) in fp16 with each row's scale, from a stored [m, k]
// (`k_major` false: rows layout) or [k, m] (packed in tiles); false where it holds a non-finite
// value or one of 2^64 or more. Buffers grow to the largest call and are reused.
inline bool convert_left(const float* a, bool k_major, int64_t m, int64_t k, int64_t ld, std::vector<uint32_t>& data,
                         std::vector<float>& unscale, Left& left) {
  using half_detail::scale_for;
  const int64_t pairs = (k + 1) / 2, tiles = (m + kRows - 1) / kRows;
  const size_t dwords = static_cast<size_t>(k_major ? tiles * kRows * pairs : m * pairs);
  if (data.size() < dwords) data.resize(dwords);
  if (unscale.size() < static_cast<size_t>(tiles * kRows)) unscale.resize(static_cast<size_t>(tiles * kRows));
  std::atomic<bool> out_of_range{false};
  left = Left{data.data(), k_major, pairs, unscale.data()};
  if (!k_major) {
    parallel_for(m, k, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float s = 1;
        if (!scale_for(max_abs(a + i * ld, k), s, unscale[static_cast<size_t>(i)]))
          out_of_range.store(true, std::memory_order_relaxed);
        else
          convert_row(a + i * ld, k, s, reinterpret_cast<uint16_t*>(data.data() + i * pairs), 2 * pairs);
      }
    });
    return !out_of_range.load();
  }
  // k_major: each thread takes a range of tiles (columns of a): their maxima row by row, then
  // blocks of 16 pairs (32 rows of a, in cache) written to every tile of the range.
  parallel_for(tiles, kRows * k, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kRows, c1 = std::min(m, end * kRows);
    std::vector<float> scale(static_cast<size_t>(end - begin) * kRows + 16, 0.0f);  // 0 past m
    bool ok = column_max_abs(a, k, c0, c1, ld, scale.data());
    for (int64_t i = c0; ok && i < c1; ++i)
      ok = scale_for(scale[static_cast<size_t>(i - c0)], scale[static_cast<size_t>(i - c0)],
                     unscale[static_cast<size_t>(i)]);
    if (!ok) {
      out_of_range.store(true, std::memory_order_relaxed);
      return;
    }
    for (int64_t q0 = 0; q0 < pairs; q0 += 16)
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i0 = t * kRows;
        const __mmask16 mask = first(std::min<int64_t>(kRows, m - i0));
        const __m512 s = _mm512_loadu_ps(scale.data() + (i0 - c0));
        uint32_t* out = data.data() + t * kRows * pairs;
        for (int64_t q = q0; q < std::min(pairs, q0 + 16); ++q) {
          const __m512 lo = _mm512_maskz_loadu_ps(mask, a + 2 * q * ld + i0);
          const __m512 hi = 2 * q + 1 < k ? _mm512_maskz_loadu_ps(mask, a + (2 * q + 1) * ld + i0) : _mm512_setzero_ps();
          _mm512_mask_storeu_epi32(out + q * kRows, __mmask16((1u << kRows) - 1), pair_dwords(lo, hi, s));
        }
      }
  });
  return !out_of_range.load();
}

// y [m, n] (row stride ldy) = left · panels, unscaled, + bias.
inline void multiply(const Left& a, int64_t m, const half_detail::HalfPanels& w, const float* bias, float* y,
                     int64_t ldy) {
  using namespace half_detail;
  // Tiles of kRows rows, in chunks whose fp16 copy fits in L2 (~512 KB); within a chunk a panel
  // serves all the chunk's tiles before the next panel: both operands stay in cache. Tasks are
  // (chunk, panel, tile) over real tiles only, so two threads get equal work.
  const int64_t pairs = w.pairs;
  const int64_t tiles = (m + kRows - 1) / kRows;
  const int64_t chunks = std::clamp<int64_t>((m * pairs * 4 + (512 << 10) - 1) / (512 << 10), 1, tiles);
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;  // tiles per chunk; the last may have fewer
  // An output larger than a core's L2 is written around the caches (non-temporal stores of whole
  // 64-byte lines): otherwise every tile's 24 stores first read their lines from memory, and those
  // reads cost the tiles 10-15 % (docs/performance.md); a pass reading the output right after
  // took no longer.
  const bool stream = m * w.out * int64_t{sizeof(float)} >= kStreamBytes &&
                      reinterpret_cast<uintptr_t>(y) % 64 == 0 && ldy % 16 == 0;
  const auto sweep = [&]<bool Stream>(std::bool_constant<Stream>) {
    parallel_for(tiles * w.panels, kRows * kPanel * w.in, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t chunk = t / (per_chunk * w.panels), first_tile = chunk * per_chunk;
        const int64_t in_chunk = std::min(per_chunk, tiles - first_tile), local = t - first_tile * w.panels;
        const int64_t panel = local / in_chunk, tile_index = first_tile + local % in_chunk, i0 = tile_index * kRows;
        const int valid = static_cast<int>(std::min<int64_t>(kRows, m - i0));
        const int cols = static_cast<int>(std::min(kPanel, w.out - panel * kPanel));
        const uint16_t* b = w.data.data() + panel * pairs * 64;
        const float* bias_p = bias ? bias + panel * kPanel : nullptr;
        const float* unscale = w.unscale.data() + panel * kPanel;
        float* yp = y + i0 * ldy + panel * kPanel;
        if (a.packed)
          tile<true, Stream>(std::make_integer_sequence<int, kRows>{}, a.data + tile_index * kRows * pairs, 0, valid,
                             a.unscale + i0, b, pairs, unscale, bias_p, yp, ldy, cols);
        else
          tile<false, Stream>(std::make_integer_sequence<int, kRows>{}, a.data + i0 * a.ld, a.ld, valid,
                              a.unscale + i0, b, pairs, unscale, bias_p, yp, ldy, cols);
      }
      if constexpr (Stream) _mm_sfence();  // the streamed lines are visible before the threads join
    });
  };
  if (stream) sweep(std::true_type{});
  else sweep(std::false_type{});
}

inline std::shared_ptr<half_detail::HalfPanels> pack(const float* w, int64_t out, int64_t in) {
  auto p = std::make_shared<half_detail::HalfPanels>();
  if (!pack_into(w, true, in, out, in, *p)) return nullptr;  // a weight fp16 cannot scale
  return p;
}

// false where x holds a value the kernel cannot scale (the caller computes in float instead).
// The per-thread operand buffers below are kept between calls (no allocation per call) up to
// this size; a larger one (a call far beyond BLIP's shapes: BLIP-base training needs ~14 MB) is
// given back after its call.
constexpr size_t kKeepBytes = size_t{64} << 20;
template <class V>
void trim(V& v) {
  if (v.capacity() * sizeof(typename V::value_type) > kKeepBytes) V().swap(v);
}

inline bool linear(const float* x, int64_t rows, const half_detail::HalfPanels& w, const float* bias, float* y) {
  thread_local std::vector<uint32_t> x16;
  thread_local std::vector<float> unscale;
  Left left;
  const bool ok = convert_left(x, false, rows, w.in, w.in, x16, unscale, left);
  if (ok) multiply(left, rows, w, bias, y, w.out);
  trim(x16);
  return ok;
}

inline bool gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
  thread_local std::vector<uint32_t> a16;
  thread_local std::vector<float> unscale;
  thread_local half_detail::HalfPanels panels;
  Left left;
  const bool ok = convert_left(a, trans_a, m, k, lda, a16, unscale, left) && pack_into(b, trans_b, k, n, ldb, panels);
  if (ok) multiply(left, m, panels, bias, c, ldc);
  trim(a16);
  trim(panels.data);
  return ok;
}

}  // namespace blip::cpu::f16
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace blip::cpu {

inline backend::PackedWeight pack_linear_f16(const float* w, int64_t out, int64_t in) {
#if BLIP_HAVE_F16_GEMM
  if (out > 0 && in > 0 && f16_products_available())
    if (std::shared_ptr<half_detail::HalfPanels> p = f16::pack(w, out, in)) return {std::move(p), out, in};
#else
  (void)w, (void)out, (void)in;
#endif
  return {};
}

// y = x · wᵀ + bias through `packed` (pack_linear_f16 of w [out, in]); in float from w where x
// holds a non-finite value.
inline void linear_f16_packed(const float* x, int64_t rows, int64_t in, const backend::PackedWeight& packed,
                              const float* w, int64_t out, const float* bias, float* y) {
  BLIP_CHECK(packed && packed.out == out && packed.in == in, "linear_f16_packed: the packed weight is [",
             packed.out, ", ", packed.in, "], the call's [", out, ", ", in, "]");
  const auto& panels = *static_cast<const half_detail::HalfPanels*>(packed.layout.get());
  BLIP_CHECK(panels.tag == half_detail::HalfPanels::kTag, "linear_f16_packed: the weight was not packed by "
             "pack_linear_f16");
  if (rows == 0) return;
#if BLIP_HAVE_F16_GEMM
  if (f16_products_available() && f16::linear(x, rows, panels, bias, y)) return;  // (the ISA may have changed)
#endif
  linear<float>(x, rows, in, w, out, bias, y);
}

// c [m, n] = op(a) · op(b) (+ bias[j] in column j where bias is given) in fp16 products (the
// contract above); in float where not available or where an operand holds a non-finite value.
inline void gemm_f16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                     const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#if BLIP_HAVE_F16_GEMM
  if (k > 0 && f16_products_available() && f16::gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, c, ldc)) return;
#endif
  gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  if (bias)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += bias[j];
}

}  // namespace blip::cpu
