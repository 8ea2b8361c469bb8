// blip/backend/cpu/reduce.hpp — sums over the middle axis of a contiguous [outer, r, inner] block.
//
// Contract: out[o, i] = sum_k x[o, k, i] for contiguous x and out. Any reduction over one
// axis of a row-major tensor has this form; several axes are reduced one after another.
#pragma once

#include <Eigen/Core>

#include <cstdint>

#include "blip/backend/cpu/parallel.hpp"

namespace blip::cpu {

template <class T>
void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  if (inner == 1) {
    parallel_for(outer, r, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) out[o] = Eigen::Map<const Vec>(x + o * r, r).sum();
    });
    return;
  }
  constexpr int64_t kChunk = 256;  // columns per task: keeps a task's accumulator in L1
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  parallel_for(outer * chunks, r * kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o = task / chunks, c0 = (task % chunks) * kChunk;
      const int64_t width = std::min(kChunk, inner - c0);
      Eigen::Map<Vec> acc(out + o * inner + c0, width);
      acc.setZero();
      for (int64_t k = 0; k < r; ++k) acc += Eigen::Map<const Vec>(x + (o * r + k) * inner + c0, width);
    }
  });
}

}  // namespace blip::cpu
