// blip/backend/cpu/copy.hpp — strided copies and conversions between layouts (CPU memory).
//
// Contract: `assign` writes every element of a `shape`-shaped source layout into a destination
// layout of the same shape. Destination elements must not overlap each other (a view, not an
// expanded tensor); source layouts may repeat elements (stride 0).
#pragma once

#include <cstdint>

#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/layout.hpp"

namespace blip::cpu {

template <class Dst, class Src, class Convert>
void assign(const Shape& shape, const Src* src, const Strides& src_strides, Dst* dst,
            const Strides& dst_strides, Convert convert) {
  const int64_t n = numel(shape);
  if (n == 0) return;
  if (shape.empty()) {
    dst[0] = convert(src[0]);
    return;
  }
  const int64_t last = shape.back();
  const int64_t ss = src_strides.back();
  const int64_t ds = dst_strides.back();
  parallel_for(n / last, last, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const Src* s = src + offset_of(row * last, shape, src_strides);
      Dst* d = dst + offset_of(row * last, shape, dst_strides);
      if (ss == 1 && ds == 1) {
        for (int64_t j = 0; j < last; ++j) d[j] = convert(s[j]);
      } else {
        for (int64_t j = 0; j < last; ++j) d[j * ds] = convert(s[j * ss]);
      }
    }
  });
}

template <class T>
void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst,
            const Strides& dst_strides) {
  assign(shape, src, src_strides, dst, dst_strides, [](T v) { return v; });
}

template <class T>
void fill(T* dst, int64_t n, T value) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = value;
  });
}

}  // namespace blip::cpu
