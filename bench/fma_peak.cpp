// fma_peak — the machine's fp32 FMA peak, the yardstick every figure in docs/performance.md is
// quoted against: each thread runs 12 independent FMA chains (enough to cover the FMA latency
// on Zen 4/5 and recent Intel) of 512-bit vectors where the CPU has AVX-512F, else 256-bit
// (AVX2 + FMA), for ~0.5 s, and the median of 5 runs is printed as GFLOP/s for 1 thread and
// for all OpenMP threads.
//
//   OMP_NUM_THREADS=2 build-test/bench/fma_peak
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

constexpr int kChains = 12;

__attribute__((target("avx512f"))) double run_zmm(long iters) {
  // Twelve named accumulators, so each stays in a register (an array would go through memory).
  __m512 c0 = _mm512_set1_ps(1.00f), c1 = _mm512_set1_ps(1.01f), c2 = _mm512_set1_ps(1.02f), c3 = _mm512_set1_ps(1.03f), c4 = _mm512_set1_ps(1.04f),
         c5 = _mm512_set1_ps(1.05f), c6 = _mm512_set1_ps(1.06f), c7 = _mm512_set1_ps(1.07f), c8 = _mm512_set1_ps(1.08f), c9 = _mm512_set1_ps(1.09f),
         c10 = _mm512_set1_ps(1.10f), c11 = _mm512_set1_ps(1.11f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
    c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b); c2 = _mm512_fmadd_ps(c2, a, b); c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b); c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b); c9 = _mm512_fmadd_ps(c9, a, b); c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
  }
  alignas(64) float v[16];
  float s = 0;
  for (const __m512& c : {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11}) {
    _mm512_store_ps(v, c);
    for (float x : v) s += x;
  }
  return s;
}

__attribute__((target("avx2,fma"))) double run_ymm(long iters) {
  // Twelve named accumulators, so each stays in a register (an array would go through memory).
  __m256 c0 = _mm256_set1_ps(1.00f), c1 = _mm256_set1_ps(1.01f), c2 = _mm256_set1_ps(1.02f), c3 = _mm256_set1_ps(1.03f), c4 = _mm256_set1_ps(1.04f),
         c5 = _mm256_set1_ps(1.05f), c6 = _mm256_set1_ps(1.06f), c7 = _mm256_set1_ps(1.07f), c8 = _mm256_set1_ps(1.08f), c9 = _mm256_set1_ps(1.09f),
         c10 = _mm256_set1_ps(1.10f), c11 = _mm256_set1_ps(1.11f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b); c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
    c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b); c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
    c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b); c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  alignas(64) float v[8];
  float s = 0;
  for (const __m256& c : {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11}) {
    _mm256_store_ps(v, c);
    for (float x : v) s += x;
  }
  return s;
}

// GFLOP/s of `threads` threads each running `iters` iterations.
double gflops(int threads, long iters, bool zmm) {
  double sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  sink += zmm ? run_zmm(iters) : run_ymm(iters);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink == 42.0) std::printf(" ");  // keep the work
  const double lanes = zmm ? 16 : 8;
  return threads * double(iters) * kChains * lanes * 2 / s / 1e9;
}

}  // namespace

int main() {
  const bool zmm = __builtin_cpu_supports("avx512f");
  if (!zmm && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    std::printf("fma_peak: this CPU has neither AVX-512F nor AVX2+FMA\n");
    return 1;
  }
  const int all = omp_get_max_threads();
  long iters = 1 << 16;
  for (;;) {  // calibrate: one thread for about half a second
    const auto t0 = std::chrono::steady_clock::now();
    gflops(1, iters, zmm);
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > 0.5 || iters >= (1L << 34)) break;
    iters *= 2;
  }
  for (int threads : {1, all}) {
    std::vector<double> runs;
    for (int r = 0; r < 5; ++r) runs.push_back(gflops(threads, iters, zmm));
    std::sort(runs.begin(), runs.end());
    std::printf("fp32 FMA peak, %s, %d thread%s: %.1f GFLOP/s (median of 5; min %.1f, max %.1f)\n",
                zmm ? "512-bit (AVX-512F)" : "256-bit (AVX2+FMA)", threads, threads == 1 ? "" : "s", runs[2],
                runs.front(), runs.back());
    if (all == 1) break;
  }
  return 0;
}
