// blip/backend/cuda/kernel_table.hpp — Kernels<Cuda>: the CUDA side of the kernel interface
// (backend/kernels.hpp has the contract). Members with a device kernel forward to the launchers
// of backend/cuda/kernels.hpp; every entry of BLIP_CUDA_MISSING (backend/kernel_list.hpp)
// becomes a stub taking any arguments that throws blip::Error naming the kernel.
#pragma once

#include <cstdint>

#include "blip/backend/args.hpp"
#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/kernel_list.hpp"
#include "blip/core/device.hpp"
#include "blip/core/layout.hpp"

namespace blip::backend {

template <Device D>
struct Kernels;

namespace detail {

[[noreturn]] inline void missing_kernel(const char* device, const char* kernel) {
  fail("backend::Kernels<", device, ">::", kernel, ": no ", device, " kernel yet (see BLIP_CUDA_MISSING in "
       "backend/kernel_list.hpp; run it on Cpu, or move the tensors with blip::to<Cpu>)");
}

#define BLIP_CUDA_STUB(name) \
  template <class... Args>   \
  static void name(Args&&...) { missing_kernel("cuda", #name); }
struct CudaMissingKernels {
  BLIP_CUDA_MISSING(BLIP_CUDA_STUB)
};
#undef BLIP_CUDA_STUB

}  // namespace detail

template <>
struct Kernels<Cuda> : detail::CudaMissingKernels {
  static constexpr const char* name = "cuda";

  template <class T>
  static void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                   const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
    cuda::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
  }
  template <class T>
  static void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                           int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                           int64_t ldc, int64_t stride_c, int64_t batch) {
    cuda::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch);
  }
  template <class T>
  static void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, const T* bias, T* y) {
    if (rows == 0 || out == 0) return;
    if (bias) cuda::copy_strided(Shape{rows, out}, bias, Strides{0, 1}, y);  // the bias, broadcast over rows
    cuda::gemm(false, true, rows, out, in, T(1), x, in, 0, w, in, 0, bias ? T(1) : T(0), y, out, 0, 1);
  }
  // cuBLASLt reads the plain layout: nothing to pack, so linear_bf16_packed is never reached.
  static PackedWeight pack_linear_bf16(const bf16*, int64_t, int64_t) { return {}; }
  template <class T>
  static void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& sa, const T* b, const Strides& sb,
                     T* out) {
    cuda::binary(static_cast<cuda::BinaryOp>(op), shape, a, sa, b, sb, out);
  }
  // x * factor as a binary product with a one-element device scalar.
  template <class T>
  static void scale(const T* x, T* y, int64_t n, T factor) {
    if (n == 0) return;
    T* s = static_cast<T*>(DeviceMemory<Cuda>::allocate(sizeof(T)));
    DeviceMemory<Cuda>::copy_from_host(s, &factor, sizeof(T));
    cuda::binary(cuda::BinaryOp::mul, Shape{n}, x, Strides{1}, s, Strides{0}, y);
    DeviceMemory<Cuda>::release(s, sizeof(T));
  }
  template <class T>
  static void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides) {
    if (!is_contiguous_layout(shape, dst_strides))
      detail::missing_kernel("cuda", "assign (non-contiguous destination)");
    cuda::copy_strided(shape, src, src_strides, dst);
  }
  static void copy_bulk(const BulkCopy* copies, size_t n) {
    for (size_t i = 0; i < n; ++i) DeviceMemory<Cuda>::copy_within(copies[i].dst, copies[i].src, copies[i].bytes);
  }
  template <class T>
  static void fill(T* dst, int64_t n, T value) {
    cuda::fill(dst, n, value);
  }
};

}  // namespace blip::backend
