// blip/backend/cpu/blas.hpp — GEMM on the CPU through OpenBLAS (cblas).
//
// Why OpenBLAS and not Eigen's product: measured side by side at the BLIP-base shapes
// (docs/performance.md), OpenBLAS's sgemm kernels beat Eigen's on this Zen 4 machine, and it
// threads with the same OpenMP runtime. Row-major operands; op(X) = X or Xᵀ.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "blip/backend/cpu/parallel.hpp"

namespace blip::cpu {

inline CBLAS_TRANSPOSE cblas_op(bool transpose) { return transpose ? CblasTrans : CblasNoTrans; }

inline void gemm_raw(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  cblas_sgemm(CblasRowMajor, cblas_op(trans_a), cblas_op(trans_b), static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}
inline void gemm_raw(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                 double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, cblas_op(trans_a), cblas_op(trans_b), static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// C = alpha * op(A) op(B) + beta * C, with op(A) [m,k], op(B) [k,n], C [m,n] (ldc >= n).
// Degenerate sizes are handled here because BLAS rejects leading dimensions of 0.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  gemm_raw(trans_a, trans_b, m, n, k, alpha, a, std::max<int64_t>(lda, 1), b,
           std::max<int64_t>(ldb, 1), beta, c, std::max<int64_t>(ldc, 1));
}

// Strided batch of GEMMs. Many small products (attention heads) run one per thread; large ones
// run one after another with BLAS's own threads.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                  const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                  int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  const bool small = m * n * k < (int64_t{1} << 22);
  if (batch > 1 && small) {
    parallel_for(batch, m * n * k, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
             c + i * stride_c, ldc);
    });
    return;
  }
  for (int64_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
         c + i * stride_c, ldc);
}

}  // namespace blip::cpu
