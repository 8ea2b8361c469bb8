// blip/core/device.hpp — device tags and their memory primitives.
//
// Contract: `Cpu` memory is host memory aligned to 64 bytes. `Cuda` memory is device memory from
// a caching allocator (backend/cuda); in a build without BLIP_WITH_CUDA every Cuda primitive
// throws blip::Error saying so, so CPU-only programs still compile and link. CPU tensor bytes are
// counted (DeviceMemory<Cpu>::stats(): in use, peak and cached) for memory measurements. Library code
// outside CPU kernels never dereferences a device pointer: it moves data with these copies.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

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

// Bytes held by CPU tensors now and at most since the last reset (process-wide counters), and
// the released mappings kept for reuse.
struct MemoryStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes = 0;
  size_t cached_bytes = 0;
};

template <>
struct DeviceMemory<Cpu> {
  static constexpr size_t alignment = 64;

  // Tensors of 1 MiB and more are mapped directly, so the resident size follows the live tensors
  // instead of the malloc heap's high-water mark and fragmentation (BLIP-base training: ~0.5 GiB
  // less peak RSS). Released mappings wait in a cache (exact sizes, oldest evicted first): a
  // training step allocates the same sizes every step, and a reused mapping is already faulted
  // in, which fresh pages are not (the kernel zeroing fresh pages was 11-20% of a step). The
  // cache may grow while live + cached bytes stay within the live high-water mark plus
  // cache_slack (or cache_limit), so it raises the peak a workload already reached by at most
  // cache_slack; empty_cache() and reset_peak() give the memory back. Why the slack: without it
  // inference thrashed — after a ViT layer the high-water mark left ~70 MB for a cache that a
  // layer's outputs (~150 MB at 8 images) cycle through, so each layer mapped its feed-forward
  // and residual outputs afresh (BLIP-base (a) ~4 % slower, docs/performance.md).
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t direct_map = SIZE_MAX;  // under ASan every tensor goes through malloc, so it is checked
#else
  static constexpr size_t direct_map = size_t{1} << 20;
#endif
  static constexpr size_t cache_limit = size_t{384} << 20;
  static constexpr size_t cache_slack = size_t{128} << 20;

  static void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    if (bytes >= direct_map) {
      p = take_cached(bytes);
      if (!p) {
        evict_until(bytes);
        p = map_huge_aligned(bytes);
      }
    } else {
      p = std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment);
    }
    if (!p) fail("Cpu::allocate: out of memory allocating ", bytes, " bytes");
    const size_t now = in_use().fetch_add(bytes, std::memory_order_relaxed) + bytes;
    size_t peak = peak_bytes().load(std::memory_order_relaxed);
    while (now > peak && !peak_bytes().compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
  }
  static void release(void* p, size_t bytes) {
    if (!p) return;
    in_use().fetch_sub(bytes, std::memory_order_relaxed);
    if (bytes >= direct_map) keep_or_unmap(p, bytes);
    else std::free(p);
  }
  static MemoryStats stats() {
    std::lock_guard lock(cache().mutex);
    return {in_use().load(), peak_bytes().load(), cache().bytes};
  }
  static void empty_cache() {
    std::lock_guard lock(cache().mutex);
    for (auto [size, ptr] : cache().blocks) ::munmap(ptr, size);
    cache().blocks.clear();
    cache().bytes = 0;
  }

  // A mapping aligned to 2 MiB and marked for transparent huge pages: first touches then fault
  // once per 2 MiB instead of once per 4 KiB, which is most of what mapping costs.
  static void* map_huge_aligned(size_t bytes) {
    constexpr size_t huge = size_t{2} << 20;
    const size_t span = bytes + huge;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + huge - 1) & ~(uintptr_t{huge} - 1);
    if (aligned > start) ::munmap(raw, aligned - start);
    const uintptr_t end = aligned + ((bytes + 4095) & ~size_t{4095});
    if (start + span > end) ::munmap(reinterpret_cast<void*>(end), start + span - end);
#ifdef MADV_HUGEPAGE
    ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
#endif
    return reinterpret_cast<void*>(aligned);
  }
  static void reset_peak() {
    peak_bytes().store(in_use().load());
    evict_until(0);
  }
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
  struct Cache {
    std::mutex mutex;
    std::deque<std::pair<size_t, void*>> blocks;  // oldest first
    size_t bytes = 0;
  };
  static Cache& cache() {
    static Cache c;
    return c;
  }
  static void* take_cached(size_t bytes) {
    std::lock_guard lock(cache().mutex);
    auto& blocks = cache().blocks;
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it)  // newest first: still in cache lines
      if (it->first == bytes) {
        void* p = it->second;
        cache().bytes -= bytes;
        blocks.erase(std::next(it).base());
        return p;
      }
    return nullptr;
  }
  // Live + cached bytes may reach this much (see the class comment).
  static size_t allowance() {
    return std::max(cache_limit, peak_bytes().load(std::memory_order_relaxed) + cache_slack);
  }
  // Evicts the oldest cached mappings until `incoming` more bytes fit in the allowance.
  static void evict_locked(size_t incoming) {
    auto& c = cache();
    const size_t live = in_use().load(std::memory_order_relaxed), limit = allowance();
    while (!c.blocks.empty() && live + c.bytes + incoming > limit) {
      ::munmap(c.blocks.front().second, c.blocks.front().first);
      c.bytes -= c.blocks.front().first;
      c.blocks.pop_front();
    }
  }
  static void evict_until(size_t incoming) {
    std::lock_guard lock(cache().mutex);
    evict_locked(incoming);
  }
  static void keep_or_unmap(void* p, size_t bytes) {
    std::lock_guard lock(cache().mutex);
    evict_locked(bytes);
    if (in_use().load(std::memory_order_relaxed) + cache().bytes + bytes > allowance()) {
      ::munmap(p, bytes);
      return;
    }
    cache().blocks.emplace_back(bytes, p);
    cache().bytes += bytes;
  }
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
  // Host to device without the host waiting for the copy (ops/copy.hpp's upload).
  static void upload_async(void* dst, const void* src, size_t bytes);
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
  static void upload_async(void*, const void*, size_t) { unavailable(); }
  static void copy_to_host(void*, const void*, size_t) { unavailable(); }
  static void copy_within(void*, const void*, size_t) { unavailable(); }
  static void fill_zero(void*, size_t) { unavailable(); }
};
#endif

// Copies bytes from memory of device From to memory of device To (one of them the CPU).
template <Device To, Device From>
void transfer(void* dst, const void* src, size_t bytes) {
  static_assert(std::same_as<To, Cpu> || std::same_as<From, Cpu>, "transfer: one side must be the CPU");
  if constexpr (std::same_as<From, Cpu>) DeviceMemory<To>::copy_from_host(dst, src, bytes);
  else DeviceMemory<From>::copy_to_host(dst, src, bytes);
}

}  // namespace blip
