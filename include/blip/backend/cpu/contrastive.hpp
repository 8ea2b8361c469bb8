// blip/backend/cpu/contrastive.hpp — the small kernels that keep a contrastive training step on
// its device: ranges, clamping, Philox dropout masks, same-id targets, hard-negative draws and
// the feature queue's enqueue. The per-element and per-row bodies are backend/portable.hpp's,
// shared with the CUDA kernels, so both devices give the same bits.
//
// Contract:
// - iota: out[i] = start + i / divisor (divisor ≥ 1; 1 gives arange, k gives each value k times).
// - clamp: x[i] = lo if x < lo, hi if x > hi, else x (NaN stays, as std::clamp).
// - dropout_mask: out[i] = 0 where portable::dropout_keep says drop, else keep_scale.
// - match_ids: out[r, c] = (row_ids[r] == col_ids[c]), divided by the row's count of matches
//   when `normalise` (a row without matches stays 0).
// - sample_negatives: out[r] = portable::sample_negative_row over row r of weights [rows, cols],
//   for global row `row_offset + r`.
// - queue_enqueue: queue [E, Q] gets column (ptr + j) mod Q = src[j, :] for src [B, E] (the
//   later of two entries for one column wins); queue_advance: ptr = (ptr + B) mod Q. ptr is one
//   int64 in device memory, read and written by the kernels, never by the host.
#pragma once

#include <cstdint>

#include "blip/backend/cpu/parallel.hpp"
#include "blip/backend/portable.hpp"

namespace blip::cpu {

template <class T>
void iota(T* out, int64_t n, T start, int64_t divisor) {
  for (int64_t i = 0; i < n; ++i) out[i] = start + static_cast<T>(i / divisor);
}

template <class T>
void clamp(T* x, int64_t n, T lo, T hi) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] < lo ? lo : (hi < x[i] ? hi : x[i]);
}

template <class T>
void dropout_mask(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed) {
  parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = backend::portable::dropout_keep(seed, i, threshold) ? keep_scale : T(0);
  });
}

template <class U>
void match_ids(const int64_t* row_ids, int64_t rows, const int64_t* col_ids, int64_t cols, U* out, bool normalise) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t count = 0;
    for (int64_t c = 0; c < cols; ++c) count += col_ids[c] == row_ids[r];
    const U hit = normalise && count > 0 ? U(1) / static_cast<U>(count) : U(1);
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = col_ids[c] == row_ids[r] ? hit : U(0);
  }
}

template <class T>
void sample_negatives(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids, const int64_t* col_ids,
                      int64_t row_offset, uint64_t seed, int64_t* out) {
  for (int64_t r = 0; r < rows; ++r)
    out[r] = backend::portable::sample_negative_row(weights + r * cols, cols, col_ids, row_ids[r], row_offset + r, seed,
                                                    row_offset + r);
}

template <class T>
void queue_enqueue(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr) {
  for (int64_t j = 0; j < B; ++j) {
    const int64_t column = backend::portable::queue_column(*ptr, j, B, Q);
    if (column < 0) continue;
    for (int64_t e = 0; e < E; ++e) queue[e * Q + column] = src[j * E + e];
  }
}

inline void queue_advance(int64_t* ptr, int64_t B, int64_t Q) {
  *ptr = backend::portable::queue_advanced(*ptr, B, Q);
}

}  // namespace blip::cpu
