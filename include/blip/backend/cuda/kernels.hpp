// blip/backend/cuda/kernels.hpp — launchers of the blip::cuda device kernels, for the op
// dispatch of Tensor<T, Cuda>.
//
// Contract:
// - Every pointer is device memory from DeviceMemory<Cuda> (or a view into it); shapes and
//   strides count elements. The work is queued on the calling thread's current stream
//   (runtime.hpp) and the launchers return without waiting for it.
// - Instantiated for T = float and double; copy_strided, assign, fill, gather, scatter_add and sum_middle
//   also for int64_t (copy_strided, assign, fill and sum_middle for uint8_t masks too); masked_fill's
//   mask M for uint8_t, int32_t and int64_t. Any other T fails to link.
// - The row kernels (softmax, layer_norm, l2_normalize and their backward) take contiguous
//   [rows, cols] blocks, one thread block per row; their formulas and order of operations are
//   the CPU kernels' (backend/cpu/rowwise.hpp), sums in a fixed order (deterministic).
// - Throw blip::Error for a rank above 8, strides whose count differs from the shape's rank,
//   GEMM sizes or leading dimensions cuBLAS cannot take, and failed launches or cuBLAS calls.
// - Without BLIP_WITH_CUDA they throw blip::Error saying the program was built without CUDA.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "blip/backend/args.hpp"
#include "blip/core/dtype.hpp"
#include "blip/core/error.hpp"
#include "blip/core/shape.hpp"

namespace blip::cuda {

// Highest rank the elementwise kernels take (their layouts travel by value to the device).
inline constexpr int64_t max_kernel_rank = 8;

enum class BinaryOp { add, sub, mul, div };
using backend::UnaryOp;

// TF32 for float GEMMs (tensor cores, 10-bit mantissa products, float accumulation): an explicit
// opt-in for the whole process, off by default so fp32 means fp32. The first call reads
// BLIP_CUDA_TF32 (0 or 1) when set. Affects cuBLAS GEMMs and cuBLASLt linear layers on float.
namespace detail {
inline std::atomic<int>& tf32_choice() {
  static std::atomic<int> choice{-1};  // -1: BLIP_CUDA_TF32 not read yet
  return choice;
}
}  // namespace detail
inline void set_tf32(bool on) { detail::tf32_choice().store(on ? 1 : 0, std::memory_order_relaxed); }
inline bool tf32() {
  int choice = detail::tf32_choice().load(std::memory_order_relaxed);
  if (choice < 0) {
    const char* env = std::getenv("BLIP_CUDA_TF32");
    const std::string_view value = env ? env : "";
    if (value.empty() || value == "0") choice = 0;
    else if (value == "1") choice = 1;
    else fail("BLIP_CUDA_TF32='", std::string(value), "': set it to 0 or 1");
    detail::tf32_choice().store(choice, std::memory_order_relaxed);
  }
  return choice == 1;
}

// Which attention kernels run (src/cuda/attention.cu), for the whole process:
// - automatic: the tensor-core kernels for bf16 q/k/v (attention_bf16's forward and
//   attention_backward_bf16) where d and dv are multiples of 16 (sm_80 or newer), the tiled kernels (FlashAttention-2 style) elsewhere, the direct ones where a head
//   exceeds 128 or the tiles do not fit the GPU's shared memory;
// - direct: one block per query row (the first version; kept as a reference and fallback);
// - tiled: the tiled SIMT kernels, bf16 inputs widened (direct where they do not fit);
// - tensor_core: as automatic (named so tests and benchmarks can ask for each path).
// The first call reads BLIP_CUDA_ATTENTION (automatic|direct|tiled|tensor_core) when set.
enum class AttentionKernel { automatic, direct, tiled, tensor_core };

inline const char* attention_kernel_name(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::direct: return "direct";
    case AttentionKernel::tiled: return "tiled";
    case AttentionKernel::tensor_core: return "tensor_core";
    default: return "automatic";
  }
}
inline AttentionKernel parse_attention_kernel(std::string_view name) {
  for (AttentionKernel k : {AttentionKernel::automatic, AttentionKernel::direct, AttentionKernel::tiled,
                            AttentionKernel::tensor_core})
    if (name == attention_kernel_name(k)) return k;
  fail("blip::cuda: unknown attention kernel '", std::string(name), "' (automatic, direct, tiled or tensor_core)");
}
namespace detail {
inline std::atomic<int>& attention_kernel_choice() {
  static std::atomic<int> choice{-1};  // -1: BLIP_CUDA_ATTENTION not read yet
  return choice;
}
}  // namespace detail
inline void set_attention_kernel(AttentionKernel k) {
  detail::attention_kernel_choice().store(static_cast<int>(k), std::memory_order_relaxed);
}
inline AttentionKernel attention_kernel() {
  int choice = detail::attention_kernel_choice().load(std::memory_order_relaxed);
  if (choice < 0) {
    const char* env = std::getenv("BLIP_CUDA_ATTENTION");
    choice = static_cast<int>(env && *env ? parse_attention_kernel(env) : AttentionKernel::automatic);
    detail::attention_kernel_choice().store(choice, std::memory_order_relaxed);
  }
  return static_cast<AttentionKernel>(choice);
}

#ifdef BLIP_WITH_CUDA

// Row-major strided-batched GEMM: for b in [0,batch): C_b = alpha * op(A_b) * op(B_b) + beta * C_b,
// op(X) = X or X^T; A_b = a + b*stride_a etc. lda/ldb/ldc are row-major leading dimensions.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
          int64_t ldc, int64_t stride_c, int64_t batch);

// C [m, n] (row stride ldc) = op(A) · op(B) (+ C when `accumulate`) for row-major bf16 A, B with
// float accumulation and a float C (cuBLAS, CUBLAS_COMPUTE_32F).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda, const bf16* b,
               int64_t ldb, float* c, int64_t ldc, bool accumulate);

// y [rows, out] = x [rows, in] · w [out, in]ᵀ (+ bias [out]), contiguous. float and bf16 (float y)
// go through cuBLASLt with the bias added by its epilogue (heuristic algorithm cached per shape
// and thread); double, and shapes Lt finds no algorithm for, broadcast the bias and run gemm.
template <class T>
void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, const T* bias, T* y);
void linear_bf16(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, const float* bias, float* y);

// out (contiguous, of `shape`) = a <op> b, where a and b are read through strides aligned to
// `shape` (stride 0 on broadcast axes). Rank up to 8.
template <class T>
void binary(BinaryOp op, const Shape& shape, const T* a, const Strides& a_strides, const T* b,
            const Strides& b_strides, T* out);

// dst (contiguous, of `shape`) = src read through src_strides.
template <class T>
void copy_strided(const Shape& shape, const T* src, const Strides& src_strides, T* dst);
// dst read through dst_strides (non-overlapping) = src read through src_strides.
template <class T>
void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides);

template <class T>
void fill(T* dst, int64_t n, T value);

// Contiguous elementwise maps over n elements (backend/cpu/elementwise.hpp's formulas).
template <class T>
void unary(UnaryOp op, const T* x, T* y, int64_t n);
template <class T>
void gelu_backward(const T* x, const T* gy, T* gx, int64_t n);
template <class T>
void scale(const T* x, T* y, int64_t n, T factor);
template <class T, class M>
void masked_fill(const T* x, const M* mask, T value, T* y, int64_t n);
void to_bf16(const float* x, bf16* y, int64_t n);
// Multi-tensor updates: the list goes to the device by value in the launch parameters, a few
// dozen tensors per launch (backend/args.hpp).
template <class T>
void ema(const backend::EmaTensor<T>* tensors, size_t count, T keep, T take);
template <class T>
void adamw(const backend::AdamWTensor<T>* tensors, size_t count, const backend::AdamWCoefficients<T>& c);

// Rows of contiguous [rows, cols] blocks; `log_form` selects log_softmax.
template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log_form);
template <class T>
void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols, bool log_form);
template <class T>
void layer_norm(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                double eps);
template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy, T* gx, T* gweight,
                         T* gbias, int64_t rows, int64_t cols);
template <class T>
void l2_normalize(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps);
template <class T>
void l2_normalize_backward(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols, double eps);
// out[o, i] = sum_k x[o, k, i] for contiguous x [outer, r, inner].
template <class T>
void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out);

// Queues a check that every index[i] lies in [0, extent); a violation is thrown (the CPU's
// message) when the host next waits for this stream (runtime.hpp).
void check_indices(const int64_t* index, int64_t n, int64_t extent, const char* op, const char* what);
// Slices of [outer, extent, inner] blocks by device-resident int64 indices (backend/cpu/index.hpp);
// an index outside [0, extent) gathers zeros / adds nothing.
template <class T>
void gather(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer, int64_t inner);
template <class T>
void scatter_add(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n, int64_t outer,
                 int64_t inner, int64_t skip);
// -mean_i log_probs[i, label_i] into loss[0], and its gradient (backend/cpu/select.hpp).
template <class T>
void nll_mean(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss);
template <class T>
void nll_mean_backward(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy, T* gx);
// Per row of contiguous x [rows, n]: the k largest values, largest first, and their columns.
// Order: NaN first, then descending value, ties (and -0 = +0) by ascending column. The CPU kernel
// orders ties as PyTorch's CPU topk does (an unstable selection), so tied columns may come in
// another order than on the CPU; values agree exactly. topk_backward: gx [rows, n] `fill` except
// the selected columns, which get gy.
template <class T>
void topk(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int64_t* indices);
template <class T>
void topk_backward(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T fill, T* gx);

// The contrastive step's small kernels (backend/cpu/contrastive.hpp has the contract; the bodies
// are backend/portable.hpp's, so masks, targets and draws equal the CPU's bit for bit). iota and
// clamp for float, double and int64_t; match_ids for uint8_t, float and double.
template <class T>
void iota(T* out, int64_t n, T start, int64_t divisor);
template <class T>
void clamp(T* x, int64_t n, T lo, T hi);
template <class T>
void dropout_mask(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed);
template <class U>
void match_ids(const int64_t* row_ids, int64_t rows, const int64_t* col_ids, int64_t cols, U* out, bool normalise);
template <class T>
void sample_negatives(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids, const int64_t* col_ids,
                      int64_t row_offset, uint64_t seed, int64_t* out);
// T = float, double and int64_t (the id queue).
template <class T>
void queue_enqueue(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr);
void queue_advance(int64_t* ptr, int64_t B, int64_t Q);

// Scaled dot-product attention (backend/args.hpp), forward and backward without atomics; In = bf16
// for attention_bf16. The kernels are chosen by attention_kernel() above.
template <class T, class In>
void attention(const backend::AttentionArgs<T, In>& args);
template <class T>
void attention_backward(const backend::AttentionBackwardArgs<T>& args);
void attention_backward_bf16(const backend::AttentionBackwardBf16Args& args);

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
inline void gemm_bf16(bool, bool, int64_t, int64_t, int64_t, const bf16*, int64_t, const bf16*, int64_t, float*,
                      int64_t, bool) {
  detail::kernels_without_cuda("gemm_bf16");
}
template <class T>
void linear(const T*, int64_t, int64_t, const T*, int64_t, const T*, T*) {
  detail::kernels_without_cuda("linear");
}
inline void linear_bf16(const bf16*, int64_t, int64_t, const bf16*, int64_t, const float*, float*) {
  detail::kernels_without_cuda("linear_bf16");
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
void assign(const Shape&, const T*, const Strides&, T*, const Strides&) {
  detail::kernels_without_cuda("assign");
}
template <class T>
void fill(T*, int64_t, T) {
  detail::kernels_without_cuda("fill");
}
template <class T>
void unary(UnaryOp, const T*, T*, int64_t) {
  detail::kernels_without_cuda("unary");
}
template <class T>
void gelu_backward(const T*, const T*, T*, int64_t) {
  detail::kernels_without_cuda("gelu_backward");
}
template <class T>
void scale(const T*, T*, int64_t, T) {
  detail::kernels_without_cuda("scale");
}
template <class T, class M>
void masked_fill(const T*, const M*, T, T*, int64_t) {
  detail::kernels_without_cuda("masked_fill");
}
inline void to_bf16(const float*, bf16*, int64_t) { detail::kernels_without_cuda("to_bf16"); }
template <class T>
void ema(const backend::EmaTensor<T>*, size_t, T, T) {
  detail::kernels_without_cuda("ema");
}
template <class T>
void adamw(const backend::AdamWTensor<T>*, size_t, const backend::AdamWCoefficients<T>&) {
  detail::kernels_without_cuda("adamw");
}
template <class T>
void softmax(const T*, T*, int64_t, int64_t, bool) {
  detail::kernels_without_cuda("softmax");
}
template <class T>
void softmax_backward(const T*, const T*, T*, int64_t, int64_t, bool) {
  detail::kernels_without_cuda("softmax_backward");
}
template <class T>
void layer_norm(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double) {
  detail::kernels_without_cuda("layer_norm");
}
template <class T>
void layer_norm_backward(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t) {
  detail::kernels_without_cuda("layer_norm_backward");
}
template <class T>
void l2_normalize(const T*, T*, T*, int64_t, int64_t, double) {
  detail::kernels_without_cuda("l2_normalize");
}
template <class T>
void l2_normalize_backward(const T*, const T*, const T*, T*, int64_t, int64_t, double) {
  detail::kernels_without_cuda("l2_normalize_backward");
}
template <class T>
void sum_middle(const T*, int64_t, int64_t, int64_t, T*) {
  detail::kernels_without_cuda("sum_middle");
}
template <class T, class In>
void attention(const backend::AttentionArgs<T, In>&) {
  detail::kernels_without_cuda("attention");
}
template <class T>
void attention_backward(const backend::AttentionBackwardArgs<T>&) {
  detail::kernels_without_cuda("attention_backward");
}
inline void attention_backward_bf16(const backend::AttentionBackwardBf16Args&) {
  detail::kernels_without_cuda("attention_backward_bf16");
}
inline void check_indices(const int64_t*, int64_t, int64_t, const char*, const char*) {
  detail::kernels_without_cuda("check_indices");
}
template <class T>
void topk(const T*, int64_t, int64_t, int64_t, T*, int64_t*) {
  detail::kernels_without_cuda("topk");
}
template <class T>
void topk_backward(const T*, const int64_t*, int64_t, int64_t, int64_t, T, T*) {
  detail::kernels_without_cuda("topk_backward");
}
template <class T>
void gather(const T*, int64_t, T*, const int64_t*, int64_t, int64_t, int64_t) {
  detail::kernels_without_cuda("gather");
}
template <class T>
void scatter_add(const T*, T*, int64_t, const int64_t*, int64_t, int64_t, int64_t, int64_t) {
  detail::kernels_without_cuda("scatter_add");
}
template <class T>
void nll_mean(const T*, const int64_t*, int64_t, int64_t, T*) {
  detail::kernels_without_cuda("nll_mean");
}
template <class T>
void nll_mean_backward(const T*, const int64_t*, int64_t, int64_t, const T*, T*) {
  detail::kernels_without_cuda("nll_mean_backward");
}

template <class T>
void iota(T*, int64_t, T, int64_t) {
  detail::kernels_without_cuda("iota");
}
template <class T>
void clamp(T*, int64_t, T, T) {
  detail::kernels_without_cuda("clamp");
}
template <class T>
void dropout_mask(T*, int64_t, uint64_t, T, uint64_t) {
  detail::kernels_without_cuda("dropout_mask");
}
template <class U>
void match_ids(const int64_t*, int64_t, const int64_t*, int64_t, U*, bool) {
  detail::kernels_without_cuda("match_ids");
}
template <class T>
void sample_negatives(const T*, int64_t, int64_t, const int64_t*, const int64_t*, int64_t, uint64_t, int64_t*) {
  detail::kernels_without_cuda("sample_negatives");
}
template <class T>
void queue_enqueue(T*, int64_t, int64_t, const T*, int64_t, const int64_t*) {
  detail::kernels_without_cuda("queue_enqueue");
}
inline void queue_advance(int64_t*, int64_t, int64_t) { detail::kernels_without_cuda("queue_advance"); }

#endif

}  // namespace blip::cuda
