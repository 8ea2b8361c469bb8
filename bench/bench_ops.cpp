// bench/bench_ops.cpp — throughput of the CPU ops that dominate BLIP-base inference.
//
// What it measures (docs/performance.md has the numbers and the commands):
// - GEMM at the BLIP-base shapes M×K×N (x [M,K] · wᵀ with w [N,K], PyTorch's Linear layout):
//     Blip_Linear      blip::linear(x, w, b): the library path (output allocation + bias + sgemm)
//     Blip_LinearNoBias blip::linear(x, w): the same path without the bias
//     Blip_LinearBf16  blip::linear(x, w, b) inside PrecisionScope(bf16): bf16 weights (converted
//                      and packed once, in the warm-up), activations rounded per call, float
//                      accumulation; counter rel_err against fp32
//     Blip_LinearInt8  the same in PrecisionScope(int8): weights quantised per channel and packed
//                      once, activations quantised per row per call (timed), int32 accumulation
//     Blip_LinearF16   the same in PrecisionScope(fp16): weights rounded to fp16 and packed once,
//                      activations rounded per call, runs of 64 fp16 sums added in float
//                      (AVX512-FP16; elsewhere the scope's bf16 path)
//     OneDNN_Sgemm     dnnl_sgemm('N', 'T') on the same buffers into a preallocated C
//     OneDNN_Bf16Blocked  the bf16 matmul primitive with the weights reordered once into its
//                      preferred (blocked) layout; activations rounded per call, as Blip_LinearBf16
//     OneDNN_F32Blocked   the same in float: the float matmul primitive on weights reordered once
//     OneDNN_Int8      s8 weights (per-channel scales) x s8 activations (dynamic per-call scale,
//                      quantisation timed) through oneDNN's matmul; counter rel_err against fp32
//     OpenBLAS         cblas_sgemm(NoTrans, Trans) on the same buffers into a preallocated C
//     Eigen            Eigen's own GEMM (row-major Maps, noalias) into a preallocated C
//     Diag_OpenBLAS_FreshOutput[THP]  the OpenBLAS call into a C allocated per call (4 KiB pages,
//                      or MADV_HUGEPAGE): isolates what a fresh output tensor costs
//   Counter GFLOPs = 2·M·N·K per iteration as a rate (GFLOP/s).
// - layer_norm, softmax, GELU (library, with the argument isa = 0 portable, 1 AVX2, 2 AVX-512
//   forced through cpu::set_isa; raw Eigen kernel on 1 thread; scalar std::erf loop):
//   bytes/s (read + write of the tensor) and elements/s; no FLOP count, they are memory- and
//   transcendental-bound.
// - scaled_dot_product_attention [1, 12, 577, 64] without gradients, with and without a
//   [B,1,1,S] key mask, in float and in a bf16 PrecisionScope (Attention_BlipBf16), against an
//   unfused OpenBLAS baseline; GFLOP/s with 4·H·S²·d FLOPs.
//
// All inputs are made before the timed loop; results go through DoNotOptimize/ClobberMemory.
// Threads: 2 (omp_set_num_threads in main; OpenBLAS is the OpenMP build and follows it;
// BLIP_BENCH_THREADS=1 for single-thread numbers). Times are wall-clock (UseRealTime) because
// the work runs on several threads.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <sys/mman.h>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numbers>
#include <string>
#include <vector>

#include "blip/blip.hpp"

extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);
extern "C" void openblas_set_num_threads(int);

namespace {

// 2 by default (the whole machine the docs were measured on); BLIP_BENCH_THREADS overrides it,
// e.g. 1 to take OpenMP fork/join out of the comparison on a loaded machine.
int bench_threads() {
  static const int threads = [] {
    const char* env = std::getenv("BLIP_BENCH_THREADS");
    return env && std::atoi(env) > 0 ? std::atoi(env) : 2;
  }();
  return threads;
}

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

blip::Tensor<float> random_tensor(const blip::Shape& shape, uint64_t seed) {
  blip::Generator gen(seed);
  return blip::randn<float>(shape, gen);
}

// GEMM operands for one M×K×N shape; built once per benchmark run, outside the timed loop.
struct GemmCase {
  int64_t m, k, n;
  blip::Tensor<float> x, w, b, c;
  GemmCase(int64_t m_, int64_t k_, int64_t n_)
      : m(m_), k(k_), n(n_),
        x(random_tensor({m_, k_}, 1)), w(random_tensor({n_, k_}, 2)), b(random_tensor({n_}, 3)),
        c(blip::zeros<float>({m_, n_})) {}
};

void set_gemm_counters(benchmark::State& state, int64_t m, int64_t k, int64_t n) {
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  // kIsIterationInvariantRate = kIsRate × iterations: GFLOP per iteration over wall seconds.
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Gemm_Blip_Linear(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  GemmCase g(state.range(0), state.range(1), state.range(2));
  for (auto _ : state) {
    blip::Tensor<float> y = blip::linear(g.x, g.w, g.b);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

void BM_Gemm_Blip_LinearNoBias(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  GemmCase g(state.range(0), state.range(1), state.range(2));
  for (auto _ : state) {
    blip::Tensor<float> y = blip::linear(g.x, g.w);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

// blip::linear in a bf16, int8 or fp16 PrecisionScope: the weight converted (and packed) once, in the
// warm-up; activations rounded or quantised per call. Counter rel_err: ‖y − y_fp32‖ / ‖y_fp32‖.
template <blip::Precision P>
void BM_Gemm_Blip_LinearReduced(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  GemmCase g(state.range(0), state.range(1), state.range(2));
  const std::vector<float> exact = blip::linear(g.x, g.w, g.b).to_vector();
  const blip::PrecisionScope scope(P);
  const std::vector<float> reduced = blip::linear(g.x, g.w, g.b).to_vector();  // converts the weight once
  for (auto _ : state) {
    blip::Tensor<float> y = blip::linear(g.x, g.w, g.b);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  double err = 0, norm = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    err += (double(reduced[i]) - exact[i]) * (double(reduced[i]) - exact[i]);
    norm += double(exact[i]) * exact[i];
  }
  state.counters["rel_err"] = std::sqrt(err / norm);
  set_gemm_counters(state, g.m, g.k, g.n);
}

// oneDNN's matmul primitive (f32 bias and output) with the weights reordered once into the
// layout it prefers (format_tag any; blocked for brgemm) instead of plain [n, k] rows. Bf16: the
// activations rounded to bf16 per call and timed, as in Blip_LinearBf16. F32: what packing the
// float weights for inference would give against Blip_Linear's plain ones.
template <dnnl_data_type_t Type>
void BM_Gemm_OneDNN_Blocked(benchmark::State& state) {
  constexpr bool bf16 = Type == dnnl_bf16;
  GemmCase g(state.range(0), state.range(1), state.range(2));
  const int64_t m = g.m, k = g.k, n = g.n;
  // Every handle is released on every path (a CPU without bf16 matmuls skips at the primitive).
  struct Handles {
    dnnl_engine_t engine = nullptr;
    dnnl_stream_t stream = nullptr;
    dnnl_primitive_desc_t pd = nullptr, reorder_pd = nullptr;
    dnnl_primitive_t prim = nullptr, reorder = nullptr;
    dnnl_memory_t src = nullptr, plain = nullptr, blocked = nullptr, bias = nullptr, dst = nullptr;
    ~Handles() {
      for (dnnl_memory_t mem : {src, plain, blocked, bias, dst})
        if (mem) dnnl_memory_destroy(mem);
      for (dnnl_primitive_t p : {prim, reorder})
        if (p) dnnl_primitive_destroy(p);
      for (dnnl_primitive_desc_t p : {pd, reorder_pd})
        if (p) dnnl_primitive_desc_destroy(p);
      if (stream) dnnl_stream_destroy(stream);
      if (engine) dnnl_engine_destroy(engine);
    }
  } h;
  auto ok = [&](dnnl_status_t st, const char* what) {
    if (st != dnnl_success) state.SkipWithError(what);
    return st == dnnl_success;
  };
  std::vector<blip::bf16> x16(static_cast<size_t>(bf16 ? m * k : 0)), w16(static_cast<size_t>(bf16 ? n * k : 0));
  if constexpr (bf16) blip::cpu::isa::to_bf16(g.w.data(), w16.data(), n * k);
  void* const x_in = bf16 ? static_cast<void*>(x16.data()) : static_cast<void*>(const_cast<float*>(g.x.data()));
  void* const w_in = bf16 ? static_cast<void*>(w16.data()) : static_cast<void*>(const_cast<float*>(g.w.data()));
  dnnl_memory_desc_t src_md, plain_md, any_md, bias_md, dst_md;
  const dnnl_dims_t src_dims{m, k}, wei_dims{k, n}, bias_dims{1, n}, dst_dims{m, n};
  const dnnl_dims_t src_str{k, 1}, wei_str{1, k}, bias_str{n, 1}, dst_str{n, 1};  // wᵀ: [k, n] view of [n, k]
  dnnl_matmul_desc_t op;
  if (!ok(dnnl_engine_create(&h.engine, dnnl_cpu, 0), "engine") ||
      !ok(dnnl_stream_create(&h.stream, h.engine, dnnl_stream_default_flags), "stream") ||
      !ok(dnnl_memory_desc_init_by_strides(&src_md, 2, src_dims, Type, src_str), "src desc") ||
      !ok(dnnl_memory_desc_init_by_strides(&plain_md, 2, wei_dims, Type, wei_str), "weights desc") ||
      !ok(dnnl_memory_desc_init_by_tag(&any_md, 2, wei_dims, Type, dnnl_format_tag_any), "weights desc") ||
      !ok(dnnl_memory_desc_init_by_strides(&bias_md, 2, bias_dims, dnnl_f32, bias_str), "bias desc") ||
      !ok(dnnl_memory_desc_init_by_strides(&dst_md, 2, dst_dims, dnnl_f32, dst_str), "dst desc") ||
      !ok(dnnl_matmul_desc_init(&op, &src_md, &any_md, &bias_md, &dst_md), "matmul desc") ||
      !ok(dnnl_primitive_desc_create(&h.pd, &op, nullptr, h.engine, nullptr), "matmul not supported here") ||
      !ok(dnnl_primitive_create(&h.prim, h.pd), "primitive"))
    return;
  const char* impl = nullptr;
  dnnl_primitive_desc_query(h.pd, dnnl_query_impl_info_str, 0, &impl);
  state.SetLabel(impl ? impl : "?");
  const dnnl_memory_desc_t* blocked_md = dnnl_primitive_desc_query_md(h.pd, dnnl_query_weights_md, 0);
  if (!ok(dnnl_memory_create(&h.src, &src_md, h.engine, x_in), "memory") ||
      !ok(dnnl_memory_create(&h.plain, &plain_md, h.engine, w_in), "memory") ||
      !ok(dnnl_memory_create(&h.blocked, blocked_md, h.engine, DNNL_MEMORY_ALLOCATE), "memory") ||
      !ok(dnnl_memory_create(&h.bias, &bias_md, h.engine, g.b.data()), "memory") ||
      !ok(dnnl_memory_create(&h.dst, &dst_md, h.engine, g.c.data()), "memory") ||
      !ok(dnnl_reorder_primitive_desc_create(&h.reorder_pd, &plain_md, h.engine, blocked_md, h.engine, nullptr),
          "reorder") ||
      !ok(dnnl_primitive_create(&h.reorder, h.reorder_pd), "reorder primitive"))
    return;
  const dnnl_exec_arg_t reorder_args[2] = {{DNNL_ARG_FROM, h.plain}, {DNNL_ARG_TO, h.blocked}};
  if (!ok(dnnl_primitive_execute(h.reorder, h.stream, 2, reorder_args), "reorder") ||  // once, as a cache would
      !ok(dnnl_stream_wait(h.stream), "stream wait"))
    return;
  const dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, h.src}, {DNNL_ARG_WEIGHTS, h.blocked}, {DNNL_ARG_BIAS, h.bias},
                                   {DNNL_ARG_DST, h.dst}};
  for (auto _ : state) {
    if constexpr (bf16) blip::cpu::isa::to_bf16(g.x.data(), x16.data(), m * k);
    dnnl_primitive_execute(h.prim, h.stream, 4, args);
    dnnl_stream_wait(h.stream);
    benchmark::DoNotOptimize(g.c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, k, n);
}

// int8 as issue 10 defines it (clip.cpp's q8_0 idea on oneDNN): weights s8 with one scale per
// output channel (max |w| / 127, quantised once), activations s8 with one dynamic scale per call
// (max |x| / 127: the max and the rounding are timed), s8·s8 → s32 accumulation, dequantised by
// runtime output scales sx·sw[n], f32 bias and output: oneDNN's matmul primitive
// (brgemm:avx512_core_vnni where the CPU has VNNI). Counter rel_err: ‖y − y_fp32‖ / ‖y_fp32‖.
void BM_Gemm_OneDNN_Int8(benchmark::State& state) {
  GemmCase g(state.range(0), state.range(1), state.range(2));
  const int64_t m = g.m, k = g.k, n = g.n;
  auto ok = [&](dnnl_status_t st, const char* what) {
    if (st != dnnl_success) state.SkipWithError(what);
    return st == dnnl_success;
  };
  std::vector<int8_t> wq(static_cast<size_t>(n * k)), xq(static_cast<size_t>(m * k));
  std::vector<float> w_scale(static_cast<size_t>(n)), out_scale(static_cast<size_t>(n));
  const float* w = g.w.data();
  for (int64_t j = 0; j < n; ++j) {
    float mx = 0;
    for (int64_t i = 0; i < k; ++i) mx = std::max(mx, std::fabs(w[j * k + i]));
    w_scale[j] = mx > 0 ? mx / 127.0f : 1.0f;
    for (int64_t i = 0; i < k; ++i) wq[j * k + i] = static_cast<int8_t>(std::nearbyint(w[j * k + i] / w_scale[j]));
  }
  dnnl_engine_t engine = nullptr;
  if (!ok(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine")) return;
  dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md, scale_md;
  const dnnl_dims_t src_dims{m, k}, wei_dims{k, n}, bias_dims{1, n}, dst_dims{m, n}, scale_dims{n};
  const dnnl_dims_t src_str{k, 1}, wei_str{1, k}, bias_str{n, 1}, dst_str{n, 1};  // wᵀ: [k, n] view of [n, k]
  dnnl_memory_desc_init_by_strides(&src_md, 2, src_dims, dnnl_s8, src_str);
  dnnl_memory_desc_init_by_strides(&wei_md, 2, wei_dims, dnnl_s8, wei_str);
  dnnl_memory_desc_init_by_strides(&bias_md, 2, bias_dims, dnnl_f32, bias_str);
  dnnl_memory_desc_init_by_strides(&dst_md, 2, dst_dims, dnnl_f32, dst_str);
  dnnl_memory_desc_init_by_tag(&scale_md, 1, scale_dims, dnnl_f32, dnnl_a);
  dnnl_matmul_desc_t op;
  dnnl_matmul_desc_init(&op, &src_md, &wei_md, &bias_md, &dst_md);
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_primitive_attr_create(&attr);
  const float runtime = DNNL_RUNTIME_F32_VAL;  // the scales come at execution: count 1, mask per column
  if (!ok(dnnl_primitive_attr_set_output_scales(attr, 1, 1 << 1, &runtime), "output scales")) {
    dnnl_primitive_attr_destroy(attr);
    dnnl_engine_destroy(engine);
    return;
  }
  dnnl_primitive_desc_t pd = nullptr;
  dnnl_primitive_t prim = nullptr;
  if (!ok(dnnl_primitive_desc_create(&pd, &op, attr, engine, nullptr), "int8 matmul not supported here") ||
      !ok(dnnl_primitive_create(&prim, pd), "int8 primitive")) {
    dnnl_primitive_attr_destroy(attr);
    dnnl_engine_destroy(engine);
    return;
  }
  const char* impl = nullptr;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  state.SetLabel(impl ? impl : "?");
  dnnl_memory_t src, wei, bias, dst, scales;
  dnnl_memory_create(&src, &src_md, engine, xq.data());
  dnnl_memory_create(&wei, &wei_md, engine, wq.data());
  dnnl_memory_create(&bias, &bias_md, engine, g.b.data());
  dnnl_memory_create(&dst, &dst_md, engine, g.c.data());
  dnnl_memory_create(&scales, &scale_md, engine, out_scale.data());
  dnnl_stream_t stream = nullptr;
  dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
  const dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias},
                                   {DNNL_ARG_DST, dst}, {DNNL_ARG_ATTR_OUTPUT_SCALES, scales}};
  const float* x = g.x.data();
  auto run = [&] {
    float mx = 0;
#pragma omp parallel for reduction(max : mx)
    for (int64_t i = 0; i < m * k; ++i) mx = std::max(mx, std::fabs(x[i]));
    const float sx = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / sx;
#pragma omp parallel for
    for (int64_t i = 0; i < m * k; ++i) xq[i] = static_cast<int8_t>(std::nearbyint(x[i] * inv));
    for (int64_t j = 0; j < n; ++j) out_scale[j] = sx * w_scale[j];
    dnnl_primitive_execute(prim, stream, 5, args);
    dnnl_stream_wait(stream);
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(g.c.data());
    benchmark::ClobberMemory();
  }
  const blip::Tensor<float> ref = [&] {
    blip::NoGradGuard no_grad;
    return blip::linear(g.x, g.w, g.b);
  }();
  double num = 0, den = 0;
  for (int64_t i = 0; i < m * n; ++i) {
    const double d = static_cast<double>(g.c.data()[i]) - ref.data()[i];
    num += d * d;
    den += static_cast<double>(ref.data()[i]) * ref.data()[i];
  }
  state.counters["rel_err"] = std::sqrt(num / den);
  set_gemm_counters(state, g.m, g.k, g.n);
  for (dnnl_memory_t mem : {src, wei, bias, dst, scales}) dnnl_memory_destroy(mem);
  dnnl_stream_destroy(stream);
  dnnl_primitive_destroy(prim);
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  dnnl_engine_destroy(engine);
}

void BM_Gemm_OneDNN_Sgemm(benchmark::State& state) {
  GemmCase g(state.range(0), state.range(1), state.range(2));
  for (auto _ : state) {
    dnnl_sgemm('N', 'T', g.m, g.n, g.k, 1.0f, g.x.data(), g.k, g.w.data(), g.k, 0.0f, g.c.data(), g.n);
    benchmark::DoNotOptimize(g.c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

void BM_Gemm_OpenBLAS(benchmark::State& state) {
  GemmCase g(state.range(0), state.range(1), state.range(2));
  const int m = static_cast<int>(g.m), k = static_cast<int>(g.k), n = static_cast<int>(g.n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, g.x.data(), k, g.w.data(), k, 0.0f,
                g.c.data(), n);
    benchmark::DoNotOptimize(g.c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

void BM_Gemm_Eigen(benchmark::State& state) {
  GemmCase g(state.range(0), state.range(1), state.range(2));
  Eigen::Map<const RowMatrix> x(g.x.data(), g.m, g.k), w(g.w.data(), g.n, g.k);
  Eigen::Map<RowMatrix> c(g.c.data(), g.m, g.n);
  for (auto _ : state) {
    c.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(g.c.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

// Diagnostics for the gap between Blip_Linear and OpenBLAS: the library returns a new tensor, so
// every call writes into freshly allocated memory. Above glibc's mmap threshold (32 MiB at most,
// so the [4616, 2304] output) that memory comes straight from mmap and each 4 KiB page faults on
// first touch, inside the timed GEMM. These run the same cblas_sgemm into a buffer allocated and
// freed per iteration: with 4 KiB pages (what Tensor::empty gets) and with MADV_HUGEPAGE.
template <bool kHugePages>
void BM_Gemm_Diag_OpenBLAS_FreshOutput(benchmark::State& state) {
  GemmCase g(state.range(0), state.range(1), state.range(2));
  const int m = static_cast<int>(g.m), k = static_cast<int>(g.k), n = static_cast<int>(g.n);
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = sizeof(float) * static_cast<size_t>(g.m * g.n);
  for (auto _ : state) {
    float* c = nullptr;
    if constexpr (kHugePages) {
      const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
      c = static_cast<float*>(std::aligned_alloc(kHuge, rounded));
      madvise(c, rounded, MADV_HUGEPAGE);
    } else {
      c = static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, g.x.data(), k, g.w.data(), k, 0.0f, c, n);
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
    std::free(c);
  }
  set_gemm_counters(state, g.m, g.k, g.n);
}

// The BLIP-base GEMMs: ViT qkv/fc1/fc2/proj on 577 tokens, BERT on 35 tokens, and the qkv of a
// batch of 8 images (rows stacked).
void gemm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "K", "N"});
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{577, 768, 2304},
                                                            {577, 768, 3072},
                                                            {577, 3072, 768},
                                                            {577, 768, 768},
                                                            {35, 768, 768},
                                                            {35, 768, 3072},
                                                            {4616, 768, 2304}})
    b->Args({m, k, n});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Gemm_Blip_Linear)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Blip_LinearNoBias)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Blip_LinearReduced<blip::Precision::bf16>)->Name("BM_Gemm_Blip_LinearBf16")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Blip_LinearReduced<blip::Precision::int8>)->Name("BM_Gemm_Blip_LinearInt8")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Blip_LinearReduced<blip::Precision::fp16>)->Name("BM_Gemm_Blip_LinearF16")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_OneDNN_Sgemm)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_OneDNN_Blocked<dnnl_bf16>)->Name("BM_Gemm_OneDNN_Bf16Blocked")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_OneDNN_Blocked<dnnl_f32>)->Name("BM_Gemm_OneDNN_F32Blocked")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_OneDNN_Int8)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_OpenBLAS)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Eigen)->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Diag_OpenBLAS_FreshOutput<false>)->Name("BM_Gemm_Diag_OpenBLAS_FreshOutput")->Apply(gemm_shapes);
BENCHMARK(BM_Gemm_Diag_OpenBLAS_FreshOutput<true>)->Name("BM_Gemm_Diag_OpenBLAS_FreshOutputTHP")->Apply(gemm_shapes);

// ---- Row-wise and elementwise ops: bytes (one read + one write of the tensor) and elements.

// Forces the kernels' instruction set for one benchmark (0 portable, 1 AVX2, 2 AVX-512); false
// (and the benchmark skipped) when the CPU lacks it.
bool use_isa(benchmark::State& state, int64_t isa) {
  const auto want = static_cast<blip::cpu::Isa>(isa);
  if (static_cast<int>(want) > static_cast<int>(blip::cpu::detected_isa())) {
    state.SkipWithError("this CPU lacks the instruction set");
    return false;
  }
  blip::cpu::set_isa(want);
  return true;
}

void set_stream_counters(benchmark::State& state, int64_t elements) {
  state.SetBytesProcessed(state.iterations() * elements * 2 * static_cast<int64_t>(sizeof(float)));
  state.SetItemsProcessed(state.iterations() * elements);
}

void BM_LayerNorm(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  const int64_t rows = state.range(0), cols = state.range(1);
  if (!use_isa(state, state.range(2))) return;
  const auto x = random_tensor({rows, cols}, 4), w = random_tensor({cols}, 5), b = random_tensor({cols}, 6);
  for (auto _ : state) {
    blip::Tensor<float> y = blip::layer_norm(x, w, b, 1e-6);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_stream_counters(state, rows * cols);
}
BENCHMARK(BM_LayerNorm)->ArgNames({"rows", "cols", "isa"})->ArgsProduct({{577, 4616}, {768}, {0, 1, 2}})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_Softmax(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  if (!use_isa(state, state.range(0))) return;
  const auto x = random_tensor({12, 577, 577}, 7);
  for (auto _ : state) {
    blip::Tensor<float> y = blip::softmax(x);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_stream_counters(state, x.numel());
}
BENCHMARK(BM_Softmax)->ArgName("isa")->DenseRange(0, 2)->UseRealTime()->Unit(benchmark::kMicrosecond);

constexpr int64_t kGeluElements = 577 * 3072;

// The library op: allocation + the vectorised kernel on 2 threads, on the forced instruction set.
void BM_Gelu_Blip(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  if (!use_isa(state, state.range(0))) return;
  const auto x = random_tensor({577, 3072}, 8);
  for (auto _ : state) {
    blip::Tensor<float> y = blip::gelu(x);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_stream_counters(state, kGeluElements);
}
BENCHMARK(BM_Gelu_Blip)->ArgName("isa")->DenseRange(0, 2)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The vectorised kernel alone on one thread: the like-for-like partner of the scalar loop.
void BM_Gelu_Kernel_1Thread(benchmark::State& state) {
  const auto x = random_tensor({577, 3072}, 8);
  auto y = blip::zeros<float>({577, 3072});
  omp_set_num_threads(1);
  for (auto _ : state) {
    blip::cpu::gelu(x.data(), y.data(), kGeluElements);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(bench_threads());
  set_stream_counters(state, kGeluElements);
}
BENCHMARK(BM_Gelu_Kernel_1Thread)->UseRealTime()->Unit(benchmark::kMicrosecond);

// What a straightforward implementation does: scalar std::erf per element, one thread.
void BM_Gelu_ScalarStdErf_1Thread(benchmark::State& state) {
  const auto x = random_tensor({577, 3072}, 8);
  auto y = blip::zeros<float>({577, 3072});
  const float* in = x.data();
  float* out = y.data();
  constexpr float kInvSqrt2 = static_cast<float>(std::numbers::sqrt2 / 2);
  for (auto _ : state) {
    for (int64_t i = 0; i < kGeluElements; ++i) out[i] = 0.5f * in[i] * (1.0f + std::erf(in[i] * kInvSqrt2));
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  set_stream_counters(state, kGeluElements);
}
BENCHMARK(BM_Gelu_ScalarStdErf_1Thread)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- Attention: [B=1, H=12, S=577, d=64], no gradient (inference path).

constexpr int64_t kHeads = 12, kSeq = 577, kHeadDim = 64;

void set_attention_counters(benchmark::State& state) {
  const double flops = 4.0 * kHeads * kSeq * kSeq * kHeadDim;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// A BERT-style additive key mask [B,1,1,S]: the last 77 keys masked out.
blip::Tensor<float> key_mask() {
  std::vector<float> values(kSeq, 0.0f);
  for (int64_t j = kSeq - 77; j < kSeq; ++j) values[static_cast<size_t>(j)] = -10000.0f;
  return blip::Tensor<float>::from_vector({1, 1, 1, kSeq}, values);
}

// Precision::bf16 runs it in a bf16 PrecisionScope: q, k, v rounded to bf16 per call (timed),
// bf16 products (BM_Attention_BlipBf16).
template <blip::Precision P>
void BM_Attention_Blip(benchmark::State& state) {
  blip::NoGradGuard no_grad;
  blip::cpu::set_isa(blip::cpu::detected_isa());
  const bool masked = state.range(0) != 0;
  const auto q = random_tensor({1, kHeads, kSeq, kHeadDim}, 9), k = random_tensor({1, kHeads, kSeq, kHeadDim}, 10),
             v = random_tensor({1, kHeads, kSeq, kHeadDim}, 11);
  const blip::Tensor<float> mask = masked ? key_mask() : blip::Tensor<float>();
  const blip::PrecisionScope precision(P);
  for (auto _ : state) {
    blip::Tensor<float> y = blip::scaled_dot_product_attention(q, k, v, mask);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_attention_counters(state);
}
BENCHMARK(BM_Attention_Blip<blip::Precision::fp32>)->Name("BM_Attention_Blip")->ArgName("masked")->Arg(0)->Arg(1)
    ->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Attention_Blip<blip::Precision::bf16>)->Name("BM_Attention_BlipBf16")->ArgName("masked")->Arg(0)->Arg(1)
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// Unfused baseline: per head, a full [S,S] score matrix from cblas_sgemm (OpenBLAS threads),
// the library's row softmax, then cblas_sgemm with v. Buffers preallocated.
void BM_Attention_OpenBLAS_Unfused(benchmark::State& state) {
  const auto q = random_tensor({1, kHeads, kSeq, kHeadDim}, 9), k = random_tensor({1, kHeads, kSeq, kHeadDim}, 10),
             v = random_tensor({1, kHeads, kSeq, kHeadDim}, 11);
  auto scores = blip::zeros<float>({kSeq, kSeq}), out = blip::zeros<float>({1, kHeads, kSeq, kHeadDim});
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  const int s = static_cast<int>(kSeq), d = static_cast<int>(kHeadDim);
  for (auto _ : state) {
    for (int64_t h = 0; h < kHeads; ++h) {
      const int64_t off = h * kSeq * kHeadDim;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s, s, d, scale, q.data() + off, d, k.data() + off, d, 0.0f,
                  scores.data(), s);
      blip::cpu::softmax_rows(scores.data(), scores.data(), kSeq, kSeq);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s, d, s, 1.0f, scores.data(), s, v.data() + off, d, 0.0f,
                  out.data() + off, d);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_attention_counters(state);
}
BENCHMARK(BM_Attention_OpenBLAS_Unfused)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  // Fixed thread count so the numbers are comparable across runs and with the docs.
  const int threads = bench_threads();
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("blip_cpu_isa", blip::cpu::isa_name(blip::cpu::detected_isa()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
