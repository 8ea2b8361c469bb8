// blip/ops/dispatch.hpp — how an op reaches its kernels: `kernels<D>` is backend::Kernels<D>.
//
// Contract: ops call only `kernels<D>::name(...)` (backend/kernels.hpp), so an op has no device
// branch; a kernel a device lacks throws blip::Error naming the kernel and the device at run
// time (generic code instantiated for Cuda still compiles). `on_cpu<D>` remains for code above
// the ops that needs host memory (metrics on the CPU).
#pragma once

#include <concepts>

#include "blip/backend/kernels.hpp"
#include "blip/core/device.hpp"
#include "blip/core/error.hpp"

namespace blip {

template <class D>
inline constexpr bool on_cpu = std::same_as<D, Cpu>;

template <Device D>
using kernels = backend::Kernels<D>;

}  // namespace blip
