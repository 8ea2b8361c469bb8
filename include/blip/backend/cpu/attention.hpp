// blip/backend/cpu/attention.hpp — fused scaled dot-product attention on the CPU, forward and
// backward (backend/args.hpp has the argument blocks).
//
// Contract: no [B, H, Sq, Sk] tensor is made; per task a block of 64 query rows has its scores
// in a per-thread scratch (64-byte aligned, so vectorised row sums do not depend on malloc's
// alignment and two runs are bit-identical). The backward recomputes the probabilities and,
// per block, computes dV += Pᵀ·dO, dP = dO·Vᵀ, dS = softmax'(P, dP), dQ = dS·K·scale and
// dK += dSᵀ·Q·scale while P sits in cache; a task owns one (key/value row, head), so the sums of
// the texts sharing one image's keys/values (kv_index) need no atomics.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/gemm.hpp"
#include "blip/backend/cpu/isa.hpp"
#include "blip/core/device.hpp"

namespace blip::cpu {

namespace detail {

inline constexpr int64_t kAttentionRows = 64;  // query rows per task: a block of scores stays in L2

// A per-thread block of scores, 64-byte aligned (see the contract).
template <class T>
struct ScoreBlock {
  explicit ScoreBlock(int64_t keys)
      : bytes(sizeof(T) * static_cast<size_t>(kAttentionRows * keys)),
        data(static_cast<T*>(DeviceMemory<Cpu>::allocate(bytes))) {}
  ~ScoreBlock() { DeviceMemory<Cpu>::release(data, bytes); }
  ScoreBlock(const ScoreBlock&) = delete;
  ScoreBlock& operator=(const ScoreBlock&) = delete;
  size_t bytes;
  T* data;
};

template <class T>
const T* row_of(const T* base, const std::array<int64_t, 3>& s, int64_t b, int64_t h, int64_t row) {
  return base + b * s[0] + h * s[1] + row * s[2];
}
template <class T>
T* row_of(T* base, const std::array<int64_t, 3>& s, int64_t b, int64_t h, int64_t row) {
  return base + b * s[0] + h * s[1] + row * s[2];
}

// scores [rows, Sk] = alpha · q kᵀ: float operands through gemm; bf16 ones through gemm_bf16, whose
// primitive has no alpha, so the caller applies it (see probabilities).
inline void score_product(int64_t rows, int64_t Sk, int64_t d, float alpha, const float* q, int64_t ldq,
                          const float* k, int64_t ldk, float* scores) {
  gemm(false, true, rows, Sk, d, alpha, q, ldq, k, ldk, 0.0f, scores, Sk);
}
inline void score_product(int64_t rows, int64_t Sk, int64_t d, float, const bf16* q, int64_t ldq, const bf16* k,
                          int64_t ldk, float* scores) {
  gemm_bf16(false, true, rows, Sk, d, q, ldq, k, ldk, scores, Sk);
}
template <class T>
  requires(!std::same_as<T, float>)
void score_product(int64_t rows, int64_t Sk, int64_t d, T alpha, const T* q, int64_t ldq, const T* k, int64_t ldk,
                   T* scores) {
  gemm(false, true, rows, Sk, d, alpha, q, ldq, k, ldk, T(0), scores, Sk);
}

// Probabilities of query rows [r0, r0 + rows) of (b, h) into `scores` (rows past Sq continue
// into the next batch rows of a run; see attention()). Returns the key/value batch row.
template <class T, class In>
int64_t probabilities(const backend::AttentionArgs<T, In>& a, T* scores, int64_t b, int64_t h, int64_t r0,
                      int64_t rows) {
  const int64_t kv_b = a.kv_index ? a.kv_index[b] : b;
  score_product(rows, a.Sk, a.d, a.scale, row_of(a.q, a.q_stride, b, h, r0), a.q_stride[2],
                row_of(a.k, a.k_stride, kv_b, h, 0), a.k_stride[2], scores);
  constexpr bool scaled = !std::same_as<In, bf16>;  // else the scale is applied here, with the mask
  if (!scaled && a.scale != T(1) && !a.mask)
    for (int64_t i = 0; i < rows * a.Sk; ++i) scores[i] *= a.scale;
  if (a.mask) {
    const auto& ms = a.mask_stride;
    const T factor = scaled ? T(1) : a.scale;
    for (int64_t r = 0; r < rows; ++r) {
      T* s = scores + r * a.Sk;
      const T* m = a.mask + b * ms[0] + h * ms[1] + (r0 + r) * ms[2];
      if (factor == T(1) && ms[3] == 1) for (int64_t j = 0; j < a.Sk; ++j) s[j] += m[j];
      else for (int64_t j = 0; j < a.Sk; ++j) s[j] = s[j] * factor + m[j * ms[3]];
    }
  }
  isa::softmax_rows(scores, scores, rows, a.Sk);
  return kv_b;
}

// out [rows, dv] (row stride ldo) = p [rows, Sk] · v [Sk, dv]. For bf16 values the float
// probabilities are rounded to bf16 in `p16` first (a per-thread block as large as p).
inline void value_product(int64_t rows, int64_t Sk, int64_t dv, const float* p, bf16*, const float* v, int64_t ldv,
                          float* out, int64_t ldo) {
  gemm(false, false, rows, dv, Sk, 1.0f, p, Sk, v, ldv, 0.0f, out, ldo);
}
inline void value_product(int64_t rows, int64_t Sk, int64_t dv, const float* p, bf16* p16, const bf16* v, int64_t ldv,
                          float* out, int64_t ldo) {
  isa::to_bf16(p, p16, rows * Sk);
  gemm_bf16(false, false, rows, dv, Sk, p16, Sk, v, ldv, out, ldo);
}
template <class T>
  requires(!std::same_as<T, float>)
void value_product(int64_t rows, int64_t Sk, int64_t dv, const T* p, bf16*, const T* v, int64_t ldv, T* out,
                   int64_t ldo) {
  gemm(false, false, rows, dv, Sk, T(1), p, Sk, v, ldv, T(0), out, ldo);
}

}  // namespace detail

template <class T, class In>
void attention(const backend::AttentionArgs<T, In>& a) {
  const int64_t B = a.B, H = a.H, Sq = a.Sq, Sk = a.Sk;
  if (B == 0 || H == 0 || Sq == 0 || a.dv == 0) return;
  constexpr int64_t rows_per_task = detail::kAttentionRows;
  // Consecutive query batch rows that share one key/value row (the texts re-ranked against one
  // image) are one run of query rows: its 64-row blocks span text boundaries, so the GEMMs are
  // full height instead of one short block per text. Needs no mask, and q and out rows evenly
  // strided across the batch (true for heads split from a [B, S, W] projection).
  std::vector<std::pair<int64_t, int64_t>> runs;  // (first batch row, batch rows)
  const bool merge_runs = a.kv_index && !a.mask && a.q_stride[0] == Sq * a.q_stride[2] &&
                          a.out_stride[0] == Sq * a.out_stride[2];
  for (int64_t b = 0; b < B; ++b) {
    if (merge_runs && !runs.empty() && a.kv_index[b] == a.kv_index[runs.back().first]) ++runs.back().second;
    else runs.emplace_back(b, 1);
  }
  std::vector<int64_t> first_block(runs.size() + 1, 0);  // per head: blocks before run i
  for (size_t i = 0; i < runs.size(); ++i)
    first_block[i + 1] = first_block[i] + (runs[i].second * Sq + rows_per_task - 1) / rows_per_task;
  if (Sk == 0) {  // softmax over no keys: zeros, as the product with an empty V
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t r = 0; r < Sq; ++r) std::fill_n(detail::row_of(a.out, a.out_stride, b, h, r), a.dv, T(0));
    return;
  }
  parallel_for(first_block.back() * H, rows_per_task * Sk * (a.d + a.dv), [&](int64_t begin, int64_t end) {
    const detail::ScoreBlock<T> scratch(Sk);
    const detail::ScoreBlock<bf16> p16(std::same_as<In, bf16> ? Sk : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / H, h = task % H;
      const size_t run = static_cast<size_t>(std::upper_bound(first_block.begin(), first_block.end(), block) -
                                             first_block.begin() - 1);
      const auto [b, count] = runs[run];
      const int64_t r0 = (block - first_block[run]) * rows_per_task;
      const int64_t rows = std::min(rows_per_task, count * Sq - r0);
      const int64_t kv_b = detail::probabilities(a, scratch.data, b, h, r0, rows);
      detail::value_product(rows, Sk, a.dv, scratch.data, p16.data, detail::row_of(a.v, a.v_stride, kv_b, h, 0),
                            a.v_stride[2], detail::row_of(a.out, a.out_stride, b, h, r0), a.out_stride[2]);
    }
  });
}

template <class T>
void attention_backward(const backend::AttentionBackwardArgs<T>& g) {
  const backend::AttentionArgs<T>& a = g.forward;
  const int64_t B = a.B, H = a.H, Sq = a.Sq, Sk = a.Sk, d = a.d, dv = a.dv, Bkv = a.Bkv;
  if (B == 0 || H == 0 || Sq == 0) return;
  if (Sk == 0) {
    std::fill_n(g.grad_q, B * H * Sq * d, T(0));
    return;
  }
  std::vector<std::vector<int64_t>> users(static_cast<size_t>(Bkv));  // query rows per key/value row
  for (int64_t b = 0; b < B; ++b) users[static_cast<size_t>(a.kv_index ? a.kv_index[b] : b)].push_back(b);
  const std::array<int64_t, 3> gq_stride{H * Sq * d, Sq * d, d}, gk_stride{H * Sk * d, Sk * d, d},
      gv_stride{H * Sk * dv, Sk * dv, dv};
  parallel_for(Bkv * H, (B / std::max<int64_t>(Bkv, 1)) * Sq * Sk * (2 * d + 3 * dv), [&](int64_t begin, int64_t end) {
    const detail::ScoreBlock<T> p(Sk), ds(Sk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t kv_b = task / H, h = task % H;
      T* gk = detail::row_of(g.grad_k, gk_stride, kv_b, h, 0);
      T* gv = detail::row_of(g.grad_v, gv_stride, kv_b, h, 0);
      const T* k = detail::row_of(a.k, a.k_stride, kv_b, h, 0);
      const T* v = detail::row_of(a.v, a.v_stride, kv_b, h, 0);
      for (const int64_t b : users[static_cast<size_t>(kv_b)]) {
        for (int64_t r0 = 0; r0 < Sq; r0 += detail::kAttentionRows) {
          const int64_t rows = std::min(detail::kAttentionRows, Sq - r0);
          detail::probabilities(a, p.data, b, h, r0, rows);
          const T* dout = detail::row_of(g.grad_out, g.grad_out_stride, b, h, r0);
          const int64_t ldo = g.grad_out_stride[2];
          gemm(true, false, Sk, dv, rows, T(1), p.data, Sk, dout, ldo, T(1), gv, dv);
          gemm(false, true, rows, Sk, dv, T(1), dout, ldo, v, a.v_stride[2], T(0), ds.data, Sk);
          isa::softmax_backward_rows(p.data, ds.data, ds.data, rows, Sk);
          gemm(false, false, rows, d, Sk, a.scale, ds.data, Sk, k, a.k_stride[2], T(0),
               detail::row_of(g.grad_q, gq_stride, b, h, r0), d);
          gemm(true, false, Sk, d, rows, a.scale, ds.data, Sk, detail::row_of(a.q, a.q_stride, b, h, r0),
               a.q_stride[2], T(1), gk, d);
        }
      }
    }
  });
}

// The backward of the bf16 forward (backend/args.hpp: AttentionBackwardBf16Args): the float
// backward on q, k, v widened from the bf16 copies the forward multiplied, so the gradients are
// those of the products that ran. `forward.out` is not read (the float backward recomputes P).
inline void attention_backward_bf16(const backend::AttentionBackwardBf16Args& g) {
  const backend::AttentionArgs<float, bf16>& a = g.forward;
  const auto widen = [&](const bf16* x, const std::array<int64_t, 3>& stride, int64_t batch, int64_t rows,
                           int64_t cols) {
    std::vector<float> y(static_cast<size_t>(batch * a.H * rows * cols));
    parallel_for(batch * a.H, rows * cols, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / a.H, h = task % a.H;
        for (int64_t r = 0; r < rows; ++r) {
          const bf16* src = detail::row_of(x, stride, b, h, r);
          float* dst = y.data() + (task * rows + r) * cols;
          for (int64_t c = 0; c < cols; ++c) dst[c] = static_cast<float>(src[c]);
        }
      }
    });
    return y;
  };
  const std::vector<float> q = widen(a.q, a.q_stride, a.B, a.Sq, a.d), k = widen(a.k, a.k_stride, a.Bkv, a.Sk, a.d),
                           v = widen(a.v, a.v_stride, a.Bkv, a.Sk, a.dv);
  attention_backward(backend::widened(g, q.data(), k.data(), v.data()));
  if (g.q_scale != 1.0f) isa::scale(g.grad_q, g.grad_q, a.B * a.H * a.Sq * a.d, g.q_scale);
}

}  // namespace blip::cpu
