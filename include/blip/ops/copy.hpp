// blip/ops/copy.hpp — contiguous(), clone(), device moves (to<D>) and element-type casts.
//
// Contract: contiguous() returns its input when already row-major, else a row-major copy;
// clone() always copies. to<D2>() copies across devices and detaches: each device keeps its
// own tape (a graph is built where the data lives; move leaves, not intermediate results). cast<U>() converts element types (bf16/fp16 round to nearest even) on the CPU
// and is not recorded by autograd. Fills write into existing memory (no autograd).
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "blip/autograd/graph.hpp"
#include "blip/ops/dispatch.hpp"

namespace blip {

// Writes `src` (any layout) into `dst` (any non-overlapping layout) of the same shape.
template <Element T, Device D>
void copy_into(const Tensor<T, D>& dst, const Tensor<T, D>& src) {
  BLIP_CHECK(dst.shape() == src.shape(), "copy_into: destination shape ", dst.shape(),
             " differs from source shape ", src.shape());
  kernels<D>::assign(src.shape(), src.data(), src.strides(), dst.data(), dst.strides());
}

// copy_into for bulk loads, a batch of (dst, src) pairs at a time: the contiguous ones go
// through the device's bulk copy in one call (on the CPU: one pass split by bytes over the
// threads, non-temporal stores, since the destination is not read again soon, e.g. a checkpoint
// into a model); anything else is copy_into.
template <Element T, Device D>
void copy_into_streaming(std::span<const std::pair<Tensor<T, D>, Tensor<T, D>>> pairs) {
  std::vector<backend::BulkCopy> bulk;
  bulk.reserve(pairs.size());
  for (const auto& [dst, src] : pairs) {
    if (dst.shape() == src.shape() && dst.is_contiguous() && src.is_contiguous())
      bulk.push_back({dst.data(), src.data(), static_cast<size_t>(src.numel()) * sizeof(T)});
    else
      copy_into(dst, src);
  }
  kernels<D>::copy_bulk(bulk.data(), bulk.size());
}

template <Element T, Device D>
void copy_into_streaming(const Tensor<T, D>& dst, const Tensor<T, D>& src) {
  const std::pair<Tensor<T, D>, Tensor<T, D>> one{dst, src};
  copy_into_streaming(std::span(&one, 1));
}

template <Element T, Device D>
void fill_(const Tensor<T, D>& dst, T value) {
  BLIP_CHECK(dst.is_contiguous(), "fill_: destination of shape ", dst.shape(), " must be contiguous");
  kernels<D>::fill(dst.data(), dst.numel(), value);
}

// In place: each element limited to [lo, hi] (NaN stays NaN, as std::clamp), on its device.
template <Element T, Device D>
void clamp_(const Tensor<T, D>& dst, T lo, T hi) {
  BLIP_CHECK(dst.is_contiguous(), "clamp_: destination of shape ", dst.shape(), " must be contiguous");
  BLIP_CHECK(!(hi < lo), "clamp_: lower bound ", lo, " is above the upper bound ", hi);
  kernels<D>::clamp(dst.data(), dst.numel(), lo, hi);
}

template <Element T, Device D>
Tensor<T, D> clone(const Tensor<T, D>& x) {
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  copy_into(y, x);
  if (grad_needed(x)) record(y, "clone", {&x}, [](const Tensor<T, D>& gy) { return std::vector{gy}; });
  return y;
}

template <Element T, Device D>
Tensor<T, D> contiguous(const Tensor<T, D>& x) {
  if (x.is_contiguous()) return x;
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  copy_into(y, x);
  if (grad_needed(x))
    record(y, "contiguous", {&x}, [](const Tensor<T, D>& gy) { return std::vector{gy}; });
  return y;
}

template <Device To, Element T, Device From>
Tensor<T, To> to(const Tensor<T, From>& x) {
  if constexpr (std::same_as<To, From>) {
    return x;
  } else {
    const Tensor<T, From> xc = contiguous(x.detach());
    Tensor<T, To> y = Tensor<T, To>::empty(x.shape());
    transfer<To, From>(y.data(), xc.data(), sizeof(T) * static_cast<size_t>(x.numel()));
    return y;
  }
}

// to<To> for inputs fed in a loop (batches): a host tensor goes to a device without the host
// waiting for the copy — staged in pinned memory and copied on a copy stream that the current
// stream waits for (DeviceMemory<Cuda>::upload_async). The copy follows the work already queued
// on the current stream (its destination may be memory that work used), so uploading batch i + 1
// before queuing batch i's work lets the copy run beside it. The same values as to<To>; the host
// tensor may go right after.
template <Device To, Element T, Device From>
Tensor<T, To> upload(const Tensor<T, From>& x) {
  if constexpr (std::same_as<To, From> || !std::same_as<From, Cpu>) {
    return to<To>(x);
  } else {
    const Tensor<T, Cpu> xc = contiguous(x.detach());
    Tensor<T, To> y = Tensor<T, To>::empty(x.shape());
    DeviceMemory<To>::upload_async(y.data(), xc.data(), sizeof(T) * static_cast<size_t>(x.numel()));
    return y;
  }
}

template <Element U, Element T>
Tensor<U, Cpu> cast(const Tensor<T, Cpu>& x) {
  Tensor<U, Cpu> y = Tensor<U, Cpu>::empty(x.shape());
  cpu::assign(x.shape(), x.data(), x.strides(), y.data(), y.strides(), [](T v) {
    if constexpr (std::same_as<T, bf16> || std::same_as<T, fp16>) {
      return static_cast<U>(static_cast<float>(v));
    } else if constexpr (std::same_as<U, bf16> || std::same_as<U, fp16>) {
      return U(static_cast<float>(v));
    } else {
      return static_cast<U>(v);
    }
  });
  return y;
}

}  // namespace blip
