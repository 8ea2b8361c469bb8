// blip/backend/portable.hpp — the bodies that the CPU kernels and the CUDA kernels share, so both
// devices compute the same bits: counter-based random numbers and the per-row steps of the
// contrastive head (same-id targets, hard-negative draws, the queue's columns).
//
// Contract:
// - philox4x32(counter, key): Philox4x32-10 (Salmon et al., SC'11; the generator of
//   cuRAND's and PyTorch's CUDA dropout). Four 32-bit words per 128-bit counter; a key fixes
//   the stream. Element i of a dropout mask reads word i % 4 of counter (i / 4, 0), so the mask
//   is the same on every device, thread count and grid.
// - dropout_keep(seed, i, threshold): element i is dropped when its word is below `threshold`
//   (p · 2^32 rounded, computed once on the host: an integer comparison, no float rounding).
// - sample_negative_row: BLIP's hard-negative draw for one row (torch.multinomial over the
//   row's weights, with the reference's error replaced by a fallback); the row's random words
//   come from counter (row, 1). Serial over the row, so every device walks the same sum.
// Plain C++ on the host; __host__ __device__ under nvcc. No allocation, no library calls.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BLIP_HOST_DEVICE __host__ __device__
#else
#define BLIP_HOST_DEVICE
#endif

namespace blip::backend::portable {

struct PhiloxWords {
  uint32_t w[4];
};

BLIP_HOST_DEVICE inline uint32_t mul_hi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

BLIP_HOST_DEVICE inline uint64_t mul_hi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

BLIP_HOST_DEVICE inline PhiloxWords philox4x32(uint64_t counter_lo, uint64_t counter_hi, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = 0xD2511F53u * c0, hi0 = mul_hi32(0xD2511F53u, c0);
    const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = mul_hi32(0xCD9E8D57u, c2);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// p · 2^32, rounded: the drop threshold of dropout_keep (2^32 drops everything).
inline uint64_t dropout_threshold(double p) {
  if (!(p > 0)) return 0;
  if (p >= 1) return uint64_t{1} << 32;
  return static_cast<uint64_t>(p * 4294967296.0 + 0.5);
}

BLIP_HOST_DEVICE inline bool dropout_keep(uint64_t seed, int64_t i, uint64_t threshold) {
  const PhiloxWords r = philox4x32(static_cast<uint64_t>(i) / 4, 0, seed);
  return r.w[static_cast<uint64_t>(i) % 4] >= threshold;
}

// x finite and > 0 (NaN and +inf fail both tests), without <cmath> on the device.
template <class T>
BLIP_HOST_DEVICE inline bool positive_finite(T x) {
  return x > T(0) && x - x == T(0);
}

// A negative for row `row` (global index `self` among the `cols` candidates) from its weights:
// a draw proportional to the finite positive weights; when there are none (the reference raises
// "invalid multinomial distribution"), uniformly another image id, else another sample, else
// the row itself.
template <class T>
BLIP_HOST_DEVICE inline int64_t sample_negative_row(const T* weights, int64_t cols, const int64_t* col_ids,
                                                    int64_t row_id, int64_t self, uint64_t seed, int64_t row) {
  const PhiloxWords r = philox4x32(static_cast<uint64_t>(row), 1, seed);
  double total = 0;
  for (int64_t j = 0; j < cols; ++j)
    if (positive_finite(weights[j])) total += static_cast<double>(weights[j]);
  if (total > 0 && total - total == 0) {
    const uint64_t bits = (static_cast<uint64_t>(r.w[0]) << 32 | r.w[1]) >> 11;
    double u = static_cast<double>(bits) * 0x1.0p-53 * total;
    int64_t last_valid = -1;
    for (int64_t j = 0; j < cols; ++j) {
      const T x = weights[j];
      if (!positive_finite(x)) continue;
      last_valid = j;
      if (u < static_cast<double>(x)) return j;
      u -= static_cast<double>(x);
    }
    return last_valid;
  }
  const uint64_t pick_bits = static_cast<uint64_t>(r.w[2]) << 32 | r.w[3];
  int64_t other_ids = 0;
  for (int64_t j = 0; j < cols; ++j) other_ids += col_ids[j] != row_id;
  if (other_ids > 0) {
    int64_t m = static_cast<int64_t>(mul_hi64(pick_bits, static_cast<uint64_t>(other_ids)));
    for (int64_t j = 0; j < cols; ++j)
      if (col_ids[j] != row_id && m-- == 0) return j;
  }
  const bool self_listed = self >= 0 && self < cols;
  if (cols > (self_listed ? 1 : 0)) {
    const int64_t m = static_cast<int64_t>(mul_hi64(pick_bits, static_cast<uint64_t>(cols - self_listed)));
    return self_listed && m >= self ? m + 1 : m;  // every column but `self`
  }
  return self;
}

// Column of queue entry j when a batch of `batch` enters a queue of `size` at `ptr`; entries
// j < batch - size are overwritten by later ones of the same batch and are skipped (-1), so the
// kept writes go to distinct columns and may run in parallel.
BLIP_HOST_DEVICE inline int64_t queue_column(int64_t ptr, int64_t j, int64_t batch, int64_t size) {
  if (j < batch - size) return -1;
  const int64_t p = ((ptr % size) + size) % size;
  return (p + j) % size;
}

// The pointer after a batch of `batch` entered a queue of `size` at `ptr`.
BLIP_HOST_DEVICE inline int64_t queue_advanced(int64_t ptr, int64_t batch, int64_t size) {
  return (((ptr % size) + size) % size + batch % size) % size;
}

}  // namespace blip::backend::portable
