// blip/backend/cpu/gemm.hpp — the CPU GEMM engine: oneDNN for float and bf16, Eigen for double.
//
// Contract: row-major operands, op(X) = X or Xᵀ, C = alpha·op(A)·op(B) + beta·C with op(A) [m,k],
// op(B) [k,n], C [m,n]; beta = 0 never reads C (BLAS convention: NaN there is ignored). Degenerate
// sizes are handled here. `linear` is y = x·wᵀ + bias for x [rows,in], w [out,in] (bias may be
// null). `linear_bf16` takes bf16 activations and weights, accumulates in float and adds a
// float bias; `gemm_bf16` is the general bf16 product (beta = 0,
// float output); where oneDNN has no bf16 matmul (below AVX-512) both widen the bf16 operands and
// multiply in float (the same values). `pack_linear_bf16` reorders a fixed bf16 weight once into the layout the matmul
// prefers, and `linear_bf16_packed` multiplies with it; `pack_linear_s8` / `linear_s8_packed` are
// the int8 pair (per-channel weight scales, per-row activation scales, int32 accumulation).
// Throws blip::Error if oneDNN refuses a call.
//
// Why oneDNN (docs/performance.md has the side-by-side): on this project's Zen 4 and Zen 5
// machines it is faster than OpenBLAS 0.3.21 at every BLIP shape (OpenBLAS runs AVX2 kernels when
// the environment sets OPENBLAS_CORETYPE=Haswell, as it does on Zen 5), it picks its ISA at run
// time by itself (JIT), and it has bf16 and int8 GEMMs. `dnnl_sgemm` serves large and per-thread
// products; the matmul primitive (cached per shape and thread) serves short-and-wide linear
// layers (text tokens, M = 35·batch), where it is 1.3-1.6x faster than dnnl_sgemm, and carries the
// bias as an epilogue instead of a separate pass over C. Double precision (the finite-difference
// checks) goes through Eigen: oneDNN has no dgemm, and speed does not matter there.
#pragma once

#include <oneapi/dnnl/dnnl.h>

#include <Eigen/Core>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/isa.hpp"
#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/dtype.hpp"
#include "blip/core/error.hpp"

namespace blip::cpu {

namespace detail {

inline void check_dnnl(dnnl_status_t status, const char* what, int64_t m, int64_t n, int64_t k) {
  if (status != dnnl_success)
    fail("cpu gemm (oneDNN ", what, "): status ", static_cast<int>(status), " for m=", m, " n=", n, " k=", k);
}

// The C API (dnnl.h), not dnnl.hpp: every translation unit includes this header, and the C++
// API's header alone costs ~0.9 s of compile time per unit.
inline dnnl_engine_t dnnl_cpu_engine() {
  static const dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    check_dnnl(dnnl_engine_create(&e, dnnl_cpu, 0), "engine", 0, 0, 0);
    return e;
  }();
  return engine;
}

// One matmul primitive per (shape, types, bias) and thread, with its memory objects: primitives
// are built once (~0.1-1 ms of JIT each), and a thread-local cache needs no lock and never runs
// one primitive object on two threads at once.
// C [m, n] (row stride ldc) = op(A) [m, k] · op(B) [k, n] (+ bias [n]); A, B row-major with
// leading dimensions lda, ldb, transposed where ta / tb.
// The operand types: f32 x f32 -> f32, bf16 x bf16 -> f32, s8 x s8 -> s32.
enum class Operands { f32, bf16, s8 };
// `packed`: the weights come in the layout of a Packed weight (below) instead of strided.
struct MatmulKey {
  int64_t m, k, n, lda, ldb, ldc;
  bool ta, tb;
  Operands operands;
  bool bias, packed = false;
  auto tie() const { return std::tie(m, k, n, lda, ldb, ldc, ta, tb, operands, bias, packed); }
  bool operator<(const MatmulKey& o) const { return tie() < o.tie(); }
};
inline MatmulKey linear_key(int64_t rows, int64_t in, int64_t out, Operands operands, bool bias) {
  return {rows, in, out, in, in, out, false, true, operands, bias};
}
inline dnnl_data_type_t input_type(Operands o) {
  return o == Operands::f32 ? dnnl_f32 : o == Operands::bf16 ? dnnl_bf16 : dnnl_s8;
}
inline dnnl_data_type_t output_type(Operands o) { return o == Operands::s8 ? dnnl_s32 : dnnl_f32; }
inline const char* operands_name(Operands o) {
  return o == Operands::f32 ? "f32 matmul" : o == Operands::bf16 ? "bf16 matmul" : "s8 matmul";
}

struct Matmul {
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_t src = nullptr, weights = nullptr, bias = nullptr, dst = nullptr;
  Matmul() = default;
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;
  ~Matmul() {
    for (dnnl_memory_t m : {src, weights, bias, dst})
      if (m) dnnl_memory_destroy(m);
    if (primitive) dnnl_primitive_destroy(primitive);
  }
};

// `packed_weights`: the weights' layout when key.packed (the same for every call with that key's
// k, n and operand types: it is what pack_weights' probe chose).
inline Matmul& cached_matmul(const MatmulKey& key, const dnnl_memory_desc_t* packed_weights = nullptr) {
  thread_local std::map<MatmulKey, Matmul> cache;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Matmul& mm = cache[key];
  const dnnl_data_type_t in_type = input_type(key.operands);
  const auto desc = [&](dnnl_dim_t d0, dnnl_dim_t d1, dnnl_data_type_t type, dnnl_dim_t s0, dnnl_dim_t s1) {
    dnnl_memory_desc_t md;
    const dnnl_dims_t dims{d0, d1}, strides{s0, s1};
    check_dnnl(dnnl_memory_desc_init_by_strides(&md, 2, dims, type, strides), "memory desc", key.m, key.n, key.k);
    return md;
  };
  // Transposes are strides: a linear layer's wᵀ is a view of its [out, in] weight.
  const dnnl_memory_desc_t src = key.ta ? desc(key.m, key.k, in_type, 1, key.lda) : desc(key.m, key.k, in_type, key.lda, 1);
  const dnnl_memory_desc_t weights = key.packed ? *packed_weights
                                     : key.tb   ? desc(key.k, key.n, in_type, 1, key.ldb)
                                                : desc(key.k, key.n, in_type, key.ldb, 1);
  const dnnl_memory_desc_t bias = desc(1, key.n, dnnl_f32, key.n, 1);
  const dnnl_memory_desc_t dst = desc(key.m, key.n, output_type(key.operands), key.ldc, 1);
  dnnl_matmul_desc_t op;
  check_dnnl(dnnl_matmul_desc_init(&op, &src, &weights, key.bias ? &bias : nullptr, &dst), "matmul desc", key.m,
             key.n, key.k);
  dnnl_primitive_desc_t pd = nullptr;
  const dnnl_status_t made = dnnl_primitive_desc_create(&pd, &op, nullptr, dnnl_cpu_engine(), nullptr);
  if (made != dnnl_success) {
    cache.erase(key);
    check_dnnl(made, operands_name(key.operands), key.m, key.n, key.k);
  }
  const dnnl_status_t built = dnnl_primitive_create(&mm.primitive, pd);
  dnnl_primitive_desc_destroy(pd);
  check_dnnl(built, "matmul primitive", key.m, key.n, key.k);
  const dnnl_engine_t e = dnnl_cpu_engine();
  check_dnnl(dnnl_memory_create(&mm.src, &src, e, DNNL_MEMORY_NONE), "memory", key.m, key.n, key.k);
  check_dnnl(dnnl_memory_create(&mm.weights, &weights, e, DNNL_MEMORY_NONE), "memory", key.m, key.n, key.k);
  check_dnnl(dnnl_memory_create(&mm.dst, &dst, e, DNNL_MEMORY_NONE), "memory", key.m, key.n, key.k);
  if (key.bias) check_dnnl(dnnl_memory_create(&mm.bias, &bias, e, DNNL_MEMORY_NONE), "memory", key.m, key.n, key.k);
  return mm;
}

inline void run_matmul(const MatmulKey& key, const void* x, const void* w, const float* bias, void* y,
                       const dnnl_memory_desc_t* packed_weights = nullptr) {
  Matmul& mm = cached_matmul(key, packed_weights);
  thread_local const dnnl_stream_t stream = [] {
    dnnl_stream_t s = nullptr;
    check_dnnl(dnnl_stream_create(&s, dnnl_cpu_engine(), dnnl_stream_default_flags), "stream", 0, 0, 0);
    return s;
  }();
  dnnl_memory_set_data_handle(mm.src, const_cast<void*>(x));
  dnnl_memory_set_data_handle(mm.weights, const_cast<void*>(w));
  dnnl_memory_set_data_handle(mm.dst, y);
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, mm.src}, {DNNL_ARG_WEIGHTS, mm.weights}, {DNNL_ARG_DST, mm.dst}, {0, nullptr}};
  int nargs = 3;
  if (key.bias) {
    dnnl_memory_set_data_handle(mm.bias, const_cast<float*>(bias));
    args[nargs++] = {DNNL_ARG_BIAS, mm.bias};
  }
  check_dnnl(dnnl_primitive_execute(mm.primitive, stream, nargs, args), "matmul", key.m, key.n, key.k);
  check_dnnl(dnnl_stream_wait(stream), "stream wait", key.m, key.n, key.k);
}

// Where the matmul primitive beats dnnl_sgemm for y = x·wᵀ (measured at the BLIP shapes,
// docs/performance.md): below 512 rows, and for deep products (the FFN's fc2, K = 3072:
// 130-147 vs 117-132 GFLOP/s at 577 rows, 182 vs 99 at 1154).
inline constexpr int64_t kPrimitiveRows = 512;
inline constexpr int64_t kPrimitiveDepth = 2048;

}  // namespace detail

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  detail::check_dnnl(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                std::max<int64_t>(lda, trans_a ? m : k), b, std::max<int64_t>(ldb, trans_b ? k : n),
                                beta, c, std::max<int64_t>(ldc, n)),
                     "sgemm", m, n, k);
}

// Float64 (the gradient checks' and the op table's reference) through Eigen. A template, so that
// only a translation unit that multiplies doubles instantiates Eigen's product: as a plain inline
// function it cost every translation unit that includes the kernels ~4 s of compile time.
template <std::same_as<double> D>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, std::type_identity_t<D> alpha, const D* a,
          int64_t lda, const D* b, int64_t ldb, std::type_identity_t<D> beta, D* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  using Matrix = Eigen::Matrix<D, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
  Eigen::Map<Matrix, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(std::max<int64_t>(ldc, n)));
  if (beta == 0.0) cm.setZero();
  else if (beta != 1.0) cm *= beta;
  if (k == 0) return;
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(std::max<int64_t>(lda, trans_a ? m : k)));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(std::max<int64_t>(ldb, trans_b ? k : n)));
  if (!trans_a && !trans_b) cm.noalias() += alpha * (am * bm);
  else if (!trans_a) cm.noalias() += alpha * (am * bm.transpose());
  else if (!trans_b) cm.noalias() += alpha * (am.transpose() * bm);
  else cm.noalias() += alpha * (am.transpose() * bm.transpose());
}

// Strided batch of GEMMs. Many small products (attention heads) run one per thread; large ones
// run one after another, each with the engine's own threads.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                  int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
                  int64_t stride_c, int64_t batch) {
  const bool small = m * n * k < (int64_t{1} << 22);
  if (batch > 1 && small) {
    parallel_for(batch, m * n * k, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
    });
    return;
  }
  for (int64_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

// y [rows, out] = x [rows, in] · w [out, in]ᵀ + bias [out] (bias may be null).
template <class T>
void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, const T* bias, T* y) {
  if (rows == 0 || out == 0) return;
  if constexpr (std::same_as<T, float>) {
    if ((rows < detail::kPrimitiveRows || in >= detail::kPrimitiveDepth) && in > 0 && !omp_in_parallel()) {
      detail::run_matmul(detail::linear_key(rows, in, out, detail::Operands::f32, bias != nullptr), x, w, bias, y);
      return;
    }
  }
  if (bias)
    parallel_for(rows, out, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) std::memcpy(y + r * out, bias, sizeof(T) * static_cast<size_t>(out));
    });
  gemm(false, true, rows, out, in, T(1), x, in, w, in, bias ? T(1) : T(0), y, out);
}

namespace detail {

// Whether this CPU's oneDNN has a bf16 matmul (2.6 has none below AVX-512: an AVX2 CPU, or
// ONEDNN_MAX_CPU_ISA=AVX2).
inline bool bf16_matmul_available() {
  static const bool available = [] {
    dnnl_memory_desc_t a, b, c;
    const dnnl_dims_t dims{16, 16};
    dnnl_memory_desc_init_by_tag(&a, 2, dims, dnnl_bf16, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&b, 2, dims, dnnl_bf16, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&c, 2, dims, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t op;
    dnnl_primitive_desc_t pd = nullptr;
    const bool ok = dnnl_matmul_desc_init(&op, &a, &b, nullptr, &c) == dnnl_success &&
                    dnnl_primitive_desc_create(&pd, &op, nullptr, dnnl_cpu_engine(), nullptr) == dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    return ok;
  }();
  return available;
}

// rows × cols bf16 values (row stride ld) widened to a dense float matrix: where oneDNN has no
// bf16 matmul, the bf16 products run as float products of the rounded operands — the same
// values as a bf16 GEMM with float accumulation, at float speed.
inline std::vector<float> widen(const bf16* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  parallel_for(rows, cols, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const uint32_t bits = uint32_t{x[r * ld + j].bits} << 16;
        std::memcpy(&out[static_cast<size_t>(r * cols + j)], &bits, sizeof bits);
      }
  });
  return out;
}

}  // namespace detail

// y = x · wᵀ + bias for bf16 x and w; products accumulate in float, the bias is float.
inline void linear_bf16(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, const float* bias,
                        float* y) {
  if (rows == 0 || out == 0) return;
  if (!detail::bf16_matmul_available()) {
    const std::vector<float> xf = detail::widen(x, rows, in, in), wf = detail::widen(w, out, in, in);
    linear(xf.data(), rows, in, wf.data(), out, bias, y);
    return;
  }
  detail::run_matmul(detail::linear_key(rows, in, out, detail::Operands::bf16, bias != nullptr), x, w, bias, y);
}

namespace detail {

// A weight [out, in] reordered into the layout oneDNN's matmul picks for it (format_tag_any: on
// AVX-512 CPUs blocks of 16·64 with 2 (bf16) or 4 (s8) values of k interleaved for the dot-product
// instructions, plus the s8·s8 compensation), so the GEMM reads it without repacking it on every
// call: for bf16 1.13-1.39x at the 577-row BLIP shapes and 1.2x at 35 rows (bench_ops
// Gemm_OneDNN_Bf16Blocked, docs/performance.md). `scale`: the s8 weight's per-output-channel scales.
struct Packed {
  Operands operands = Operands::bf16;
  dnnl_memory_desc_t md{};
  dnnl_memory_t memory = nullptr;  // owns the packed bytes
  std::vector<float> scale;
  Packed() = default;
  Packed(const Packed&) = delete;
  Packed& operator=(const Packed&) = delete;
  ~Packed() {
    if (memory) dnnl_memory_destroy(memory);
  }
  void* data() const {
    void* p = nullptr;
    check_dnnl(dnnl_memory_get_data_handle(memory, &p), "packed weights", 0, 0, 0);
    return p;
  }
};

// The rows of the primitive that chooses the packed layout. oneDNN 2.6's layout for bf16
// weights depends on k and n only: the same for 1 to 9232 rows at every BLIP-base and -large
// shape (checked on Zen 4, brgemm:avx512_core_bf16); a call with other rows reuses it either way,
// since its primitive is made for the packed layout itself.
inline constexpr int64_t kPackProbeRows = 512;

// w [out, in] (row-major, of the operands' input type) reordered into the layout the matmul
// primitive picks; null where this CPU has no such matmul. `keep_plain`: null also where that
// layout is the plain one.
inline std::shared_ptr<Packed> pack_weights(const void* w, Operands operands, int64_t out, int64_t in, bool keep_plain) {
  const dnnl_engine_t engine = dnnl_cpu_engine();
  const int64_t m = kPackProbeRows;
  const dnnl_data_type_t type = input_type(operands);
  dnnl_memory_desc_t src, any, plain, dst;
  const dnnl_dims_t src_dims{m, in}, wei_dims{in, out}, dst_dims{m, out};
  const dnnl_dims_t plain_strides{1, in};  // wᵀ: a [in, out] view of [out, in]
  check_dnnl(dnnl_memory_desc_init_by_tag(&src, 2, src_dims, type, dnnl_ab), "memory desc", m, out, in);
  check_dnnl(dnnl_memory_desc_init_by_tag(&any, 2, wei_dims, type, dnnl_format_tag_any), "memory desc", m, out, in);
  check_dnnl(dnnl_memory_desc_init_by_strides(&plain, 2, wei_dims, type, plain_strides), "memory desc", m, out, in);
  check_dnnl(dnnl_memory_desc_init_by_tag(&dst, 2, dst_dims, output_type(operands), dnnl_ab), "memory desc", m, out, in);
  dnnl_matmul_desc_t op;
  check_dnnl(dnnl_matmul_desc_init(&op, &src, &any, nullptr, &dst), "matmul desc", m, out, in);
  dnnl_primitive_desc_t probe = nullptr;
  if (dnnl_primitive_desc_create(&probe, &op, nullptr, engine, nullptr) != dnnl_success) return nullptr;
  auto packed = std::make_shared<Packed>();
  packed->operands = operands;
  packed->md = *dnnl_primitive_desc_query_md(probe, dnnl_query_weights_md, 0);
  dnnl_primitive_desc_destroy(probe);
  if (keep_plain && dnnl_memory_desc_equal(&packed->md, &plain)) return nullptr;
  check_dnnl(dnnl_memory_create(&packed->memory, &packed->md, engine, DNNL_MEMORY_ALLOCATE), "packed weights", 0, out,
             in);
  dnnl_memory_t from = nullptr;
  dnnl_primitive_desc_t reorder_pd = nullptr;
  dnnl_primitive_t reorder = nullptr;
  dnnl_stream_t stream = nullptr;
  dnnl_status_t st = dnnl_memory_create(&from, &plain, engine, const_cast<void*>(w));
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&reorder_pd, &plain, engine, &packed->md, engine, nullptr);
  if (st == dnnl_success) st = dnnl_primitive_create(&reorder, reorder_pd);
  if (st == dnnl_success) st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
  if (st == dnnl_success) {
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, packed->memory}};
    st = dnnl_primitive_execute(reorder, stream, 2, args);
    if (st == dnnl_success) st = dnnl_stream_wait(stream);
  }
  if (stream) dnnl_stream_destroy(stream);
  if (reorder) dnnl_primitive_destroy(reorder);
  if (reorder_pd) dnnl_primitive_desc_destroy(reorder_pd);
  if (from) dnnl_memory_destroy(from);
  check_dnnl(st, "weight reorder", 0, out, in);
  return packed;
}

inline const Packed& unpack(const backend::PackedWeight& w, Operands operands, int64_t out, int64_t in,
                            const char* kernel) {
  if (!w || w.out != out || w.in != in)
    fail("cpu ", kernel, ": the packed weight is ", w ? "" : "empty, ", "[", w.out, ", ", w.in, "], the call needs [",
         out, ", ", in, "]");
  const Packed& packed = *static_cast<const Packed*>(w.layout.get());
  if (packed.operands != operands)
    fail("cpu ", kernel, ": the packed weight [", out, ", ", in, "] was packed for a ", operands_name(packed.operands),
         ", not a ", operands_name(operands));
  return packed;
}

// Whether oneDNN's int8 products here use VNNI: without it (AVX-512 before Cascade Lake, AVX2)
// its u8·s8 pairs go through a saturating 16-bit step that full-range int8 activations overflow
// (oneDNN's "Nuances of int8 computations").
inline bool int8_products_exact() {
  const int isa = static_cast<int>(dnnl_get_effective_cpu_isa());
  return (isa & static_cast<int>(dnnl_cpu_isa_avx512_core_vnni) & ~static_cast<int>(dnnl_cpu_isa_avx512_core)) != 0 ||
         (isa & static_cast<int>(dnnl_cpu_isa_avx2_vnni) & ~static_cast<int>(dnnl_cpu_isa_avx2)) != 0;
}

}  // namespace detail

// The weight w [out, in] (bf16, row-major) in the matmul's preferred layout; empty where that
// layout is the plain one (nothing to gain) or this CPU has no bf16 matmul.
inline backend::PackedWeight pack_linear_bf16(const bf16* w, int64_t out, int64_t in) {
  if (out == 0 || in == 0 || !detail::bf16_matmul_available()) return {};
  std::shared_ptr<detail::Packed> packed = detail::pack_weights(w, detail::Operands::bf16, out, in, true);
  if (!packed) return {};
  return {std::move(packed), out, in};
}

// y = x · wᵀ + bias as linear_bf16, with w made by pack_linear_bf16 for this [out, in].
inline void linear_bf16_packed(const bf16* x, int64_t rows, int64_t in, const backend::PackedWeight& w, int64_t out,
                               const float* bias, float* y) {
  const detail::Packed& packed = detail::unpack(w, detail::Operands::bf16, out, in, "linear_bf16_packed");
  if (rows == 0) return;
  detail::MatmulKey key = detail::linear_key(rows, in, out, detail::Operands::bf16, bias != nullptr);
  key.packed = true;
  detail::run_matmul(key, x, packed.data(), bias, y, &packed.md);
}

// The weight w [out, in] (float) quantised to int8 with one scale per output channel (max |w_j| /
// 127) and packed for linear_s8_packed; empty where this CPU has no exact int8 matmul (no VNNI:
// then linear() takes the bf16 path).
inline backend::PackedWeight pack_linear_s8(const float* w, int64_t out, int64_t in) {
  if (out == 0 || in == 0 || !detail::int8_products_exact()) return {};
  std::vector<int8_t> q(static_cast<size_t>(out * in));
  std::vector<float> scale(static_cast<size_t>(out));
  isa::quantize_rows_s8(w, q.data(), scale.data(), out, in);
  std::shared_ptr<detail::Packed> packed = detail::pack_weights(q.data(), detail::Operands::s8, out, in, false);
  if (!packed) return {};
  packed->scale = std::move(scale);
  return {std::move(packed), out, in};
}

// y = (xq · wqᵀ) · x_scale[r] · w_scale[j] + bias[j] for xq [rows, in] int8 with per-row scales
// (isa::quantize_rows_s8) and w from pack_linear_s8: s8·s8 products accumulate exactly in int32
// (written into y), then one pass turns them into float.
inline void linear_s8_packed(const int8_t* xq, const float* x_scale, int64_t rows, int64_t in,
                             const backend::PackedWeight& w, int64_t out, const float* bias, float* y) {
  const detail::Packed& packed = detail::unpack(w, detail::Operands::s8, out, in, "linear_s8_packed");
  if (rows == 0) return;
  detail::MatmulKey key = detail::linear_key(rows, in, out, detail::Operands::s8, false);
  key.packed = true;
  detail::run_matmul(key, xq, packed.data(), nullptr, y, &packed.md);
  isa::dequantize_rows(y, x_scale, packed.scale.data(), bias, rows, out);
}

// C = op(A) · op(B) for bf16 A, B (row-major, leading dimensions lda, ldb) into float C.
inline void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda,
                      const bf16* b, int64_t ldb, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.0f);
    return;
  }
  if (!detail::bf16_matmul_available()) {
    const int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    const std::vector<float> af = detail::widen(a, trans_a ? k : m, a_cols, lda);
    const std::vector<float> bf = detail::widen(b, trans_b ? n : k, b_cols, ldb);
    gemm(trans_a, trans_b, m, n, k, 1.0f, af.data(), a_cols, bf.data(), b_cols, 0.0f, c, ldc);
    return;
  }
  detail::run_matmul({m, k, n, lda, ldb, ldc, trans_a, trans_b, detail::Operands::bf16, false}, a, b, nullptr, c);
}

}  // namespace blip::cpu
