// blip/ops/attention.hpp — scaled dot-product attention with an additive mask.
//
// Contract: q [B, H, Sq, d], k [B, H, Sk, d], v [B, H, Sk, dv] -> [B, H, Sq, dv];
// out = softmax(q kᵀ · scale + mask) v with scale = 1/sqrt(d) unless given. `mask` (optional,
// undefined = none) is added to the scores and broadcasts to [B, H, Sq, Sk] (BERT's
// [B, 1, 1, Sk] key mask, for example); it gets no gradient. Fused on the CPU: query blocks
// run in parallel and no [B, H, Sq, Sk] tensor is kept — only a per-thread block of scores;
// the backward recomputes the probabilities it needs.
// `kv_index` (optional) maps each query batch row b to the key/value batch row kv_index[b]:
// many texts attend to one image's cross-attention keys/values without copies of them
// (ITM re-ranking, hard negatives); k and v then have their own batch size.
#pragma once

#include <algorithm>
#include <cmath>

#include "blip/ops/index.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/softmax.hpp"

namespace blip {

namespace detail {

inline constexpr int64_t kAttentionRows = 64;  // query rows per task: a block of scores stays in L2

// Scores -> probabilities for `rows` query rows of one (b, h): adds the mask rows and
// applies a row softmax in place.
template <class T>
void mask_and_softmax(T* scores, int64_t rows, int64_t sk, const T* mask, int64_t mask_row_stride,
                      int64_t mask_col_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    T* s = scores + r * sk;
    if (mask) {
      const T* m = mask + r * mask_row_stride;
      if (mask_col_stride == 1) for (int64_t j = 0; j < sk; ++j) s[j] += m[j];
      else for (int64_t j = 0; j < sk; ++j) s[j] += m[j * mask_col_stride];
    }
  }
  cpu::softmax_rows(scores, scores, rows, sk);
}

// A per-thread block of scores. A tensor, not a std::vector, for its 64-byte alignment: the
// vectorised row reductions (softmax sums) add in an order that depends on the address's
// alignment, and malloc's 16 bytes would make results differ from run to run.
template <class T>
Tensor<T, Cpu> score_block(int64_t keys) {
  return Tensor<T, Cpu>::empty({kAttentionRows * keys});
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> scaled_dot_product_attention(const Tensor<T, D>& q, const Tensor<T, D>& k, const Tensor<T, D>& v,
                                          const Tensor<T, D>& mask = {}, double scale = 0.0,
                                          const std::vector<int64_t>& kv_index = {}) {
  BLIP_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "scaled_dot_product_attention: q, k, v must be 4-D, got ",
             q.shape(), ", ", k.shape(), ", ", v.shape());
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), d = q.size(3), Sk = k.size(2), dv = v.size(3);
  const int64_t Bkv = k.size(0);
  BLIP_CHECK((kv_index.empty() ? Bkv == B : static_cast<int64_t>(kv_index.size()) == B) && k.size(1) == H &&
                 k.size(3) == d && v.size(0) == Bkv && v.size(1) == H && v.size(2) == Sk,
             "scaled_dot_product_attention: shapes q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(),
             " do not agree (kv_index of ", kv_index.size(), " rows)");
  for (size_t i = 0; i < kv_index.size(); ++i)
    BLIP_CHECK(kv_index[i] >= 0 && kv_index[i] < Bkv, "scaled_dot_product_attention: kv_index ", kv_index[i],
               " at position ", i, " is outside [0, ", Bkv, ")");
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
  const auto at = [](const Tensor<T, D>& x, int64_t b, int64_t h, int64_t row) {
    return x.data() + b * x.stride(0) + h * x.stride(1) + row * x.stride(2);
  };
  // Probabilities of query rows [r0, r0 + rows) of batch-head bh, written to `scores` (rows
  // past Sq continue into the next batch rows of a run; see below).
  const auto probabilities = [=](T* scores, int64_t bh, int64_t r0, int64_t rows) {
    const int64_t b = bh / H, h = bh % H;
    const int64_t kv_b = kv_index.empty() ? b : kv_index[static_cast<size_t>(b)];
    cpu::gemm(false, true, rows, Sk, d, factor, at(qc, b, h, r0), qc.stride(2), at(kc, kv_b, h, 0), kc.stride(2), T(0),
              scores, Sk);
    const T* mask_rows = m.defined() ? m.data() + b * m.stride(0) + h * m.stride(1) + r0 * m.stride(2) : nullptr;
    detail::mask_and_softmax(scores, rows, Sk, mask_rows, m.defined() ? m.stride(2) : 0, m.defined() ? m.stride(3) : 0);
    return kv_b;
  };
  // Consecutive query batch rows that share one key/value row (the texts re-ranked against one
  // image) are one run of query rows: its 64-row blocks span text boundaries, so the GEMMs are
  // full height instead of one short block per text. Needs no mask, and q and out rows evenly
  // strided across the batch (true for heads split from a [B, S, W] projection).
  std::vector<std::pair<int64_t, int64_t>> runs;  // (first batch row, batch rows)
  const bool merge_runs = !kv_index.empty() && !m.defined() && qc.stride(0) == Sq * qc.stride(2) &&
                          out.stride(0) == Sq * out.stride(2);
  for (int64_t b = 0; b < B; ++b) {
    if (merge_runs && !runs.empty() && kv_index[static_cast<size_t>(b)] == kv_index[static_cast<size_t>(runs.back().first)])
      ++runs.back().second;
    else
      runs.emplace_back(b, 1);
  }
  std::vector<int64_t> first_block(runs.size() + 1, 0);  // per head: blocks before run i
  for (size_t i = 0; i < runs.size(); ++i)
    first_block[i + 1] = first_block[i] + (runs[i].second * Sq + detail::kAttentionRows - 1) / detail::kAttentionRows;
  if constexpr (on_cpu<D>) {
    cpu::parallel_for(first_block.back() * H, detail::kAttentionRows * Sk * (d + dv), [&](int64_t begin, int64_t end) {
      const Tensor<T, Cpu> scratch = detail::score_block<T>(Sk);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t block = task / H, h = task % H;
        const size_t run = static_cast<size_t>(std::upper_bound(first_block.begin(), first_block.end(), block) - first_block.begin() - 1);
        const auto [b, count] = runs[run];
        const int64_t r0 = (block - first_block[run]) * detail::kAttentionRows;
        const int64_t rows = std::min(detail::kAttentionRows, count * Sq - r0);
        const int64_t kv_b = probabilities(scratch.data(), b * H + h, r0, rows);
        cpu::gemm(false, false, rows, dv, Sk, T(1), scratch.data(), Sk, at(vc, kv_b, h, 0), vc.stride(2), T(0),
                  at(out, b, h, r0), out.stride(2));
      }
    });
  } else {
    no_kernel<D>("scaled_dot_product_attention");
  }
  // The backward recomputes the probabilities instead of keeping [B, H, Sq, Sk] per layer
  // between forward and backward (for BLIP-base training that is ~64 MB a ViT layer), and is
  // fused like the forward: per block of query rows, P is recomputed into a per-thread scratch
  // and dV += Pᵀ·dO, dP = dO·Vᵀ, dS = softmax'(P, dP), dQ = dS·K·scale, dK += dSᵀ·Q·scale run
  // on it while it sits in cache. A task owns one (key/value row, head), so the dK/dV sums of
  // the texts sharing one image's keys/values (kv_index) need no atomics and no gathered copies.
  if (grad_needed(q, k, v))
    record(out, "scaled_dot_product_attention", {&q, &k, &v},
           [qc, kc, vc, factor, kv_index, probabilities, rows_unit_stride, at, B, H, Sq, Sk, d, dv,
            Bkv](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = rows_unit_stride(gy);
      Tensor<T, D> gq = Tensor<T, D>::empty({B, H, Sq, d});
      Tensor<T, D> gk = Tensor<T, D>::zeros({Bkv, H, Sk, d}), gv = Tensor<T, D>::zeros({Bkv, H, Sk, dv});
      std::vector<std::vector<int64_t>> users(static_cast<size_t>(Bkv));  // query rows per key/value row
      for (int64_t b = 0; b < B; ++b) users[static_cast<size_t>(kv_index.empty() ? b : kv_index[static_cast<size_t>(b)])].push_back(b);
      if constexpr (on_cpu<D>) {
        cpu::parallel_for(Bkv * H, (B / std::max<int64_t>(Bkv, 1)) * Sq * Sk * (2 * d + 3 * dv), [&](int64_t begin, int64_t end) {
          const Tensor<T, Cpu> p = detail::score_block<T>(Sk), ds = detail::score_block<T>(Sk);
          for (int64_t task = begin; task < end; ++task) {
            const int64_t kv_b = task / H, h = task % H;
            for (const int64_t b : users[static_cast<size_t>(kv_b)]) {
              for (int64_t r0 = 0; r0 < Sq; r0 += detail::kAttentionRows) {
                const int64_t rows = std::min(detail::kAttentionRows, Sq - r0);
                probabilities(p.data(), b * H + h, r0, rows);
                const T* dout = at(g, b, h, r0);
                cpu::gemm(true, false, Sk, dv, rows, T(1), p.data(), Sk, dout, g.stride(2), T(1), at(gv, kv_b, h, 0), dv);
                cpu::gemm(false, true, rows, Sk, dv, T(1), dout, g.stride(2), at(vc, kv_b, h, 0), vc.stride(2), T(0),
                          ds.data(), Sk);
                cpu::softmax_backward_rows(p.data(), ds.data(), ds.data(), rows, Sk);
                cpu::gemm(false, false, rows, d, Sk, factor, ds.data(), Sk, at(kc, kv_b, h, 0), kc.stride(2), T(0),
                          at(gq, b, h, r0), d);
                cpu::gemm(true, false, Sk, d, rows, factor, ds.data(), Sk, at(qc, b, h, r0), qc.stride(2), T(1),
                          at(gk, kv_b, h, 0), d);
              }
            }
          }
        });
      } else {
        no_kernel<D>("scaled_dot_product_attention backward");
      }
      return std::vector{gq, gk, gv};
    });
  return out;
}

}  // namespace blip
