// blip/backend/cpu/index.hpp — index checks, gathers, scatter-adds and masked fills on the CPU.
//
// Contract: slices are [outer, extent, inner] blocks of contiguous memory. gather copies
// index[i]'s slice to position i; scatter_add adds position i back into index[i]'s slice (the
// reverse, repeated indices accumulate; `skip` (-1 = none) names an index that receives nothing,
// torch.nn.Embedding's padding_idx). check_indices throws blip::Error naming the op, what the
// indices are ("index", "label"), the position and the value of the first one outside [0, extent).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>

#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/error.hpp"

namespace blip::cpu {

inline void check_indices(const int64_t* index, int64_t n, int64_t extent, const char* op, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    BLIP_CHECK(index[i] >= 0 && index[i] < extent, op, ": ", what, " ", index[i], " at position ", i, " is outside [0, ",
               extent, ")");
}

template <class T>
void gather(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer, int64_t inner) {
  parallel_for(outer * n, inner, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t o = t / n, i = t % n;
      std::copy_n(src + (o * src_extent + index[i]) * inner, inner, dst + t * inner);
    }
  });
}

template <class T>
void scatter_add(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n, int64_t outer,
                 int64_t inner, int64_t skip) {
  // Parallel over columns only: repeated indices never race, and the sum order is fixed.
  for (int64_t o = 0; o < outer; ++o)
    parallel_for(inner, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t target = index[i];
        if (target == skip) continue;
        const T* s = src + (o * n + i) * inner;
        T* d = dst + (o * dst_extent + target) * inner;
        for (int64_t j = begin; j < end; ++j) d[j] += s[j];
      }
    });
}

// y[i] = mask[i] ? value : x[i].
template <class T, std::integral M>
void masked_fill(const T* x, const M* mask, T value, T* y, int64_t n) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = mask[i] ? value : x[i];
  });
}

// gx[i] = mask[i] ? 0 : gy[i].
template <class T, std::integral M>
void masked_fill_backward(const T* gy, const M* mask, T* gx, int64_t n) {
  masked_fill(gy, mask, T(0), gx, n);
}

}  // namespace blip::cpu
