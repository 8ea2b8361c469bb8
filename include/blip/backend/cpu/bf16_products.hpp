// blip/backend/cpu/bf16_products.hpp — whether bf16 products pay on this CPU.
//
// Contract: bf16_products_pay() says whether a bf16 GEMM (float accumulation) runs clearly faster
// here than the float one, so that a bf16 (or int8) PrecisionScope multiplies in bf16
// (ops/precision.hpp); where it does not, the scope's products stay float — more exact, and faster.
// Why it is measured: the answer depends on the core, not on the instruction set. AMD Zen 4 and
// Zen 5 run oneDNN's bf16 matmul at 1.8–1.9× their float rate; an Intel Xeon that reports
// AVX512_BF16 but whose AMX is not exposed (a virtual machine) runs it at about half its float rate
// (docs/performance.md). So on first use a linear layer of 256 × 768 → 768 is timed each way (the
// bf16 one on a packed weight, as inference runs it; best of 3 after a warm-up, ~10 ms), and bf16
// is taken if it needs at most 0.8 of the float time. The margin on the CPUs measured (0.55 and
// 1.8) keeps the choice stable against a noisy neighbour.
// BLIP_CPU_BF16=auto|on|off (read once) or set_bf16_products() decides instead: the tests force
// `on` so that the bf16 kernels are checked on every CPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "blip/backend/cpu/gemm.hpp"
#include "blip/core/error.hpp"

namespace blip::cpu {

enum class Bf16Products { automatic, on, off };

inline const char* bf16_products_name(Bf16Products p) {
  return p == Bf16Products::on ? "on" : p == Bf16Products::off ? "off" : "auto";
}

inline Bf16Products parse_bf16_products(std::string_view name) {
  if (name == "auto") return Bf16Products::automatic;
  if (name == "on") return Bf16Products::on;
  if (name == "off") return Bf16Products::off;
  fail("BLIP_CPU_BF16: '", std::string(name), "' is not one of auto, on, off");
}

namespace detail {
inline std::atomic<int>& bf16_products_choice() {
  static std::atomic<int> choice{-1};  // -1: BLIP_CPU_BF16 not read yet
  return choice;
}
}  // namespace detail

// For the whole process.
inline void set_bf16_products(Bf16Products p) {
  detail::bf16_products_choice().store(static_cast<int>(p), std::memory_order_relaxed);
}

inline Bf16Products bf16_products_setting() {
  int choice = detail::bf16_products_choice().load(std::memory_order_relaxed);
  if (choice < 0) {
    const char* env = std::getenv("BLIP_CPU_BF16");
    choice = static_cast<int>(env && *env ? parse_bf16_products(env) : Bf16Products::automatic);
    detail::bf16_products_choice().store(choice, std::memory_order_relaxed);
  }
  return static_cast<Bf16Products>(choice);
}

// The measurement `automatic` decides by (seconds per product, best of 3), taken once.
struct Bf16Timing {
  double float_seconds = 0, bf16_seconds = 0;
  bool bf16_available = false;  // oneDNN has a bf16 matmul on this CPU
  double speedup() const { return bf16_seconds > 0 ? float_seconds / bf16_seconds : 0.0; }
};

inline const Bf16Timing& bf16_timing() {
  static const Bf16Timing timing = [] {
    Bf16Timing t;
    t.bf16_available = detail::bf16_matmul_available();
    if (!t.bf16_available) return t;
    constexpr int64_t rows = 256, in = 768, out = 768;
    std::vector<float> x(rows * in), w(out * in), y(rows * out);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int64_t>(i % 17) - 8) * 0.125f;
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int64_t>(i % 13) - 6) * 0.0625f;
    std::vector<bf16> x16(x.size()), w16(w.size());
    for (size_t i = 0; i < x.size(); ++i) x16[i] = bf16(x[i]);
    for (size_t i = 0; i < w.size(); ++i) w16[i] = bf16(w[i]);
    const backend::PackedWeight packed = pack_linear_bf16(w16.data(), out, in);
    const auto best_of_3 = [](auto&& product) {
      product();  // warm-up: primitive creation, first touch
      double best = 1e30;
      for (int r = 0; r < 3; ++r) {
        const auto start = std::chrono::steady_clock::now();
        product();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return best;
    };
    t.float_seconds = best_of_3([&] { linear<float>(x.data(), rows, in, w.data(), out, nullptr, y.data()); });
    t.bf16_seconds = best_of_3([&] {
      if (packed) linear_bf16_packed(x16.data(), rows, in, packed, out, nullptr, y.data());
      else linear_bf16(x16.data(), rows, in, w16.data(), out, nullptr, y.data());
    });
    return t;
  }();
  return timing;
}

inline bool bf16_products_pay() {
  switch (bf16_products_setting()) {
    case Bf16Products::on: return true;
    case Bf16Products::off: return false;
    case Bf16Products::automatic: break;
  }
  const Bf16Timing& t = bf16_timing();
  return t.bf16_available && t.bf16_seconds <= 0.8 * t.float_seconds;
}

}  // namespace blip::cpu
