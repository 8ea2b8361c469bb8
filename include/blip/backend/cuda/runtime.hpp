// blip/backend/cuda/runtime.hpp — the CUDA runtime services of blip::cuda: device discovery,
// the caching allocator's controls, per-thread current streams and cuBLAS handles.
//
// Contract:
// - Compiles in any C++20 build and never needs the CUDA toolkit headers: native handles are
//   void* (cudaStream_t / cublasHandle_t underneath).
// - With BLIP_WITH_CUDA (defined by linking blip::cuda) the functions are implemented there and
//   throw blip::Error naming the failed CUDA call. Without it, device_count() returns 0 and
//   everything else throws blip::Error saying the program was built without CUDA.
// - device_count() never throws: it returns 0 when there is no GPU or no usable driver, so
//   callers (tests, examples) can test it before touching a device.
// - All device work issued by blip (kernels, copies, cuBLAS) goes to the calling thread's
//   current stream: the default stream unless a StreamGuard is active on that thread.
// - Index checks on the device (check_indices: embedding ids, index_select, labels) cannot throw
//   from a kernel, and reading a flag back after every lookup would be a host round trip each. They
//   record the first bad position in pinned host memory the kernel writes directly, and the
//   blip::Error (the CPU's message: op, position, value, extent) is thrown at the next point where
//   the host waits for that stream anyway: a copy to the host on it, Stream::synchronize() or
//   synchronize() (every stream). The kernels that consume the indices skip a bad one (a gathered
//   row reads as zeros) instead of touching memory outside the tensor.
// - transfer_stats() counts every host<->device copy blip makes (Tensor transfers and the
//   kernels' own argument copies), over all threads: issue 13's "no host round trips inside
//   forward, loss and backward" is checked by comparing it before and after.
// - Memory released by a Tensor returns to a cache and is reused only by allocations on the
//   same device and stream it was allocated on; empty_cache() gives the cached blocks back to
//   the driver. A tensor used on a stream other than its allocation stream must be kept alive
//   by the caller until that work finishes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "blip/core/error.hpp"

namespace blip::cuda {

// Number of usable CUDA devices; 0 without a GPU, a driver, or a CUDA build.
int device_count() noexcept;

// Waits for all work on the current device (every stream).
void synchronize();

// Frees every cached (unused) block back to the driver; blocks in use are untouched.
void empty_cache();

struct CacheStats {
  size_t bytes_in_use = 0;  // held by live allocations (rounded block sizes)
  size_t bytes_cached = 0;  // released blocks kept for reuse
};
CacheStats cache_stats();

// Host<->device copies made by blip since the process started (all threads, all devices).
struct TransferStats {
  uint64_t to_device = 0, to_host = 0;              // copies
  uint64_t bytes_to_device = 0, bytes_to_host = 0;
  uint64_t copies() const { return to_device + to_host; }
  friend TransferStats operator-(const TransferStats& a, const TransferStats& b) {
    return {a.to_device - b.to_device, a.to_host - b.to_host, a.bytes_to_device - b.bytes_to_device,
            a.bytes_to_host - b.bytes_to_host};
  }
};
TransferStats transfer_stats() noexcept;

// cuBLAS's version (major * 10000 + minor * 100 + patch). cuBLAS is opened on first use rather
// than linked (its start-up cost would fall on every program that links blip::cuda); this opens
// it as the first GEMM would, without needing a GPU, and throws blip::Error when it cannot.
int cublas_version();
// cuBLASLt's version (cublasLtGetVersion), opened the same way (linear layers use it).
size_t cublas_lt_version();

// An owned CUDA stream, created blocking: it orders itself with the legacy default stream, so
// tensors made on the default stream may be used on it. Destruction waits for its pending work
// first, so memory cached under this stream can never be reused while a kernel on it still runs.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void* native() const { return stream_; }  // cudaStream_t
  void synchronize() const;                 // waits for the work queued on this stream

 private:
  void* stream_ = nullptr;
};

// Makes `stream` the calling thread's current stream for the guard's lifetime (restoring the
// previous one after). Guards nest; the stream must outlive the guard.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  void* previous_ = nullptr;
};

// The calling thread's current stream (nullptr = the legacy default stream).
void* current_stream();

// The calling thread's cuBLAS handle for the current device (created on first use), already
// bound to current_stream().
void* cublas_handle();

#ifndef BLIP_WITH_CUDA
// CPU-only build: inline stand-ins so programs that merely mention the CUDA API still link.
namespace detail {
[[noreturn]] inline void built_without_cuda(const char* what) {
  fail("blip::cuda::", what, ": this program was built without CUDA (configure blip with the "
       "CUDA toolkit and link blip::cuda)");
}
}  // namespace detail

inline int device_count() noexcept { return 0; }
inline void synchronize() { detail::built_without_cuda("synchronize"); }
inline void empty_cache() { detail::built_without_cuda("empty_cache"); }
inline CacheStats cache_stats() { detail::built_without_cuda("cache_stats"); }
inline TransferStats transfer_stats() noexcept { return {}; }  // nothing can be copied to a device
inline int cublas_version() { detail::built_without_cuda("cublas_version"); }
inline size_t cublas_lt_version() { detail::built_without_cuda("cublas_lt_version"); }
inline Stream::Stream() { detail::built_without_cuda("Stream"); }
inline Stream::~Stream() = default;
inline void Stream::synchronize() const { detail::built_without_cuda("Stream::synchronize"); }
inline StreamGuard::StreamGuard(const Stream&) { detail::built_without_cuda("StreamGuard"); }
inline StreamGuard::~StreamGuard() = default;
inline void* current_stream() { detail::built_without_cuda("current_stream"); }
inline void* cublas_handle() { detail::built_without_cuda("cublas_handle"); }
#endif

}  // namespace blip::cuda
