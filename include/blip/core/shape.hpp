// blip/core/shape.hpp — shapes, strides, axis normalisation and broadcasting rules.
//
// Contract: a Shape is a list of non-negative extents (rank 0 = a scalar with one element);
// strides count elements, not bytes. Functions taking an `op` name use it in their errors.
#pragma once

#include <cstdint>
#include <vector>

#include "blip/core/error.hpp"

namespace blip {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

inline int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t extent : shape) n *= extent;
  return n;
}

inline Strides contiguous_strides(const Shape& shape) {
  Strides strides(shape.size());
  int64_t running = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = running;
    running *= shape[i];
  }
  return strides;
}

// Maps a possibly negative axis (-1 = last) into [0, rank); throws naming the op otherwise.
inline int64_t normalize_axis(int64_t axis, int64_t rank, const char* op) {
  const int64_t normalized = axis < 0 ? axis + rank : axis;
  BLIP_CHECK(normalized >= 0 && normalized < rank, op, ": axis ", axis,
             " is out of range for a tensor of rank ", rank);
  return normalized;
}

inline void check_shape(const Shape& shape, const char* op) {
  for (int64_t extent : shape)
    BLIP_CHECK(extent >= 0, op, ": negative extent in shape ", shape);
}

// NumPy/PyTorch broadcasting: align trailing axes; extents must match or be 1.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t ea = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t eb = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    BLIP_CHECK(ea == eb || ea == 1 || eb == 1, op, ": shapes ", a, " and ", b,
               " cannot be broadcast together");
    out[i] = ea == 1 ? eb : ea;
  }
  return out;
}

}  // namespace blip
