// blip/ops/attention.hpp — scaled dot-product attention with an additive mask.
//
// Contract: q [B, H, Sq, d], k [B, H, Sk, d], v [B, H, Sk, dv] -> [B, H, Sq, dv];
// out = softmax(q kᵀ · scale + mask) v with scale = 1/sqrt(d) unless given. `mask` (optional,
// undefined = none) is added to the scores and broadcasts to [B, H, Sq, Sk] (BERT's
// [B, 1, 1, Sk] key mask, for example); it gets no gradient. Fused on the CPU: query blocks
// run in parallel and no [B, H, Sq, Sk] tensor is kept — only a per-thread block of scores;
// the backward recomputes the probabilities it needs.
// `kv_index` (optional, int64 [B] on the same device) maps each query batch row b to the key/value
// batch row kv_index[b]:
// many texts attend to one image's cross-attention keys/values without copies of them
// (ITM re-ranking, hard negatives); k and v then have their own batch size.
// In a bf16 PrecisionScope (float tensors) the forward's two products run in bf16 with float
// accumulation (ops/precision.hpp), the softmax and the output in float; the backward
// differentiates those products (the bf16 q, k, v they read), with bf16 products where the device
// has them (CUDA's tensor cores) and float ones elsewhere.
#pragma once

#include <cmath>

#include "blip/ops/index.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/softmax.hpp"

namespace blip {

namespace detail {

// The forward of scaled_dot_product_attention in a bf16 PrecisionScope: q, k, v rounded to bf16
// once (q with the scale folded in, as the bf16 product has no alpha), float softmax and output.
// `args` is the float call's block (mask, output, sizes); its q, k, v pointers are replaced. The
// bf16 copies are laid out [B, S, H, d], as heads split from a projection are, so the kernel
// can still run the texts that share one image's keys/values as one run of query rows. They are
// returned with the block: the backward (attention_backward_bf16) differentiates the products
// that ran, on the tensor cores where a GPU has them.
template <Device D>
struct AttentionBf16 {
  Tensor<bf16, D> q, k, v;
  backend::AttentionArgs<float, bf16> args;
};

template <Device D>
AttentionBf16<D> attention_in_bf16(const Tensor<float, D>& q, const Tensor<float, D>& k, const Tensor<float, D>& v,
                                   const backend::AttentionArgs<float>& args) {
  const auto heads_inner = [](const Tensor<float, D>& x) { return permute(x, {0, 2, 1, 3}); };
  const auto heads_outer = [](const Tensor<bf16, D>& x) { return permute(x, {0, 2, 1, 3}); };
  AttentionBf16<D> r{.q = heads_outer(to_bf16(blip::scale(heads_inner(q), args.scale))),
                     .k = heads_outer(to_bf16(heads_inner(k))), .v = heads_outer(to_bf16(heads_inner(v))),
                     .args = {}};
  const auto strides3 = [](const Tensor<bf16, D>& x) {
    return std::array<int64_t, 3>{x.stride(0), x.stride(1), x.stride(2)};
  };
  r.args = {.q = r.q.data(), .q_stride = strides3(r.q), .k = r.k.data(), .k_stride = strides3(r.k),
            .v = r.v.data(), .v_stride = strides3(r.v), .mask = args.mask, .mask_stride = args.mask_stride,
            .out = args.out, .out_stride = args.out_stride, .B = args.B, .H = args.H, .Sq = args.Sq, .Sk = args.Sk,
            .d = args.d, .dv = args.dv, .Bkv = args.Bkv, .scale = 1.0f, .kv_index = args.kv_index};
  kernels<D>::attention_bf16(r.args);
  return r;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> scaled_dot_product_attention(const Tensor<T, D>& q, const Tensor<T, D>& k, const Tensor<T, D>& v,
                                          const Tensor<T, D>& mask = {}, double scale = 0.0,
                                          const Tensor<int64_t, D>& kv_index = {}) {
  BLIP_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "scaled_dot_product_attention: q, k, v must be 4-D, got ",
             q.shape(), ", ", k.shape(), ", ", v.shape());
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), d = q.size(3), Sk = k.size(2), dv = v.size(3);
  const int64_t Bkv = k.size(0);
  const bool shared_kv = kv_index.defined();
  BLIP_CHECK(!shared_kv || kv_index.dim() == 1, "scaled_dot_product_attention: kv_index must be 1-D, got ",
             kv_index.shape());
  BLIP_CHECK((shared_kv ? kv_index.numel() == B : Bkv == B) && k.size(1) == H && k.size(3) == d && v.size(0) == Bkv &&
                 v.size(1) == H && v.size(2) == Sk,
             "scaled_dot_product_attention: shapes q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(),
             " do not agree (kv_index of ", shared_kv ? kv_index.numel() : 0, " rows)");
  // On the device the check is deferred (reported at the next host wait); the kernels read
  // nothing through a bad index meanwhile.
  const Tensor<int64_t, D> kv_rows =
      shared_kv ? detail::checked_indices(kv_index, Bkv, "scaled_dot_product_attention", "kv_index") : kv_index;
  const T factor = static_cast<T>(scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(d)));
  Tensor<T, D> m;
  if (mask.defined()) {
    const Shape full_shape{B, H, Sq, Sk};
    BLIP_CHECK(broadcast_shapes(mask.shape(), full_shape, "scaled_dot_product_attention") == full_shape,
               "scaled_dot_product_attention: mask ", mask.shape(), " does not broadcast to ", full_shape);
    m = expand(mask.detach(), full_shape);
  }
  // q, k, v are read in place when their rows are unit-stride (e.g. the q/k/v thirds of a
  // fused qkv projection); the output is written as [B, Sq, H, dv] so merging heads is free.
  const auto rows_unit_stride = [](const Tensor<T, D>& x) { return x.stride(3) == 1 ? x.detach() : contiguous(x.detach()); };
  const Tensor<T, D> qc = rows_unit_stride(q), kc = rows_unit_stride(k), vc = rows_unit_stride(v);
  const Tensor<T, D> out_memory = Tensor<T, D>::empty({B, Sq, H, dv});
  Tensor<T, D> out = permute(out_memory, {0, 2, 1, 3});
  const auto strides3 = [](const Tensor<T, D>& x) { return std::array<int64_t, 3>{x.stride(0), x.stride(1), x.stride(2)}; };
  backend::AttentionArgs<T> args{
      .q = qc.data(), .q_stride = strides3(qc), .k = kc.data(), .k_stride = strides3(kc),
      .v = vc.data(), .v_stride = strides3(vc),
      .mask = m.defined() ? m.data() : nullptr,
      .mask_stride = m.defined() ? std::array<int64_t, 4>{m.stride(0), m.stride(1), m.stride(2), m.stride(3)}
                                 : std::array<int64_t, 4>{},
      .out = out.data(), .out_stride = strides3(out),
      .B = B, .H = H, .Sq = Sq, .Sk = Sk, .d = d, .dv = dv, .Bkv = Bkv, .scale = factor,
      .kv_index = shared_kv ? kv_rows.data() : nullptr};
  if constexpr (std::same_as<T, float>) {
    if (bf16_products<D>()) {  // bf16 or int8, where bf16 products pay
      const detail::AttentionBf16<D> low = detail::attention_in_bf16(qc, kc, vc, args);
      // The backward reads the bf16 copies and this output (for D = rowsum(dO ∘ out)); out_memory
      // is not the recorded tensor, so the closure holds no reference to its own node.
      if (grad_needed(q, k, v))
        record(out, "scaled_dot_product_attention", {&q, &k, &v},
               [low, m, kv_rows, out_memory, rows_unit_stride, strides3, factor, B, H, Sq, Sk, d, dv,
                Bkv](const Tensor<T, D>& gy) {
                 const Tensor<T, D> g = rows_unit_stride(gy);
                 Tensor<T, D> gq = Tensor<T, D>::empty({B, H, Sq, d});
                 Tensor<T, D> gk = Tensor<T, D>::zeros({Bkv, H, Sk, d}), gv = Tensor<T, D>::zeros({Bkv, H, Sk, dv});
                 const backend::AttentionBackwardBf16Args back{
                     .forward = low.args, .grad_out = g.data(), .grad_out_stride = strides3(g), .grad_q = gq.data(),
                     .grad_k = gk.data(), .grad_v = gv.data(), .q_scale = factor};
                 kernels<D>::attention_backward_bf16(back);
                 return std::vector{gq, gk, gv};
               });
      return out;
    }
  }
  kernels<D>::attention(args);
  // The backward recomputes the probabilities instead of keeping [B, H, Sq, Sk] per layer
  // between forward and backward (for BLIP-base training that is ~64 MB a ViT layer).
  if (grad_needed(q, k, v))
    record(out, "scaled_dot_product_attention", {&q, &k, &v},
           [qc, kc, vc, m, kv_rows, args, rows_unit_stride, strides3, B, H, Sq, Sk, d, dv,
            Bkv](const Tensor<T, D>& gy) {
             const Tensor<T, D> g = rows_unit_stride(gy);
             Tensor<T, D> gq = Tensor<T, D>::empty({B, H, Sq, d});
             Tensor<T, D> gk = Tensor<T, D>::zeros({Bkv, H, Sk, d}), gv = Tensor<T, D>::zeros({Bkv, H, Sk, dv});
             backend::AttentionBackwardArgs<T> back{.forward = args, .grad_out = g.data(), .grad_out_stride = strides3(g),
                                                    .grad_q = gq.data(), .grad_k = gk.data(), .grad_v = gv.data()};
             back.forward.kv_index = kv_rows.defined() ? kv_rows.data() : nullptr;  // kept alive by the closure
             back.forward.out = nullptr;
             kernels<D>::attention_backward(back);
             return std::vector{gq, gk, gv};
           });
  return out;
}

}  // namespace blip
