// blip/core/layout.hpp — walking strided layouts (shape + strides) in logical row-major order.
//
// Contract: the walkers only compute offsets; they never touch memory, so they serve CPU
// kernels and host-side index arithmetic alike. Shapes with a zero extent visit nothing.
#pragma once

#include <cstdint>

#include "blip/core/shape.hpp"

namespace blip {

// Offset of the element with the given row-major linear index in a strided layout.
inline int64_t offset_of(int64_t linear, const Shape& shape, const Strides& strides) {
  int64_t offset = 0;
  for (size_t i = shape.size(); i-- > 0;) {
    const int64_t extent = shape[i];
    offset += (linear % extent) * strides[i];
    linear /= extent;
  }
  return offset;
}

// Calls row(first_offset, row_index) for every row along the last axis (rank 0: one row of
// length 1), in row-major order. The caller steps through a row with strides.back().
template <class RowFn>
void for_each_row(const Shape& shape, const Strides& strides, RowFn&& row) {
  if (numel(shape) == 0) return;
  if (shape.empty()) {
    row(int64_t{0}, int64_t{0});
    return;
  }
  const size_t outer_rank = shape.size() - 1;
  const int64_t rows = numel(shape) / shape.back();
  std::vector<int64_t> index(outer_rank, 0);
  int64_t offset = 0;
  for (int64_t r = 0; r < rows; ++r) {
    row(offset, r);
    for (size_t axis = outer_rank; axis-- > 0;) {  // odometer increment
      offset += strides[axis];
      if (++index[axis] < shape[axis]) break;
      offset -= strides[axis] * shape[axis];
      index[axis] = 0;
    }
  }
}

// True when the strides are the row-major ones (extent-1 axes may carry any stride).
inline bool is_contiguous_layout(const Shape& shape, const Strides& strides) {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

}  // namespace blip
