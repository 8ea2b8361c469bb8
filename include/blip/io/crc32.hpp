// blip/io/crc32.hpp — CRC-32 (the zip / gzip / PNG polynomial), as zlib's crc32_z computes it.
//
// Contract: crc32(crc, data, n) == zlib's crc32_z(crc, data, n) for every input (start from
// crc32_init(); pieces chain). On x86-64 CPUs with PCLMULQDQ the bulk of the bytes is folded
// with carry-less multiplies (Intel's "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ", the constants of Linux's crc32-pclmul) and the tail left to zlib; elsewhere zlib
// does it all. Why not zlib alone: Debian's zlib 1.2.13 runs at ~2-3.5 GB/s here, which made
// checking a 1.9 GB checkpoint's entries cost 4x the time of reading the file; the fold runs at
// ~12 GB/s, and with VPCLMULQDQ (AVX-512 CPUs that have it, chosen at run time) four zmm
// registers fold 256 bytes a step (docs/performance.md). test_robust_inputs compares every path
// with zlib on random lengths, offsets and start values.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#include <immintrin.h>
#define BLIP_CRC32_PCLMUL 1
#endif

namespace blip::io {

inline uint32_t crc32_init() { return static_cast<uint32_t>(::crc32_z(0, nullptr, 0)); }

// The CRC of A followed by B from crc(A), crc(B) and B's length (zlib; O(log length)): how the
// CRCs of pieces checked on different threads join.
inline uint32_t crc32_join(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  static_assert(sizeof(z_off_t) == 8, "zlib with 64-bit offsets");
  return static_cast<uint32_t>(::crc32_combine(crc_a, crc_b, static_cast<z_off_t>(length_b)));
}

namespace detail {

#ifdef BLIP_CRC32_PCLMUL
__attribute__((target("pclmul,sse4.1"))) inline __m128i crc32_fold16(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

// The constants: x^n mod P, bit-reflected and shifted left by one (Intel's paper; Linux's
// crc32-pclmul). A fold over a distance of D bits multiplies by x^(D+32) (low half) and
// x^(D-32) (high half).
// From 128-bit lanes to the CRC: `x1` holds the fold of everything before `p`; the remaining
// `len` bytes (a multiple of 16) are folded in, then 128 -> 64 -> 32 bits (Barrett).
__attribute__((target("pclmul,sse4.1"))) inline uint32_t crc32_finish(__m128i x1, const uint8_t* p, size_t len) {
  const __m128i r4r3 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);  // x^(128+-32) mod P
  const __m128i r5 = _mm_set_epi64x(0, 0x0163cd6124);               // x^64 mod P
  const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);  // Barrett: mu, P
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  for (; len >= 16; p += 16, len -= 16)
    x1 = crc32_fold16(x1, r4r3, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(r4r3, x1, 0x01));  // 128 -> 64 bits
  __m128i x2b = x1;
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), r5, 0x00), _mm_srli_si128(x2b, 4));  // -> 32
  x2b = x1;
  x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
  x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, x2b), 1));
}

// The CRC register (not inverted) after `len` bytes, len >= 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) inline uint32_t crc32_pclmul(const uint8_t* p, size_t len, uint32_t crc) {
  const __m128i r2r1 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);  // x^(4*128+-32) mod P, reflected
  const __m128i r4r3 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);  // x^(128+-32) mod P
  const auto load = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {  // four independent folds
    x1 = crc32_fold16(x1, r2r1, load(p));
    x2 = crc32_fold16(x2, r2r1, load(p + 16));
    x3 = crc32_fold16(x3, r2r1, load(p + 32));
    x4 = crc32_fold16(x4, r2r1, load(p + 48));
  }
  x1 = crc32_fold16(x1, r4r3, x2);
  x1 = crc32_fold16(x1, r4r3, x3);
  x1 = crc32_fold16(x1, r4r3, x4);
  return crc32_finish(x1, p, len);
}

// The same with VPCLMULQDQ: four zmm registers fold 256 bytes per step (16 lanes of 128 bits),
// then the 16 lanes are folded into one, in order, and finished as above. len >= 256, a
// multiple of 16.
#define BLIP_CRC32_VPCLMUL_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))
BLIP_CRC32_VPCLMUL_TARGET inline __m512i crc32_fold64(__m512i x, __m512i k, const uint8_t* next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11),
                                   _mm512_loadu_si512(next), 0x96);
}

BLIP_CRC32_VPCLMUL_TARGET inline uint32_t crc32_vpclmul(const uint8_t* p, size_t len, uint32_t crc) {
  const long long hi = 0x01322d1430, lo = 0x011542778a;  // x^(2048+-32) mod P, in every 128-bit lane
  const __m512i k = _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo);
  const __m128i r4r3 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
  __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(crc)), 0));
  __m512i x1 = _mm512_loadu_si512(p + 64), x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
  for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
    x0 = crc32_fold64(x0, k, p);
    x1 = crc32_fold64(x1, k, p + 64);
    x2 = crc32_fold64(x2, k, p + 128);
    x3 = crc32_fold64(x3, k, p + 192);
  }
  alignas(64) __m128i lanes[16];
  _mm512_store_si512(lanes, x0);
  _mm512_store_si512(lanes + 4, x1);
  _mm512_store_si512(lanes + 8, x2);
  _mm512_store_si512(lanes + 12, x3);
  __m128i acc = lanes[0];
  for (int i = 1; i < 16; ++i) acc = crc32_fold16(acc, r4r3, lanes[i]);
  return crc32_finish(acc, p, len);
}

inline bool crc32_has_vpclmul() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
                          __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}

inline bool crc32_has_pclmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}
#endif

}  // namespace detail

inline uint32_t crc32(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
#ifdef BLIP_CRC32_PCLMUL
  if (n >= 64 && detail::crc32_has_pclmul()) {
    const size_t bulk = n & ~size_t{15};
    // zlib's value is the register inverted
    crc = n >= 256 && detail::crc32_has_vpclmul() ? ~detail::crc32_vpclmul(p, bulk, ~crc)
                                                  : ~detail::crc32_pclmul(p, bulk, ~crc);
    p += bulk;
    n -= bulk;
  }
#endif
  return n == 0 ? crc : static_cast<uint32_t>(::crc32_z(crc, p, n));
}

}  // namespace blip::io
