// blip/core/device.hpp — device tags and their memory primitives.
//
// Contract: `Cpu` memory is host memory aligned to 64 bytes. `Cuda` memory is device memory from
// a caching allocator (backend/cuda); in a build without BLIP_WITH_CUDA every Cuda primitive
// throws blip::Error saying so, so CPU-only programs still compile and link. CPU tensor bytes are
// counted (DeviceMemory<Cpu>::stats(): in use and peak) for memory measurements. Library code
// outside CPU kernels never dereferences a device pointer: it moves data with these copies.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "blip/core/error.hpp"

namespace blip {

struct Cpu {
  static constexpr const char* name = "cpu";
};
struct Cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
concept Device = std::same_as<D, Cpu> || std::same_as<D, Cuda>;

// Memory primitives of a device; byte counts, raw pointers.
template <Device D>
struct DeviceMemory;

// Bytes held by CPU tensors now and at most since the last reset (process-wide counters).
struct MemoryStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes = 0;
};

template <>
struct DeviceMemory<Cpu> {
  static constexpr size_t alignment = 64;

  static void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) fail("Cpu::allocate: out of memory allocating ", bytes, " bytes");
    const size_t now = in_use().fetch_add(bytes, std::memory_order_relaxed) + bytes;
    size_t peak = peak_bytes().load(std::memory_order_relaxed);
    while (now > peak && !peak_bytes().compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
  }
  static void release(void* p, size_t bytes) {
    if (p) in_use().fetch_sub(bytes, std::memory_order_relaxed);
    std::free(p);
  }
  static MemoryStats stats() { return {in_use().load(), peak_bytes().load()}; }
  static void reset_peak() { peak_bytes().store(in_use().load()); }
  static void copy_from_host(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy_to_host(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy_within(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void fill_zero(void* dst, size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }

 private:
  static std::atomic<size_t>& in_use() {
    static std::atomic<size_t> bytes{0};
    return bytes;
  }
  static std::atomic<size_t>& peak_bytes() {
    static std::atomic<size_t> bytes{0};
    return bytes;
  }
};

#ifdef BLIP_WITH_CUDA
// Defined in the blip::cuda component (backend/cuda/runtime.cu).
template <>
struct DeviceMemory<Cuda> {
  static void* allocate(size_t bytes);
  static void release(void* p, size_t bytes);
  static void copy_from_host(void* dst, const void* src, size_t bytes);
  static void copy_to_host(void* dst, const void* src, size_t bytes);
  static void copy_within(void* dst, const void* src, size_t bytes);
  static void fill_zero(void* dst, size_t bytes);
};
#else
template <>
struct DeviceMemory<Cuda> {
  [[noreturn]] static void unavailable() {
    fail("blip: this program was built without CUDA (configure with the CUDA toolkit and link "
         "blip::cuda to use the Cuda device)");
  }
  static void* allocate(size_t) { unavailable(); }
  static void release(void*, size_t) {}
  static void copy_from_host(void*, const void*, size_t) { unavailable(); }
  static void copy_to_host(void*, const void*, size_t) { unavailable(); }
  static void copy_within(void*, const void*, size_t) { unavailable(); }
  static void fill_zero(void*, size_t) { unavailable(); }
};
#endif

}  // namespace blip
