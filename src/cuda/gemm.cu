// src/cuda/gemm.cu — row-major strided-batched GEMM over column-major cuBLAS.
//
// A row-major matrix read as column-major is its transpose, so C = op(A) op(B) in row-major is
// C^T = op(B)^T op(A)^T in column-major: cuBLAS gets the operands swapped and m, n swapped,
// with the transpose flags unchanged and the same leading dimensions.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/cuda/runtime.hpp"
#include "check.hpp"

namespace blip::cuda {
namespace {

// k == 0 leaves C = beta * C; done here since cuBLAS's treatment of k == 0 (and of the null
// A/B pointers an empty tensor has) is not documented. beta == 0 overwrites, as BLAS does, so
// NaNs in uninitialised C do not survive.
template <class T>
__global__ void scale_kernel(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                             int64_t batch, T beta) {
  const int64_t total = batch * m * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t col = i % n, row = (i / n) % m, b = i / (n * m);
    T& x = c[b * stride_c + row * ldc + col];
    x = beta == T(0) ? T(0) : beta * x;
  }
}

int to_int(int64_t value, const char* what) {
  BLIP_CHECK(value <= INT_MAX, "blip::cuda::gemm: ", what, " = ", value,
             " exceeds the int range cuBLAS takes");
  return static_cast<int>(value);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
          int64_t ldc, int64_t stride_c, int64_t batch) {
  BLIP_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0,
             "blip::cuda::gemm: negative size m=", m, " n=", n, " k=", k, " batch=", batch);
  if (m == 0 || n == 0 || batch == 0) return;
  BLIP_CHECK(ldc >= n, "blip::cuda::gemm: ldc=", ldc, " is below n=", n);
  const cudaStream_t stream = static_cast<cudaStream_t>(current_stream());
  if (k == 0) {
    const int64_t total = batch * m * n;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 1 << 16));
    scale_kernel<T><<<blocks, 256, 0, stream>>>(c, m, n, ldc, stride_c, batch, beta);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) fail("blip::cuda::gemm: kernel launch failed: ", cudaGetErrorString(err));
    return;
  }
  // Row-major extents of the stored operands: A is m x k (k x m when transposed), B is k x n.
  const int64_t a_cols = trans_a ? m : k;
  const int64_t b_cols = trans_b ? k : n;
  BLIP_CHECK(lda >= a_cols, "blip::cuda::gemm: lda=", lda, " is below the ", a_cols,
             " columns of A", trans_a ? " (transposed)" : "");
  BLIP_CHECK(ldb >= b_cols, "blip::cuda::gemm: ldb=", ldb, " is below the ", b_cols,
             " columns of B", trans_b ? " (transposed)" : "");

  const auto handle = static_cast<cublasHandle_t>(cublas_handle());
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int cm = to_int(n, "n"), cn = to_int(m, "m"), ck = to_int(k, "k");
  const int clda = to_int(ldb, "ldb"), cldb = to_int(lda, "lda"), cldc = to_int(ldc, "ldc");
  const int cbatch = to_int(batch, "batch");
  if constexpr (std::is_same_v<T, float>) {
    BLIP_CUBLAS_CHECK(detail::cublas().sgemm_strided_batched(handle, op_b, op_a, cm, cn, ck, &alpha, b, clda,
                                                stride_b, a, cldb, stride_a, &beta, c, cldc,
                                                stride_c, cbatch));
  } else {
    static_assert(std::is_same_v<T, double>, "blip::cuda::gemm: float or double only");
    BLIP_CUBLAS_CHECK(detail::cublas().dgemm_strided_batched(handle, op_b, op_a, cm, cn, ck, &alpha, b, clda,
                                                stride_b, a, cldb, stride_a, &beta, c, cldc,
                                                stride_c, cbatch));
  }
}

// C [m, n] (row stride ldc, float) = op(A) · op(B) for bf16 A, B: cuBLAS with bf16 inputs and
// float accumulation and output (CUBLAS_COMPUTE_32F), beta = 0 or 1 (1: C holds a bias already).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda, const bf16* b,
               int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  BLIP_CHECK(m >= 0 && n >= 0 && k >= 0, "blip::cuda::gemm_bf16: negative size m=", m, " n=", n, " k=", k);
  if (m == 0 || n == 0) return;
  BLIP_CHECK(ldc >= n, "blip::cuda::gemm_bf16: ldc=", ldc, " is below n=", n);
  if (k == 0) {  // C = 0 (or C unchanged when accumulating), only the [m, n] block of C
    if (accumulate) return;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((m * n + 255) / 256, 1 << 16));
    scale_kernel<float><<<blocks, 256, 0, static_cast<cudaStream_t>(current_stream())>>>(c, m, n, ldc, 0, 1, 0.0f);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) fail("blip::cuda::gemm_bf16: kernel launch failed: ", cudaGetErrorString(err));
    return;
  }
  BLIP_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n), "blip::cuda::gemm_bf16: lda=", lda, " or ldb=", ldb,
             " is below the operand's columns");
  const auto handle = static_cast<cublasHandle_t>(cublas_handle());
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: operands swapped, as in gemm above.
  BLIP_CUBLAS_CHECK(detail::cublas().gemm_ex(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, b, CUDA_R_16BF,
                                 to_int(ldb, "ldb"), a, CUDA_R_16BF, to_int(lda, "lda"), &beta, c, CUDA_R_32F,
                                 to_int(ldc, "ldc"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

#define BLIP_INSTANTIATE_GEMM(T)                                                             \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t, \
                        const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t);

BLIP_INSTANTIATE_GEMM(float)
BLIP_INSTANTIATE_GEMM(double)

}  // namespace blip::cuda
