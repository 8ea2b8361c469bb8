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
    cuda::linear(x, rows, in, w, out, bias, y);
  }
  static void linear_bf16(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, const float* bias,
                          float* y) {
    cuda::linear_bf16(x, rows, in, w, out, bias, y);
  }
  static void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda,
                        const bf16* b, int64_t ldb, float* c, int64_t ldc) {
    cuda::gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, false);
  }
  // cuBLAS reads the plain layout: nothing to pack, so linear_bf16_packed is never reached.
  static PackedWeight pack_linear_bf16(const bf16*, int64_t, int64_t) { return {}; }
  // No int8 GEMM on Cuda yet: an empty weight sends linear() under an int8 scope to its bf16 path.
  static PackedWeight pack_linear_s8(const float*, int64_t, int64_t) { return {}; }
  // No fp16 GEMM on Cuda: an fp16 scope's linear layers take the bf16 path there.
  static PackedWeight pack_linear_f16(const float*, int64_t, int64_t) { return {}; }
  template <class T>
  static void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& sa, const T* b, const Strides& sb,
                     T* out) {
    cuda::binary(static_cast<cuda::BinaryOp>(op), shape, a, sa, b, sb, out);
  }
  template <class T>
  static void scale(const T* x, T* y, int64_t n, T factor) {
    cuda::scale(x, y, n, factor);
  }
  template <class T>
  static void unary(UnaryOp op, const T* x, T* y, int64_t n) {
    cuda::unary(op, x, y, n);
  }
  template <class T>
  static void gelu_backward(const T* x, const T* gy, T* gx, int64_t n) {
    cuda::gelu_backward(x, gy, gx, n);
  }

  template <class T>
  static void softmax(const T* x, T* y, int64_t rows, int64_t cols) {
    cuda::softmax(x, y, rows, cols, false);
  }
  template <class T>
  static void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
    cuda::softmax_backward(y, gy, gx, rows, cols, false);
  }
  template <class T>
  static void log_softmax(const T* x, T* y, int64_t rows, int64_t cols) {
    cuda::softmax(x, y, rows, cols, true);
  }
  template <class T>
  static void log_softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
    cuda::softmax_backward(y, gy, gx, rows, cols, true);
  }
  template <class T>
  static void layer_norm(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, int64_t rows,
                         int64_t cols, double eps) {
    cuda::layer_norm(x, weight, bias, y, mean, rstd, rows, cols, eps);
  }
  template <class T>
  static void layer_norm_backward(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy, T* gx,
                                  T* gweight, T* gbias, int64_t rows, int64_t cols) {
    cuda::layer_norm_backward(x, weight, mean, rstd, gy, gx, gweight, gbias, rows, cols);
  }
  template <class T>
  static void l2_normalize(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
    cuda::l2_normalize(x, y, norms, rows, cols, eps);
  }
  template <class T>
  static void l2_normalize_backward(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols,
                                    double eps) {
    cuda::l2_normalize_backward(y, norms, gy, gx, rows, cols, eps);
  }
  template <class T>
  static void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
    cuda::sum_middle(x, outer, r, inner, out);
  }
  // Deferred: a bad index is thrown at the next host wait on this stream (cuda/runtime.hpp).
  static void check_indices(const int64_t* index, int64_t n, int64_t extent, const char* op, const char* what) {
    cuda::check_indices(index, n, extent, op, what);
  }
  template <class T>
  static void topk(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int64_t* indices) {
    cuda::topk(x, rows, n, k, values, indices);
  }
  template <class T>
  static void topk_backward(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T fill, T* gx) {
    cuda::topk_backward(gy, indices, rows, n, k, fill, gx);
  }
  template <class T>
  static void gather(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer,
                     int64_t inner) {
    cuda::gather(src, src_extent, dst, index, n, outer, inner);
  }
  template <class T>
  static void scatter_add(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n, int64_t outer,
                          int64_t inner, int64_t skip) {
    cuda::scatter_add(src, dst, dst_extent, index, n, outer, inner, skip);
  }
  template <class T>
  static void nll_mean(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
    cuda::nll_mean(log_probs, labels, n, c, loss);
  }
  template <class T>
  static void nll_mean_backward(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy, T* gx) {
    cuda::nll_mean_backward(log_probs, labels, n, c, gy, gx);
  }
  template <class T>
  static void attention(const AttentionArgs<T>& args) {
    cuda::attention(args);
  }
  static void attention_bf16(const AttentionArgs<float, bf16>& args) { cuda::attention(args); }
  template <class T>
  static void attention_backward(const AttentionBackwardArgs<T>& args) {
    cuda::attention_backward(args);
  }
  static void attention_backward_bf16(const AttentionBackwardBf16Args& args) { cuda::attention_backward_bf16(args); }
  template <class T, class M>
  static void masked_fill(const T* x, const M* mask, T value, T* y, int64_t n) {
    cuda::masked_fill(x, mask, value, y, n);
  }
  template <class T, class M>
  static void masked_fill_backward(const T* gy, const M* mask, T* gx, int64_t n) {
    cuda::masked_fill(gy, mask, T(0), gx, n);
  }
  template <class T>
  static void adamw(const AdamWTensor<T>* tensors, size_t count, const AdamWCoefficients<T>& c) {
    cuda::adamw(tensors, count, c);
  }
  template <class T>
  static void ema(const EmaTensor<T>* tensors, size_t count, T keep, T take) {
    cuda::ema(tensors, count, keep, take);
  }
  static void to_bf16(const float* x, bf16* y, int64_t n) { cuda::to_bf16(x, y, n); }
  // Not a kernel: bf16 products (tensor cores) always outrun float ones on the GPUs supported.
  static bool bf16_products_pay() { return true; }
  // Not a kernel: no fp16 products on Cuda yet (an fp16 scope takes the bf16 path there).
  static bool f16_products_available() { return false; }
  template <class T>
  static void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides) {
    if (is_contiguous_layout(shape, dst_strides)) cuda::copy_strided(shape, src, src_strides, dst);
    else cuda::assign(shape, src, src_strides, dst, dst_strides);
  }
  static void copy_bulk(const BulkCopy* copies, size_t n) {
    for (size_t i = 0; i < n; ++i) DeviceMemory<Cuda>::copy_within(copies[i].dst, copies[i].src, copies[i].bytes);
  }
  template <class T>
  static void fill(T* dst, int64_t n, T value) {
    cuda::fill(dst, n, value);
  }
  template <class T>
  static void iota(T* out, int64_t n, T start, int64_t divisor) {
    cuda::iota(out, n, start, divisor);
  }
  template <class T>
  static void clamp(T* x, int64_t n, T lo, T hi) {
    cuda::clamp(x, n, lo, hi);
  }
  template <class T>
  static void dropout_mask(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed) {
    cuda::dropout_mask(out, n, threshold, keep_scale, seed);
  }
  template <class U>
  static void match_ids(const int64_t* row_ids, int64_t rows, const int64_t* col_ids, int64_t cols, U* out,
                        bool normalise) {
    cuda::match_ids(row_ids, rows, col_ids, cols, out, normalise);
  }
  template <class T>
  static void sample_negatives(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids,
                               const int64_t* col_ids, int64_t row_offset, uint64_t seed, int64_t* out) {
    cuda::sample_negatives(weights, rows, cols, row_ids, col_ids, row_offset, seed, out);
  }
  template <class T>
  static void queue_enqueue(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr) {
    cuda::queue_enqueue(queue, E, Q, src, B, ptr);
  }
  static void queue_advance(int64_t* ptr, int64_t B, int64_t Q) { cuda::queue_advance(ptr, B, Q); }
};

}  // namespace blip::backend
