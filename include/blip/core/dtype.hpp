// blip/core/dtype.hpp — element types: float/double/int64 and the 16-bit storage types.
//
// Contract: bf16 and fp16 are storage-only types (for checkpoints and later mixed precision):
// they convert to and from float with round-to-nearest-even and carry no arithmetic.
// `Differentiable<T>` holds for the types the autograd tape works with (float, double).
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>

namespace blip {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  explicit bf16(float value) {
    uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet, never round to infinity
      bits = static_cast<uint16_t>((u >> 16) | 0x40u);
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    bits = static_cast<uint16_t>(u >> 16);
  }
  explicit operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }
  static bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }
};

struct fp16 {
  uint16_t bits = 0;

  fp16() = default;
  explicit fp16(float value) {
    const uint32_t u = std::bit_cast<uint32_t>(value);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) {  // NaN
      bits = static_cast<uint16_t>(sign | 0x7e00u);
    } else if (abs >= 0x47800000u) {  // >= 65536: infinity (65520..65536 carry into it below)
      bits = static_cast<uint16_t>(sign | 0x7c00u);
    } else if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
      // Adding 0.5 makes the FPU's own round-to-nearest-even do the rounding for us.
      const float shifted = std::bit_cast<float>(abs) + 0.5f;
      bits = static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(shifted) - 0x3f000000u));
    } else {
      const uint32_t mantissa_odd = (abs >> 13) & 1u;
      const uint32_t rounded = abs + 0xc8000fffu + mantissa_odd;  // rebias exponent, round
      bits = static_cast<uint16_t>(sign | (rounded >> 13));
    }
  }
  explicit operator float() const {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1fu;
    const uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0) {  // zero or subnormal: exact in float
      const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;  // 2^-24
      return std::bit_cast<float>(std::bit_cast<uint32_t>(magnitude) | sign);
    }
    if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
  static fp16 from_bits(uint16_t b) {
    fp16 h;
    h.bits = b;
    return h;
  }
};

template <class T>
concept Differentiable = std::same_as<T, float> || std::same_as<T, double>;

template <class T>
concept Element = Differentiable<T> || std::same_as<T, int64_t> || std::same_as<T, int32_t> ||
                  std::same_as<T, uint8_t> || std::same_as<T, int8_t> || std::same_as<T, bf16> ||
                  std::same_as<T, fp16>;

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::same_as<T, float>) return "float32";
  else if constexpr (std::same_as<T, double>) return "float64";
  else if constexpr (std::same_as<T, int64_t>) return "int64";
  else if constexpr (std::same_as<T, int32_t>) return "int32";
  else if constexpr (std::same_as<T, uint8_t>) return "uint8";
  else if constexpr (std::same_as<T, int8_t>) return "int8";
  else if constexpr (std::same_as<T, bf16>) return "bfloat16";
  else return "float16";
}

}  // namespace blip
