// blip/backend/kernel_list.hpp — the kernels every device implements, and the one list of what a
// device lacks.
//
// Contract:
// - BLIP_KERNELS(X) names every kernel of the interface `backend::Kernels<D>` (backend/kernels.hpp);
//   `backend::Kernel` has one enumerator per name and kernel_name() spells it.
// - BLIP_CUDA_MISSING(X) is the list of kernels the Cuda device does not have yet (MLX keeps its
//   `no_gpu/` folder for the same reason): each becomes a stub of Kernels<Cuda> that throws
//   blip::Error naming the kernel, and supports<Cuda>(kernel) answers false for it. Adding a
//   CUDA kernel = write it in src/cuda + its Kernels<Cuda> member, and delete its line here.
#pragma once

#include <array>
#include <string_view>

#include "blip/core/device.hpp"

#define BLIP_KERNELS(X)                                                                                      \
  X(gemm) X(gemm_batched) X(gemm_bf16) X(linear) X(linear_bf16) X(pack_linear_bf16) X(linear_bf16_packed)    \
  X(pack_linear_s8) X(quantize_rows_s8) X(linear_s8_packed) X(pack_linear_f16) X(linear_f16_packed)          \
  X(gemm_f16)                                                                                                \
  X(binary) X(scale) X(unary) X(gelu_backward)                                                               \
  X(softmax) X(softmax_backward) X(log_softmax) X(log_softmax_backward) X(layer_norm)                        \
  X(layer_norm_backward) X(l2_normalize) X(l2_normalize_backward) X(sum_middle) X(check_indices)             \
  X(gather) X(scatter_add) X(masked_fill) X(masked_fill_backward) X(topk) X(topk_backward) X(nll_mean)       \
  X(nll_mean_backward) X(attention) X(attention_bf16) X(attention_backward) X(attention_backward_bf16)       \
  X(adamw) X(ema) X(assign) X(copy_bulk) X(fill) X(to_bf16) X(iota) X(clamp) X(dropout_mask) X(match_ids)    \
  X(sample_negatives) X(queue_enqueue) X(queue_advance)

#define BLIP_CUDA_MISSING(X)                                                                                 \
  X(linear_bf16_packed) X(quantize_rows_s8) X(linear_s8_packed) X(linear_f16_packed) X(gemm_f16)

namespace blip::backend {

#define BLIP_KERNEL_ENUM(name) name,
enum class Kernel { BLIP_KERNELS(BLIP_KERNEL_ENUM) };
#undef BLIP_KERNEL_ENUM

#define BLIP_KERNEL_NAME(name) #name,
inline constexpr std::array kernel_names{BLIP_KERNELS(BLIP_KERNEL_NAME)};
#undef BLIP_KERNEL_NAME

constexpr std::string_view kernel_name(Kernel k) { return kernel_names[static_cast<size_t>(k)]; }
inline constexpr size_t kernel_count = kernel_names.size();

// Whether device D has kernel k (false only for the entries of BLIP_CUDA_MISSING).
template <Device D>
constexpr bool supports(Kernel k) {
  if constexpr (std::same_as<D, Cuda>) {
#define BLIP_KERNEL_MISSING(name) if (k == Kernel::name) return false;
    BLIP_CUDA_MISSING(BLIP_KERNEL_MISSING)
#undef BLIP_KERNEL_MISSING
  }
  return true;
}

}  // namespace blip::backend
