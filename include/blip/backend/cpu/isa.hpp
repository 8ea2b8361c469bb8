// blip/backend/cpu/isa.hpp — run-time choice of the instruction set for the project's own float
// kernels.
//
// Kernels with SIMD versions: exp, GELU and its backward, softmax and log_softmax and their
// backwards, layer norm forward and backward, L2 normalisation forward and backward, row dot
// products (the exact search scan), scale, contiguous binary ops, sums over an axis, AdamW, the
// momentum EMA, float -> bf16, per-row int8 quantisation and the int8 product's dequantisation.
//
// Contract:
// - One binary carries an AVX-512 (F/BW/DQ/VL), an AVX2+FMA and a portable version of each
//   kernel; `active_isa()` picks the widest the CPU has on first use. The environment variable
//   BLIP_CPU_ISA=portable|avx2|avx512 (read once) or `set_isa()` (tests, benchmarks) choose
//   another; asking for one the CPU lacks throws blip::Error naming both.
// - Nothing depends on the consumer's -march: the SIMD versions are compiled for their own
//   targets (GCC's `#pragma GCC target`, clang's `#pragma clang attribute`), the portable one
//   with whatever flags the program uses. double always takes the portable version.
// - The SIMD and portable versions compute the same formulas (simd/kernels.inc); results agree
//   to a few ulp, not bit for bit (sums are added in another order).
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/elementwise.hpp"
#include "blip/backend/cpu/optim.hpp"
#include "blip/backend/cpu/parallel.hpp"
#include "blip/backend/cpu/reduce.hpp"
#include "blip/backend/cpu/rowwise.hpp"
#include "blip/core/dtype.hpp"
#include "blip/core/error.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define BLIP_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define BLIP_HAVE_X86_SIMD 0
#endif

namespace blip::cpu {

enum class Isa { portable, avx2, avx512 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "portable";
  }
}

// The widest instruction set this CPU runs (and the OS saves the registers of).
inline Isa detected_isa() {
#if BLIP_HAVE_X86_SIMD
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::portable;
  }();
  return isa;
#else
  return Isa::portable;
#endif
}

inline Isa parse_isa(std::string_view name) {
  if (name == "portable") return Isa::portable;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  fail("BLIP_CPU_ISA: '", std::string(name), "' is not one of portable, avx2, avx512");
}

namespace detail {
inline std::atomic<int>& isa_choice() {
  static std::atomic<int> choice{-1};  // -1: not chosen yet
  return choice;
}
}  // namespace detail

// Chooses the kernels' instruction set for the whole process.
inline void set_isa(Isa isa) {
  BLIP_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()), "set_isa: this CPU runs ",
             isa_name(detected_isa()), " at most, not ", isa_name(isa));
  detail::isa_choice().store(static_cast<int>(isa), std::memory_order_relaxed);
}

inline Isa active_isa() {
  int choice = detail::isa_choice().load(std::memory_order_relaxed);
  if (choice < 0) {
    const char* env = std::getenv("BLIP_CPU_ISA");
    Isa isa = detected_isa();
    if (env && *env) {
      isa = parse_isa(env);
      BLIP_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()), "BLIP_CPU_ISA=", env, ": this CPU runs ",
                 isa_name(detected_isa()), " at most");
    }
    choice = static_cast<int>(isa);
    detail::isa_choice().store(choice, std::memory_order_relaxed);
  }
  return static_cast<Isa>(choice);
}

}  // namespace blip::cpu

#if BLIP_HAVE_X86_SIMD
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
namespace blip::cpu::avx2 {
#include "blip/backend/cpu/simd/vec256.inc"
#include "blip/backend/cpu/simd/kernels.inc"
}  // namespace blip::cpu::avx2
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#endif
namespace blip::cpu::avx512 {
#include "blip/backend/cpu/simd/vec512.inc"
#include "blip/backend/cpu/simd/kernels.inc"
}  // namespace blip::cpu::avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// The dispatch: float goes to the active instruction set's version, everything else (and a
// portable choice) to the Eigen version.
namespace blip::cpu::isa {

#if BLIP_HAVE_X86_SIMD
#define BLIP_ISA_DISPATCH(T, call_simd, call_portable)     \
  do {                                                     \
    if constexpr (std::is_same_v<T, float>) {              \
      switch (active_isa()) {                              \
        case Isa::avx512: { namespace simd = avx512; call_simd; return; } \
        case Isa::avx2: { namespace simd = avx2; call_simd; return; }     \
        default: break;                                    \
      }                                                    \
    }                                                      \
    call_portable;                                         \
  } while (0)
#else
#define BLIP_ISA_DISPATCH(T, call_simd, call_portable) call_portable
#endif

template <class T>
void exp(const T* x, T* y, int64_t n) {
  BLIP_ISA_DISPATCH(T, simd::exp(x, y, n), cpu::exp(x, y, n));
}
template <class T>
void gelu(const T* x, T* y, int64_t n) {
  BLIP_ISA_DISPATCH(T, simd::gelu(x, y, n), cpu::gelu(x, y, n));
}
template <class T>
void gelu_backward(const T* x, const T* gy, T* gx, int64_t n) {
  BLIP_ISA_DISPATCH(T, simd::gelu_backward(x, gy, gx, n), cpu::gelu_backward(x, gy, gx, n));
}
template <class T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(T, simd::softmax_rows(x, y, rows, cols), cpu::softmax_rows(x, y, rows, cols));
}
template <class T>
void log_softmax_rows(const T* x, T* y, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(T, simd::log_softmax_rows(x, y, rows, cols), cpu::log_softmax_rows(x, y, rows, cols));
}
template <class T>
void log_softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(T, simd::log_softmax_backward_rows(y, gy, gx, rows, cols),
                    cpu::log_softmax_backward_rows(y, gy, gx, rows, cols));
}
template <class T>
void layer_norm_rows(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                     double eps) {
  BLIP_ISA_DISPATCH(T, simd::layer_norm_rows(x, weight, bias, y, mean, rstd, rows, cols, eps),
                    cpu::layer_norm_rows(x, weight, bias, y, mean, rstd, rows, cols, eps));
}

template <class T>
void softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(T, simd::softmax_backward_rows(y, gy, gx, rows, cols), cpu::softmax_backward_rows(y, gy, gx, rows, cols));
}
template <class T>
void layer_norm_backward_rows(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy, T* gx,
                              T* gweight, T* gbias, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(T, simd::layer_norm_backward_rows(x, weight, mean, rstd, gy, gx, gweight, gbias, rows, cols),
                    cpu::layer_norm_backward_rows(x, weight, mean, rstd, gy, gx, gweight, gbias, rows, cols));
}
template <class T>
void dot_rows(const T* x, int64_t m, int64_t d, const T* q, T* out) {
  BLIP_ISA_DISPATCH(T, simd::dot_rows(x, m, d, q, out), cpu::dot_rows(x, m, d, q, out));
}
template <class T>
void l2_normalize_rows(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
  BLIP_ISA_DISPATCH(T, simd::l2_normalize_rows(x, y, norms, rows, cols, eps), cpu::l2_normalize_rows(x, y, norms, rows, cols, eps));
}
template <class T>
void l2_normalize_backward_rows(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols, double eps) {
  BLIP_ISA_DISPATCH(T, simd::l2_normalize_backward_rows(y, norms, gy, gx, rows, cols, eps),
                    cpu::l2_normalize_backward_rows(y, norms, gy, gx, rows, cols, eps));
}
template <class T>
void scale(const T* x, T* y, int64_t n, T factor) {
  BLIP_ISA_DISPATCH(T, simd::scale(x, y, n, factor), cpu::scale(x, y, n, factor));
}
template <class T>
void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
  BLIP_ISA_DISPATCH(T, simd::sum_middle(x, outer, r, inner, out), cpu::sum_middle(x, outer, r, inner, out));
}
template <class T>
void adamw(T* p, T* m, T* v, const T* g, int64_t n, const backend::AdamWCoefficients<T>& c) {
  BLIP_ISA_DISPATCH(T, simd::adamw(p, m, v, g, n, c), cpu::adamw(p, m, v, g, n, c));
}
template <class T>
void ema(T* m, const T* v, int64_t n, T keep, T take) {
  BLIP_ISA_DISPATCH(T, simd::ema(m, v, n, keep, take), cpu::ema(m, v, n, keep, take));
}
// Contiguous operands only (op: 0 add, 1 sub, 2 mul, 3 div); false where this has no fast path.
template <class T>
bool binary_flat(int op, const T* a, const T* b, T* out, int64_t n) {
#if BLIP_HAVE_X86_SIMD
  if constexpr (std::is_same_v<T, float>) {
    switch (active_isa()) {
      case Isa::avx512: avx512::binary_flat(op, a, b, out, n); return true;
      case Isa::avx2: avx2::binary_flat(op, a, b, out, n); return true;
      default: break;
    }
  }
#endif
  (void)op, (void)a, (void)b, (void)out, (void)n;
  return false;
}

inline void to_bf16_portable(const float* x, bf16* y, int64_t n) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = bf16(x[i]);
  });
}
inline void to_bf16(const float* x, bf16* y, int64_t n) {
  BLIP_ISA_DISPATCH(float, simd::to_bf16(x, y, n), to_bf16_portable(x, y, n));
}

inline void quantize_rows_s8(const float* x, int8_t* q, float* scale, int64_t rows, int64_t cols) {
  BLIP_ISA_DISPATCH(float, simd::quantize_rows_s8(x, q, scale, rows, cols), cpu::quantize_rows_s8(x, q, scale, rows, cols));
}
inline void dequantize_rows(float* y, const float* row_scale, const float* col_scale, const float* bias, int64_t rows,
                            int64_t cols) {
  BLIP_ISA_DISPATCH(float, simd::dequantize_rows(y, row_scale, col_scale, bias, rows, cols),
                    cpu::dequantize_rows(y, row_scale, col_scale, bias, rows, cols));
}

#undef BLIP_ISA_DISPATCH

}  // namespace blip::cpu::isa
