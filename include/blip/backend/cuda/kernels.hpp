// blip/backend/cuda/kernels.hpp — launchers of the blip::cuda device kernels, for the op
// dispatch of Tensor<T, Cuda>.
//
// Contract:
// - Every pointer is device memory from DeviceMemory<Cuda> (or a view into it); shapes and
//   strides count elements. The work is queued on the calling thread's current stream
//   (runtime.hpp) and the launchers return without waiting for it.
// - Instantiated for T = float and double; copy_strided and fill also for int64_t. Any other T
//   fails to link.
// - Throw blip::Error for a rank above 8, strides whose count differs from the shape's rank,
//   GEMM sizes or leading dimensions cuBLAS cannot take, and failed launches or cuBLAS calls.
// - Without BLIP_WITH_CUDA they throw blip::Error saying the program was built without CUDA.
#pragma once

#include <cstdint>

#include "blip/core/error.hpp"
#include "blip/core/shape.hpp"

namespace blip::cuda {

// Highest rank the elementwise kernels take (their layouts travel by value to the device).
inline constexpr int64_t max_kernel_rank = 8;

enum class BinaryOp { add, sub, mul, div };

#ifdef BLIP_WITH_CUDA

// Row-major strided-batched GEMM: for b in [0,batch): C_b = alpha * op(A_b) * op(B_b) + beta * C_b,
// op(X) = X or X^T; A_b = a + b*stride_a etc. lda/ldb/ldc are row-major leading dimensions.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
          int64_t ldc, int64_t stride_c, int64_t batch);

// out (contiguous, of `shape`) = a <op> b, where a and b are read through strides aligned to
// `shape` (stride 0 on broadcast axes). Rank up to 8.
template <class T>
void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& a_strides, const T* b,
            const Strides& b_strides, T* out);

// dst (contiguous, of `shape`) = src read through src_strides.
template <class T>
void copy_strided(const Shape& shape, const T* src, const Strides& src_strides, T* dst);

template <class T>
void fill(T* dst, int64_t n, T value);

#else

namespace detail {
[[noreturn]] inline void kernels_without_cuda(const char* what) {
  fail("blip::cuda::", what, ": this program was built without CUDA (configure blip with the "
       "CUDA toolkit and link blip::cuda)");
}
}  // namespace detail

template <class T>
void gemm(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t, const T*, int64_t,
          int64_t, T, T*, int64_t, int64_t, int64_t) {
  detail::kernels_without_cuda("gemm");
}
template <class T>
void binary(BinaryOp, const Shape&, const T*, const Strides&, const T*, const Strides&, T*) {
  detail::kernels_without_cuda("binary");
}
template <class T>
void copy_strided(const Shape&, const T*, const Strides&, T*) {
  detail::kernels_without_cuda("copy_strided");
}
template <class T>
void fill(T*, int64_t, T) {
  detail::kernels_without_cuda("fill");
}

#endif

}  // namespace blip::cuda
