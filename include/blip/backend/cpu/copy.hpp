// blip/backend/cpu/copy.hpp — strided copies and conversions between layouts (CPU memory).
//
// Contract: `assign` writes every element of a `shape`-shaped source layout into a destination
// layout of the same shape. Destination elements must not overlap each other (a view, not an
// expanded tensor); source layouts may repeat elements (stride 0).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#include <immintrin.h>
#define BLIP_COPY_STREAMING_X86 1
#endif
#include <vector>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/byte_shares.hpp"
#include "blip/backend/cpu/parallel.hpp"
#include "blip/core/layout.hpp"

namespace blip::cpu {

// Merges dimensions laid out back to back in both layouts and drops size-1 ones, so a
// contiguous copy is one long row and a [B, L, H, d] permute copies rows of d elements; the
// copy loop's cost is then per row, not per element.
inline void coalesce_layouts(const Shape& shape, const Strides& a, const Strides& b, Shape& out_shape,
                             Strides& out_a, Strides& out_b) {
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!out_shape.empty() && out_a.back() == a[i] * shape[i] && out_b.back() == b[i] * shape[i]) {
      out_shape.back() *= shape[i];
      out_a.back() = a[i];
      out_b.back() = b[i];
    } else {
      out_shape.push_back(shape[i]);
      out_a.push_back(a[i]);
      out_b.push_back(b[i]);
    }
  }
}

// The conversion of a plain copy (lets assign() use memcpy for unit-stride rows).
struct Identity {
  template <class T>
  T operator()(T v) const { return v; }
};

template <class Dst, class Src, class Convert>
void assign(const Shape& full_shape, const Src* src, const Strides& full_src_strides, Dst* dst,
            const Strides& full_dst_strides, Convert convert) {
  if (numel(full_shape) == 0) return;
  Shape shape;
  Strides src_strides, dst_strides;
  coalesce_layouts(full_shape, full_src_strides, full_dst_strides, shape, src_strides, dst_strides);
  if (shape.empty()) {
    dst[0] = convert(src[0]);
    return;
  }
  const int64_t last = shape.back();
  const int64_t ss = src_strides.back();
  const int64_t ds = dst_strides.back();
  const size_t outer = shape.size() - 1;
  constexpr bool plain_copy = std::same_as<Src, Dst> && std::same_as<Convert, Identity>;
  if (outer == 0) {  // one (long) row: split it
    parallel_for(last, 1, [&](int64_t begin, int64_t end) {
      if constexpr (plain_copy) {
        if (ss == 1 && ds == 1) {  // memcpy speed (a checkpoint's tensors into a model)
          std::memcpy(dst + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(Src));
          return;
        }
      }
      for (int64_t j = begin; j < end; ++j) dst[j * ds] = convert(src[j * ss]);
    });
    return;
  }
  parallel_for(numel(shape) / last, last, [&](int64_t begin, int64_t end) {
    // Outer index of row `begin`, then advanced like an odometer (no division per row).
    std::vector<int64_t> index(outer);
    int64_t so = 0, d_o = 0;
    for (size_t d = outer, rest = static_cast<size_t>(begin); d-- > 0;) {
      index[d] = static_cast<int64_t>(rest % static_cast<size_t>(shape[d]));
      rest /= static_cast<size_t>(shape[d]);
      so += index[d] * src_strides[d];
      d_o += index[d] * dst_strides[d];
    }
    for (int64_t row = begin; row < end; ++row) {
      const Src* s = src + so;
      Dst* d = dst + d_o;
      if (ss == 1 && ds == 1) {
        if constexpr (plain_copy) std::memcpy(d, s, static_cast<size_t>(last) * sizeof(Src));
        else for (int64_t j = 0; j < last; ++j) d[j] = convert(s[j]);
      } else {
        for (int64_t j = 0; j < last; ++j) d[j * ds] = convert(s[j * ss]);
      }
      for (size_t k = outer; k-- > 0;) {
        so += src_strides[k];
        d_o += dst_strides[k];
        if (++index[k] < shape[k]) break;
        so -= src_strides[k] * shape[k];
        d_o -= dst_strides[k] * shape[k];
        index[k] = 0;
      }
    }
  });
}

template <class T>
void assign(const Shape& shape, const T* src, const Strides& src_strides, T* dst,
            const Strides& dst_strides) {
  assign(shape, src, src_strides, dst, dst_strides, Identity{});
}

// A bulk copy with non-temporal stores: the destination bypasses the caches, so the copy moves
// each byte across the memory bus twice instead of three times (no read-for-ownership). For
// data not read again soon — a checkpoint's tensors into a model's parameters. Chosen at run
// time (AVX), not by the build's -march: without -mavx this was a plain memcpy, whose stores
// read each destination line first below glibc's non-temporal threshold (tens of MB).
namespace detail {
#ifdef BLIP_COPY_STREAMING_X86
__attribute__((target("avx"))) inline void copy_streaming_avx(uint8_t* d, const uint8_t* s, size_t bytes) {
  const size_t head = std::min(bytes, (32 - reinterpret_cast<uintptr_t>(d) % 32) % 32);
  std::memcpy(d, s, head);
  size_t i = head;
  for (; i + 32 <= bytes; i += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
  std::memcpy(d + i, s + i, bytes - i);
  _mm_sfence();
}
inline bool copy_streaming_has_avx() {
  static const bool has = __builtin_cpu_supports("avx");
  return has;
}
#endif
}  // namespace detail

inline void copy_streaming(void* dst, const void* src, size_t bytes) {
#ifdef BLIP_COPY_STREAMING_X86
  if (detail::copy_streaming_has_avx()) {
    detail::copy_streaming_avx(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
    return;
  }
#endif
  std::memcpy(dst, src, bytes);
}

// A batch of contiguous copies in one pass, split by bytes over the threads: loading a
// checkpoint copies ~1,000 tensors, most below the size where one copy alone is worth a region.
inline void copy_bulk(const backend::BulkCopy* copies, size_t n) {
  std::vector<uint64_t> sizes(n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) total += sizes[i] = copies[i].bytes;
  for_byte_shares(sizes.data(), n, byte_share_count(total), [&](int, size_t i, uint64_t offset, uint64_t length) {
    copy_streaming(static_cast<uint8_t*>(copies[i].dst) + offset, static_cast<const uint8_t*>(copies[i].src) + offset,
                   static_cast<size_t>(length));
  });
}

template <class T>
void fill(T* dst, int64_t n, T value) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = value;
  });
}

}  // namespace blip::cpu
