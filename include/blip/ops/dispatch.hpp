// blip/ops/dispatch.hpp — the one place an op learns which backend runs it.
//
// Contract: `on_cpu<D>` selects CPU kernels at compile time; an op with no kernel for a device
// throws blip::Error naming the op and the device (at run time, so generic code that merely
// instantiates an op for Cuda still compiles).
#pragma once

#include <concepts>

#include "blip/core/device.hpp"
#include "blip/core/error.hpp"

namespace blip {

template <class D>
inline constexpr bool on_cpu = std::same_as<D, Cpu>;

template <Device D>
[[noreturn]] void no_kernel(const char* op) {
  fail(op, ": no ", D::name, " kernel yet (run it on Cpu, or move the tensor with blip::to<Cpu>)");
}

}  // namespace blip
