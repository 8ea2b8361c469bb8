// blip/backend/cpu/half_gemm.hpp — fp16 linear layers on CPUs with AVX512-FP16.
//
// Contract:
// - f16_products_available(): this CPU has AVX512-FP16, the active instruction set is avx512
//   (BLIP_CPU_ISA / set_isa can turn it off) and the library was compiled by GCC ≥ 12 (clang 14
//   has no AVX512-FP16 intrinsics; without them the functions below pack nothing).
// - pack_linear_f16(w, out, in): the float weight w [out, in] rounded to fp16 once, in panels of
//   32 output columns; empty where not available, or where w holds a value fp16 cannot (non-finite,
//   |w| ≥ 65504).
// - linear_f16_packed(x, rows, in, packed, w, out, bias, y): y = x · wᵀ + bias with x rounded to
//   fp16 per call. Each output lane multiplies and adds in fp16 for runs of at most 64 products
//   (half the k values of a 128-wide window: the even and the odd ones go to separate lanes), then
//   the run is added to float accumulators; the bias is added in float. Relative error about 6e-4 of
//   the output's scale at K = 768, 9e-4 at K = 3072 where products have mixed signs, as with
//   trained weights (the bf16 product's is ~2e-3); a run of 64 same-signed products can drift by up
//   to 64 half-ulps of fp16 (~1.5 %; 0.75 % in the kernel test's run of equal ones). Where x is
//   non-finite, |x| > 65504, or a run could leave fp16's range (max|w| times the largest sum of |x|
//   over the even or the odd k of one window of a row > 32768: a bound on every partial sum of a
//   lane's run), the layer is computed in float from w instead, so it never overflows silently.
// Why: an Intel core with AVX512-FP16 but no AMX exposed (the Xeon of docs/performance.md) runs
// fp16 FMAs at 2.15x its float rate (32 lanes per instruction at the same throughput) while its bf16
// dot products (VDPBF16PS, what oneDNN 2.6's bf16 matmul uses) run at half the float rate; oneDNN
// 2.6 has no fp16 matmul on CPUs. Accumulating a whole row in fp16 would lose ~1 % at K = 768;
// runs of 64 keep the error below bf16's, and the float additions between runs (two conversions
// and two adds per 64 FMAs) cost ~11 % of the FMA ports (runs of 32: twice that; the GEMM was
// 4-17 % slower). The A operand is broadcast a dword (two k values) at a time: a 16-bit broadcast from
// memory costs a shuffle uop on the FMA port, a 32-bit one does not.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
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
constexpr float kRunLimit = 32768.0f;  // max|w| * (largest window sum of |x|) stays within it (fp16 max 65504)

struct HalfPanels {
  static constexpr uint32_t kTag = 0x50363146;  // "F16P": first member, checked by linear_f16_packed
  uint32_t tag = kTag;
  std::vector<uint16_t> data;  // [panels][pairs][64]: half h (columns 16h..16h+15), column, k parity;
                               // then kAhead x 64 zeros, so the last prefetch stays inside
  int64_t out = 0, in = 0, pairs = 0, panels = 0;
  float max_abs = 0;  // of the weight
};
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

struct RowRange {
  float max_abs = 0;     // max |x|, +inf where one is NaN or infinite
  float max_window = 0;  // the largest sum of |x| over the even or the odd k of one run's window
                         // (k in [128 j, 128 j + 128)): what one lane's run adds
};

// fp16 bits of n floats (round to nearest even) into dst, padded with zeros to `padded`.
inline RowRange convert_row(const float* x, int64_t n, void* dst_bytes, int64_t padded) {
  auto* dst = static_cast<uint16_t*>(dst_bytes);  // written only by masked vector stores (may alias)
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 max_abs = _mm512_setzero_ps(), window = _mm512_setzero_ps();
  __mmask16 unordered = 0;
  float max_window = 0;
  for (int64_t k = 0; k < padded; k += 16) {
    const int64_t left = n - k;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + k);
    const __m512 a = _mm512_andnot_ps(sign, v);
    max_abs = _mm512_max_ps(max_abs, a);
    window = _mm512_add_ps(window, a);
    if ((k + 16) % (2 * half_detail::kRun) == 0 || k + 16 >= padded) {  // k is even: even lanes hold even k
      max_window = std::max({max_window, _mm512_mask_reduce_add_ps(0x5555, window),
                             _mm512_mask_reduce_add_ps(0xaaaa, window)});
      window = _mm512_setzero_ps();
    }
    unordered |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const int64_t room = padded - k;
    const __mmask16 store = room >= 16 ? __mmask16(0xffff) : __mmask16((1u << room) - 1);
    _mm256_mask_storeu_epi16(dst + k, store, h);
  }
  if (unordered) return {INFINITY, INFINITY};
  return {_mm512_reduce_max_ps(max_abs), max_window};
}

inline __m512 low_to_float(__m512h v) { return _mm512_cvtxph_ps(_mm512_castph512_ph256(v)); }
inline __m512 high_to_float(__m512h v) {
  return _mm512_cvtxph_ps(_mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(v), 1)));
}

// y[r, 0..cols) = a[r] · panel + bias for the tile's rows r < rows_valid. a: fp16 rows of `lda`
// dwords (two halves each: k = 2q, 2q + 1); b: one panel, `pairs` x 64 halves (and kAhead x 64
// readable after it). Float accumulators (in memory: only the fp16 ones fit in registers): per row
// four zmm, (16 columns of half 0 or 1) x (lanes 0-15 or 16-31 of the fp16 one), each lane one
// (column, k parity).
template <int... R>
inline void tile(std::integer_sequence<int, R...>, const uint32_t* a, int64_t lda, int rows_valid, const uint16_t* b,
                 int64_t pairs, const float* bias, float* y, int64_t ldy, int cols) {
  constexpr int rows = sizeof...(R);
  // Rows past the end read the last valid one (results not stored): no padding of x needed.
  const uint32_t* ar[rows] = {(a + std::min(R, rows_valid - 1) * lda)...};
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
      ((h0[R] = _mm512_fmadd_ph(_mm512_castsi512_ph(_mm512_set1_epi32(static_cast<int>(ar[R][q]))), b0, h0[R]),
        h1[R] = _mm512_fmadd_ph(_mm512_castsi512_ph(_mm512_set1_epi32(static_cast<int>(ar[R][q]))), b1, h1[R])),
       ...);
    }
    ((f[R][0] = _mm512_add_ps(f[R][0], low_to_float(h0[R])), f[R][1] = _mm512_add_ps(f[R][1], high_to_float(h0[R])),
      f[R][2] = _mm512_add_ps(f[R][2], low_to_float(h1[R])), f[R][3] = _mm512_add_ps(f[R][3], high_to_float(h1[R]))),
     ...);
  }
  // Lane 2c + e of f[r][2h + i] holds column 16h + 8i + c, parity e: add the parities.
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xffff) : cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1);
  const bool high = cols > 16;  // (no pointer past the arrays' ends is formed otherwise)
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias && high ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int r = 0; r < rows && r < rows_valid; ++r) {
    const __m512 c0 = _mm512_add_ps(_mm512_permutex2var_ps(f[r][0], even, f[r][1]),
                                    _mm512_permutex2var_ps(f[r][0], odd, f[r][1]));
    _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_add_ps(c0, bias0));
    if (high) {
      const __m512 c1 = _mm512_add_ps(_mm512_permutex2var_ps(f[r][2], even, f[r][3]),
                                      _mm512_permutex2var_ps(f[r][2], odd, f[r][3]));
      _mm512_mask_storeu_ps(y + r * ldy + 16, m1, _mm512_add_ps(c1, bias1));
    }
  }
}

inline std::shared_ptr<half_detail::HalfPanels> pack(const float* w, int64_t out, int64_t in) {
  auto p = std::make_shared<half_detail::HalfPanels>();
  p->out = out;
  p->in = in;
  p->pairs = (in + 1) / 2;
  p->panels = (out + half_detail::kPanel - 1) / half_detail::kPanel;
  p->data.assign(static_cast<size_t>((p->panels * p->pairs + half_detail::kAhead) * 64), 0);
  std::vector<uint16_t> row(static_cast<size_t>(p->pairs * 2));
  for (int64_t j = 0; j < out; ++j) {
    p->max_abs = std::max(p->max_abs, convert_row(w + j * in, in, row.data(), p->pairs * 2).max_abs);
    const int64_t panel = j / half_detail::kPanel, c = j % half_detail::kPanel;
    uint16_t* dst = p->data.data() + panel * p->pairs * 64 + (c / 16) * 32 + (c % 16) * 2;
    for (int64_t q = 0; q < p->pairs; ++q) {
      dst[q * 64] = row[2 * q];
      dst[q * 64 + 1] = row[2 * q + 1];
    }
  }
  if (!(p->max_abs < 65504.0f)) return nullptr;  // a weight fp16 cannot hold
  return p;
}

// false where x is out of the kernel's safe range (the caller computes in float instead).
inline bool linear(const float* x, int64_t rows, const half_detail::HalfPanels& w, const float* bias, float* y) {
  using namespace half_detail;
  const int64_t ld = w.pairs;  // dwords per row: two fp16 values each
  thread_local std::vector<uint32_t> x16;  // grows to the largest call, reused: no allocation per call
  if (x16.size() < static_cast<size_t>(rows * ld)) x16.resize(static_cast<size_t>(rows * ld));
  uint32_t* a = x16.data();
  // Every partial sum of a lane's run is at most max|w| times the sum of |x| over its parity of the
  // window (times ~1 + 2^-5 for the 66 roundings on the way): within kRunLimit it stays below fp16's
  // 65504. Never stricter than max|x| · max|w| · 64, and far looser where one activation dominates.
  std::atomic<bool> out_of_range{false};
  parallel_for(rows, w.in, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const RowRange r = convert_row(x + i * w.in, w.in, a + i * ld, 2 * ld);
      if (!(r.max_abs <= 65504.0f && r.max_window * w.max_abs <= kRunLimit))
        out_of_range.store(true, std::memory_order_relaxed);
    }
  });
  if (out_of_range.load()) return false;
  // Tiles of kRows rows, in chunks whose fp16 copy fits in L2 (~512 KB); within a chunk a panel
  // serves all the chunk's tiles before the next panel: both operands stay in cache. Tasks are
  // (chunk, panel, tile) over real tiles only, so two threads get equal work.
  const int64_t tiles = (rows + kRows - 1) / kRows;
  const int64_t chunks = std::clamp<int64_t>((rows * ld * 4 + (512 << 10) - 1) / (512 << 10), 1, tiles);
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;  // tiles per chunk; the last may have fewer
  parallel_for(tiles * w.panels, kRows * kPanel * w.in, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t chunk = t / (per_chunk * w.panels), first = chunk * per_chunk;
      const int64_t in_chunk = std::min(per_chunk, tiles - first), local = t - first * w.panels;
      const int64_t panel = local / in_chunk, i0 = (first + local % in_chunk) * kRows;
      const int valid = static_cast<int>(std::min<int64_t>(kRows, rows - i0));
      const int cols = static_cast<int>(std::min(kPanel, w.out - panel * kPanel));
      tile(std::make_integer_sequence<int, kRows>{}, a + i0 * ld, ld, valid, w.data.data() + panel * w.pairs * 64,
           w.pairs, bias ? bias + panel * kPanel : nullptr, y + i0 * w.out + panel * kPanel, w.out, cols);
    }
  });
  return true;
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

// y = x · wᵀ + bias through `packed` (pack_linear_f16 of w [out, in]); in float from w where x is
// out of fp16's safe range.
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

}  // namespace blip::cpu
