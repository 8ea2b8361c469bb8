// blip/core/rng.hpp — Generator: a seeded, explicitly passed random source.
//
// Contract: xoshiro256** seeded through splitmix64. The same seed gives the same stream on
// every build and platform; there is no global generator, so each model, loader or test owns
// its randomness. state()/set_state() capture and restore it exactly (for training resume).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "blip/core/error.hpp"

namespace blip {

class Generator {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Generator(uint64_t seed = 0) { reseed(seed); }

  void reseed(uint64_t seed) {
    for (uint64_t& word : state_) {  // splitmix64: decorrelates nearby seeds
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n), unbiased (rejection of the short last range).
  int64_t uniform_int(int64_t n) {
    BLIP_CHECK(n > 0, "Generator::uniform_int: n must be positive, got ", n);
    const uint64_t range = static_cast<uint64_t>(n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return static_cast<int64_t>(x % range);
  }

  // Standard normal (Box–Muller; one draw per call keeps the state four words).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

  // Normal(mean, std) restricted to [lo, hi] by rejection (as timm/mmcv trunc_normal_).
  double truncated_normal(double mean, double std, double lo, double hi) {
    BLIP_CHECK(lo < hi && std > 0, "Generator::truncated_normal: need lo < hi and std > 0");
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const double x = mean + std * normal();
      if (x >= lo && x <= hi) return x;
    }
    return std::clamp(mean, lo, hi);  // interval far in a tail: fall back to its nearest point
  }

  State state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  State state_{};
};

}  // namespace blip
