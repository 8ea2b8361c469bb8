// blip/backend/cpu/byte_shares.hpp — one parallel pass over many byte ranges (a checkpoint's
// entries to CRC-check, a model's tensors to copy), split by bytes rather than by item.
//
// Contract: byte_share_count(total) is how many shares a pass over `total` bytes should use: the
// OpenMP thread count from 16 MiB on, else 1 (and 1 without OpenMP: the fuzz builds of the
// readers). for_byte_shares(sizes, count, shares, fn) lays the `count` items (sizes[i] bytes each)
// end to end, gives each of `shares` shares one contiguous run of the bytes, and calls fn(share,
// item, offset, length) for every piece of an item inside a share: at most one piece per item and
// share, a share's pieces in order, so an item's pieces come in share order. Why one region for
// all items: a region per item costs a scheduler time slice each when the cores are busy
// (BLIP-base: ~1,000 tensors of 1-100 MB).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace blip::cpu {

inline int byte_share_count(uint64_t total) {
#ifdef _OPENMP
  constexpr uint64_t kParallelBytes = uint64_t{16} << 20;
  if (total >= kParallelBytes && !omp_in_parallel()) return std::max(1, omp_get_max_threads());
#endif
  (void)total;
  return 1;
}

template <class Fn>
void for_byte_shares(const uint64_t* sizes, size_t count, int shares, Fn&& fn) {
  uint64_t total = 0;
  for (size_t i = 0; i < count; ++i) total += sizes[i];
  shares = std::max(1, shares);
  auto run_share = [&](int share) {
    const uint64_t begin = total * static_cast<uint64_t>(share) / static_cast<uint64_t>(shares);
    const uint64_t end = total * static_cast<uint64_t>(share + 1) / static_cast<uint64_t>(shares);
    uint64_t item_start = 0;
    for (size_t i = 0; i < count && item_start < end; item_start += sizes[i], ++i) {
      const uint64_t from = std::max(begin, item_start), to = std::min(end, item_start + sizes[i]);
      if (from < to) fn(share, i, from - item_start, to - from);
    }
  };
  if (shares == 1) {
    run_share(0);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for num_threads(shares) schedule(static, 1)
#endif
  for (int share = 0; share < shares; ++share) run_share(share);
}

}  // namespace blip::cpu
