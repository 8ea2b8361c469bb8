// blip/backend/cpu/kernels.hpp — Kernels<Cpu>: the CPU side of the kernel interface
// (backend/kernels.hpp has the contract). Each member forwards to the kernel family that holds
// the loops; float kernels with an AVX2/AVX-512 version go through the run-time ISA dispatch of
// backend/cpu/isa.hpp.
#pragma once

#include <cstdint>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/attention.hpp"
#include "blip/backend/cpu/bf16_products.hpp"
#include "blip/backend/cpu/contrastive.hpp"
#include "blip/backend/cpu/copy.hpp"
#include "blip/backend/cpu/elementwise.hpp"
#include "blip/backend/cpu/gemm.hpp"
#include "blip/backend/cpu/half_gemm.hpp"
#include "blip/backend/cpu/index.hpp"
#include "blip/backend/cpu/isa.hpp"
#include "blip/backend/cpu/optim.hpp"
#include "blip/backend/cpu/reduce.hpp"
#include "blip/backend/cpu/rowwise.hpp"
#include "blip/backend/cpu/select.hpp"

namespace blip::backend {

template <Device D>
struct Kernels;

template <>
struct Kernels<Cpu> {
  static constexpr const char* name = "cpu";

  // GEMM family.
  template <class T>
  static void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                   const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
    cpu::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  template <class T>
  static void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                           int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                           int64_t ldc, int64_t stride_c, int64_t batch) {
    cpu::gemm_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c,
                      batch);
  }
  template <class T>
  static void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, const T* bias, T* y) {
    cpu::linear(x, rows, in, w, out, bias, y);
  }
  static void linear_bf16(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, const float* bias,
                          float* y) {
    cpu::linear_bf16(x, rows, in, w, out, bias, y);
  }
  static PackedWeight pack_linear_bf16(const bf16* w, int64_t out, int64_t in) {
    return cpu::pack_linear_bf16(w, out, in);
  }
  static void linear_bf16_packed(const bf16* x, int64_t rows, int64_t in, const PackedWeight& w, int64_t out,
                                 const float* bias, float* y) {
    cpu::linear_bf16_packed(x, rows, in, w, out, bias, y);
  }
  static PackedWeight pack_linear_s8(const float* w, int64_t out, int64_t in) { return cpu::pack_linear_s8(w, out, in); }
  static void quantize_rows_s8(const float* x, int8_t* q, float* scale, int64_t rows, int64_t cols) {
    cpu::isa::quantize_rows_s8(x, q, scale, rows, cols);
  }
  static void linear_s8_packed(const int8_t* xq, const float* x_scale, int64_t rows, int64_t in, const PackedWeight& w,
                               int64_t out, const float* bias, float* y) {
    cpu::linear_s8_packed(xq, x_scale, rows, in, w, out, bias, y);
  }
  static PackedWeight pack_linear_f16(const float* w, int64_t out, int64_t in) { return cpu::pack_linear_f16(w, out, in); }
  static void linear_f16_packed(const float* x, int64_t rows, int64_t in, const PackedWeight& packed, const float* w,
                                int64_t out, const float* bias, float* y) {
    cpu::linear_f16_packed(x, rows, in, packed, w, out, bias, y);
  }
  static void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda,
                        const bf16* b, int64_t ldb, float* c, int64_t ldc) {
    cpu::gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  }
  static void gemm_f16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                       const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
    cpu::gemm_f16(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, c, ldc);
  }
  static void to_bf16(const float* x, bf16* y, int64_t n) { cpu::isa::to_bf16(x, y, n); }
  // Not a kernel: whether bf16 products run faster than float ones here (cpu/bf16_products.hpp).
  static bool bf16_products_pay() { return cpu::bf16_products_pay(); }
  // Not a kernel: whether gemm_f16 and the fp16 linear layers multiply in fp16 here (AVX512-FP16).
  static bool f16_products_available() { return cpu::f16_products_available(); }

  // Elementwise.
  template <class T>
  static void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& sa, const T* b, const Strides& sb,
                     T* out) {
    if (is_contiguous_layout(shape, sa) && is_contiguous_layout(shape, sb) &&
        cpu::isa::binary_flat(static_cast<int>(op), a, b, out, numel(shape)))
      return;
    auto run = [&](auto f) { cpu::binary(shape, a, sa, b, sb, out, f); };
    switch (op) {
      case BinaryOp::add: run([](T x, T y) { return x + y; }); break;
      case BinaryOp::sub: run([](T x, T y) { return x - y; }); break;
      case BinaryOp::mul: run([](T x, T y) { return x * y; }); break;
      case BinaryOp::div: run([](T x, T y) { return x / y; }); break;
    }
  }
  template <class T>
  static void scale(const T* x, T* y, int64_t n, T factor) {
    cpu::isa::scale(x, y, n, factor);
  }
  template <class T>
  static void unary(UnaryOp op, const T* x, T* y, int64_t n) {
    switch (op) {
      case UnaryOp::gelu: cpu::isa::gelu(x, y, n); break;
      case UnaryOp::tanh: cpu::tanh(x, y, n); break;
      case UnaryOp::exp: cpu::isa::exp(x, y, n); break;
      case UnaryOp::log: cpu::log(x, y, n); break;
    }
  }
  template <class T>
  static void gelu_backward(const T* x, const T* gy, T* gx, int64_t n) {
    cpu::isa::gelu_backward(x, gy, gx, n);
  }

  // Rows of a contiguous [rows, cols] block.
  template <class T>
  static void softmax(const T* x, T* y, int64_t rows, int64_t cols) {
    cpu::isa::softmax_rows(x, y, rows, cols);
  }
  template <class T>
  static void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
    cpu::isa::softmax_backward_rows(y, gy, gx, rows, cols);
  }
  template <class T>
  static void log_softmax(const T* x, T* y, int64_t rows, int64_t cols) {
    cpu::isa::log_softmax_rows(x, y, rows, cols);
  }
  template <class T>
  static void log_softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
    cpu::isa::log_softmax_backward_rows(y, gy, gx, rows, cols);
  }
  template <class T>
  static void layer_norm(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, int64_t rows,
                         int64_t cols, double eps) {
    cpu::isa::layer_norm_rows(x, weight, bias, y, mean, rstd, rows, cols, eps);
  }
  template <class T>
  static void layer_norm_backward(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy, T* gx,
                                  T* gweight, T* gbias, int64_t rows, int64_t cols) {
    cpu::isa::layer_norm_backward_rows(x, weight, mean, rstd, gy, gx, gweight, gbias, rows, cols);
  }
  template <class T>
  static void l2_normalize(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
    cpu::isa::l2_normalize_rows(x, y, norms, rows, cols, eps);
  }
  template <class T>
  static void l2_normalize_backward(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols,
                                    double eps) {
    cpu::isa::l2_normalize_backward_rows(y, norms, gy, gx, rows, cols, eps);
  }

  // Reductions.
  template <class T>
  static void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
    cpu::isa::sum_middle(x, outer, r, inner, out);
  }

  // Indexing.
  static void check_indices(const int64_t* index, int64_t n, int64_t extent, const char* op, const char* what) {
    cpu::check_indices(index, n, extent, op, what);
  }
  template <class T>
  static void gather(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer,
                     int64_t inner) {
    cpu::gather(src, src_extent, dst, index, n, outer, inner);
  }
  template <class T>
  static void scatter_add(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n, int64_t outer,
                          int64_t inner, int64_t skip) {
    cpu::scatter_add(src, dst, dst_extent, index, n, outer, inner, skip);
  }
  template <class T, class M>
  static void masked_fill(const T* x, const M* mask, T value, T* y, int64_t n) {
    cpu::masked_fill(x, mask, value, y, n);
  }
  template <class T, class M>
  static void masked_fill_backward(const T* gy, const M* mask, T* gx, int64_t n) {
    cpu::masked_fill_backward(gy, mask, gx, n);
  }

  // Selection and losses.
  template <class T>
  static void topk(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int64_t* indices) {
    cpu::topk(x, rows, n, k, values, indices);
  }
  template <class T>
  static void topk_backward(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T fill, T* gx) {
    cpu::topk_backward(gy, indices, rows, n, k, fill, gx);
  }
  template <class T>
  static void nll_mean(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
    cpu::nll_mean(log_probs, labels, n, c, loss);
  }
  template <class T>
  static void nll_mean_backward(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy, T* gx) {
    cpu::nll_mean_backward(log_probs, labels, n, c, gy, gx);
  }

  // Attention.
  template <class T>
  static void attention(const AttentionArgs<T>& args) {
    cpu::attention(args);
  }
  static void attention_bf16(const AttentionArgs<float, bf16>& args) { cpu::attention(args); }
  template <class T>
  static void attention_backward(const AttentionBackwardArgs<T>& args) {
    cpu::attention_backward(args);
  }
  static void attention_backward_bf16(const AttentionBackwardBf16Args& args) { cpu::attention_backward_bf16(args); }

  // Parameter updates.
  template <class T>
  static void adamw(const AdamWTensor<T>* tensors, size_t count, const AdamWCoefficients<T>& c) {
    for (size_t i = 0; i < count; ++i) cpu::isa::adamw(tensors[i].p, tensors[i].m, tensors[i].v, tensors[i].g, tensors[i].n, c);
  }
  template <class T>
  static void ema(const EmaTensor<T>* tensors, size_t count, T keep, T take) {
    for (size_t i = 0; i < count; ++i) cpu::isa::ema(tensors[i].m, tensors[i].v, tensors[i].n, keep, take);
  }

  // Copies.
  template <class T>
  static void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides) {
    cpu::assign(shape, src, src_strides, dst, dst_strides);
  }
  static void copy_bulk(const BulkCopy* copies, size_t n) { cpu::copy_bulk(copies, n); }
  template <class T>
  static void fill(T* dst, int64_t n, T value) {
    cpu::fill(dst, n, value);
  }
  template <class T>
  static void iota(T* out, int64_t n, T start, int64_t divisor) {
    cpu::iota(out, n, start, divisor);
  }
  template <class T>
  static void clamp(T* x, int64_t n, T lo, T hi) {
    cpu::clamp(x, n, lo, hi);
  }

  // Randomness and the contrastive head's bookkeeping (backend/cpu/contrastive.hpp).
  template <class T>
  static void dropout_mask(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed) {
    cpu::dropout_mask(out, n, threshold, keep_scale, seed);
  }
  template <class U>
  static void match_ids(const int64_t* row_ids, int64_t rows, const int64_t* col_ids, int64_t cols, U* out,
                        bool normalise) {
    cpu::match_ids(row_ids, rows, col_ids, cols, out, normalise);
  }
  template <class T>
  static void sample_negatives(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids,
                               const int64_t* col_ids, int64_t row_offset, uint64_t seed, int64_t* out) {
    cpu::sample_negatives(weights, rows, cols, row_ids, col_ids, row_offset, seed, out);
  }
  template <class T>
  static void queue_enqueue(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr) {
    cpu::queue_enqueue(queue, E, Q, src, B, ptr);
  }
  static void queue_advance(int64_t* ptr, int64_t B, int64_t Q) { cpu::queue_advance(ptr, B, Q); }
};

}  // namespace blip::backend
