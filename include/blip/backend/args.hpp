// blip/backend/args.hpp — argument blocks of the kernels whose signatures would otherwise run to
// twenty parameters (attention, AdamW). Plain data, the same for every device.
//
// Contract: pointers (kv_index included) are device memory of the device running the kernel.
// Strides count elements; the last axis of q, k, v, out and grad_out is unit-stride.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "blip/core/dtype.hpp"

namespace blip::backend {

// A linear layer's weight [out, in] in the form a device's GEMM prefers, made once for weights that
// do not change (a PrecisionScope with Weights::fixed): by pack_linear_bf16 (bf16, read by
// linear_bf16_packed) or pack_linear_s8 (int8 with per-channel scales, read by linear_s8_packed).
// Opaque: only the device that packed it reads `layout`. Empty where the device has nothing better
// than the plain weight (then linear() takes linear_bf16, or for int8 the bf16 path).
struct PackedWeight {
  std::shared_ptr<const void> layout;
  int64_t out = 0, in = 0;
  explicit operator bool() const { return layout != nullptr; }
};

enum class BinaryOp { add, sub, mul, div };  // same order as cuda::BinaryOp
enum class UnaryOp { gelu, tanh, exp, log };

// One contiguous copy of copy_bulk's batch: `bytes` from src to dst, both on the device.
struct BulkCopy {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};

// softmax(q kᵀ · scale + mask) v for q [B,H,Sq,d], k [Bkv,H,Sk,d], v [Bkv,H,Sk,dv] into out
// [B,H,Sq,dv]; strides of axes 0-2 (batch, head, row). mask (may be null) is read through
// strides aligned to [B,H,Sq,Sk] (0 on broadcast axes). kv_index (may be null) maps query
// batch row b to key/value batch row kv_index[b] (checked by the op; a device kernel reads nothing
// through an index outside [0, Bkv)); without it Bkv == B. `In` is the type of q, k
// and v: bf16 for the bf16 path (attention_bf16: bf16 products, float softmax and output).
template <class T, class In = T>
struct AttentionArgs {
  const In* q = nullptr;
  std::array<int64_t, 3> q_stride{};
  const In* k = nullptr;
  std::array<int64_t, 3> k_stride{};
  const In* v = nullptr;
  std::array<int64_t, 3> v_stride{};
  const T* mask = nullptr;
  std::array<int64_t, 4> mask_stride{};
  T* out = nullptr;
  std::array<int64_t, 3> out_stride{};
  int64_t B = 0, H = 0, Sq = 0, Sk = 0, d = 0, dv = 0, Bkv = 0;
  T scale = T(1);
  const int64_t* kv_index = nullptr;
};

// The backward of AttentionArgs' product: from grad_out (strided like out) it writes
// grad_q [B,H,Sq,d] (contiguous) and adds into grad_k [Bkv,H,Sk,d] and grad_v [Bkv,H,Sk,dv]
// (contiguous, zeroed by the caller). `forward.out` is not read.
template <class T>
struct AttentionBackwardArgs {
  AttentionArgs<T> forward;
  const T* grad_out = nullptr;
  std::array<int64_t, 3> grad_out_stride{};
  T* grad_q = nullptr;
  T* grad_k = nullptr;
  T* grad_v = nullptr;
};

// The backward of the bf16 forward (attention_bf16), for bf16 autocast training: q, k, v are the
// bf16 copies that forward read (q with the scale folded in: q = q_scale · q_float, and
// forward.scale the scale left, 1 from the op). `forward.out` is that forward's output: a kernel
// may take D = rowsum(grad_out ∘ out) from it rather than recompute it. Writes grad_q of the
// unscaled q (q_scale times the product's) and adds into grad_k and grad_v, laid out as
// AttentionBackwardArgs' (float, contiguous). Products may run in bf16 with float accumulation
// (probabilities, dS and grad_out rounded), so results agree with the float backward on the
// widened inputs to bf16 tolerances.
struct AttentionBackwardBf16Args {
  AttentionArgs<float, bf16> forward;
  const float* grad_out = nullptr;
  std::array<int64_t, 3> grad_out_stride{};
  float* grad_q = nullptr;
  float* grad_k = nullptr;
  float* grad_v = nullptr;
  float q_scale = 1.0f;
};

// The float backward of a bf16 one whose q, k, v were widened into contiguous arrays ([B, H, Sq, d],
// [Bkv, H, Sk, d], [Bkv, H, Sk, dv]); grad_q still wants the q_scale factor applied after.
inline AttentionBackwardArgs<float> widened(const AttentionBackwardBf16Args& g, const float* q, const float* k,
                                            const float* v) {
  const AttentionArgs<float, bf16>& a = g.forward;
  const AttentionArgs<float> forward{
      .q = q, .q_stride = {a.H * a.Sq * a.d, a.Sq * a.d, a.d}, .k = k, .k_stride = {a.H * a.Sk * a.d, a.Sk * a.d, a.d},
      .v = v, .v_stride = {a.H * a.Sk * a.dv, a.Sk * a.dv, a.dv}, .mask = a.mask, .mask_stride = a.mask_stride,
      .B = a.B, .H = a.H, .Sq = a.Sq, .Sk = a.Sk, .d = a.d, .dv = a.dv, .Bkv = a.Bkv, .scale = a.scale,
      .kv_index = a.kv_index};
  return {.forward = forward, .grad_out = g.grad_out, .grad_out_stride = g.grad_out_stride, .grad_q = g.grad_q,
          .grad_k = g.grad_k, .grad_v = g.grad_v};
}

// One tensor of a multi-tensor parameter update: n contiguous elements in each array. A list of
// them goes to one adamw / ema call (one launch per few dozen tensors on CUDA, the descriptors
// passed by value: no copy to the device).
template <class T>
struct AdamWTensor {
  T* p = nullptr;
  T* m = nullptr;
  T* v = nullptr;
  const T* g = nullptr;
  int64_t n = 0;
};
template <class T>
struct EmaTensor {
  T* m = nullptr;
  const T* v = nullptr;
  int64_t n = 0;
};

// One AdamW step's scalars, formed in double and rounded once by the optimiser.
template <class T>
struct AdamWCoefficients {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt, eps;
};

}  // namespace blip::backend
