// src/cuda/runtime.cu — DeviceMemory<Cuda> over a caching allocator, streams, cuBLAS handles.

#include <dlfcn.h>

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "blip/backend/cuda/runtime.hpp"
#include "blip/core/device.hpp"
#include "check.hpp"

namespace blip::cuda {
namespace {

// Rounding makes nearby request sizes share a free list, so a training step that asks for
// slightly different sizes each time still hits the cache. Up to 1 MiB: 512-byte granules;
// above: eighths of the enclosing power of two (waste under 12.5%, few distinct buckets).
size_t block_size(size_t bytes) {
  constexpr size_t small_limit = size_t{1} << 20;
  constexpr size_t granule = 512;
  if (bytes <= small_limit) return (bytes + granule - 1) / granule * granule;
  const size_t step = std::bit_floor(bytes) / 8;
  return (bytes + step - 1) / step * step;
}

// A cached block is handed out again only on the device and stream it was allocated on:
// work on one stream runs in order, so the previous user's kernels are done (or queued ahead)
// by the time the next user's kernels run. That is what makes reuse safe without events.
struct BlockKey {
  int device;
  void* stream;
  size_t size;
  bool operator<(const BlockKey& o) const {
    return std::tie(device, stream, size) < std::tie(o.device, o.stream, o.size);
  }
};

class CachingAllocator {
 public:
  void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    int device = 0;
    BLIP_CUDA_CHECK(cudaGetDevice(&device));
    const BlockKey key{device, current_stream(), block_size(bytes)};

    std::lock_guard lock(mutex_);
    if (auto it = free_.find(key); it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= key.size;
      return hand_out(p, key);
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, key.size);
    const bool out_of_memory = err == cudaErrorMemoryAllocation;
    if (out_of_memory) {
      (void)cudaGetLastError();  // an out-of-memory error is not sticky: clear it and retry
      free_cached_locked();
      err = cudaMalloc(&p, key.size);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      fail("blip::cuda::allocate: cudaMalloc of ", bytes, " bytes (block of ", key.size,
           ") failed on device ", device, ": ", cudaGetErrorString(err), " (", in_use_,
           " bytes in use by blip", out_of_memory ? ", after emptying the cache)" : ")");
    }
    return hand_out(p, key);
  }

  // Never throws: it runs inside Tensor's shared_ptr deleter.
  void release(void* p) noexcept {
    if (!p) return;
    std::lock_guard lock(mutex_);
    const auto it = live_.find(p);
    if (it == live_.end()) {
      std::fprintf(stderr, "blip::cuda: release of %p, which blip::cuda did not allocate\n", p);
      return;
    }
    const BlockKey key = it->second;
    live_.erase(it);
    in_use_ -= key.size;
    cached_ += key.size;
    free_[key].push_back(p);
  }

  void empty() {
    std::lock_guard lock(mutex_);
    free_cached_locked();
  }

  CacheStats stats() {
    std::lock_guard lock(mutex_);
    return {in_use_, cached_};
  }

 private:
  void* hand_out(void* p, const BlockKey& key) {
    live_.emplace(p, key);
    in_use_ += key.size;
    return p;
  }

  // cudaFree waits for the device, so blocks still read by queued kernels are safe to free.
  void free_cached_locked() {
    int current = 0;
    BLIP_CUDA_CHECK(cudaGetDevice(&current));
    for (auto it = free_.begin(); it != free_.end(); it = free_.erase(it)) {
      const BlockKey& key = it->first;
      if (key.device != current) BLIP_CUDA_CHECK(cudaSetDevice(key.device));
      while (!it->second.empty()) {
        BLIP_CUDA_CHECK(cudaFree(it->second.back()));
        it->second.pop_back();
        cached_ -= key.size;
      }
      if (key.device != current) BLIP_CUDA_CHECK(cudaSetDevice(current));
    }
  }

  std::mutex mutex_;
  std::map<BlockKey, std::vector<void*>> free_;
  std::unordered_map<void*, BlockKey> live_;
  size_t in_use_ = 0;
  size_t cached_ = 0;
};

// Leaked on purpose: tensors in static storage are released after static destructors run.
CachingAllocator& allocator() {
  static auto* instance = new CachingAllocator;
  return *instance;
}

thread_local void* t_current_stream = nullptr;

// One handle per device for this thread; destroyed when the thread exits.
struct ThreadCublasHandles {
  std::vector<std::pair<int, cublasHandle_t>> handles;
  ~ThreadCublasHandles() {
    for (auto& [device, handle] : handles) (void)detail::cublas().destroy(handle);
  }
};
thread_local ThreadCublasHandles t_cublas;

cudaStream_t stream_now() { return static_cast<cudaStream_t>(t_current_stream); }

// The staging of DeviceMemory<Cuda>::upload_async, per thread and device: a copy stream that
// never waits for the legacy default stream (non-blocking), and a ring of pinned buffers, each
// with the event of its last copy. A slot is refilled only after that copy finished: with four
// slots, the copy of four uploads ago (a training step uploads three tensors: images, ids, mask),
// normally long done, so the host does not wait.
struct UploadRing {
  static constexpr int slots = 4;
  struct Slot {
    void* pinned = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool in_flight = false;
  };
  int device = 0;
  cudaStream_t copy_stream = nullptr;
  cudaEvent_t ready = nullptr;  // the destination's allocation point on the consumer's stream
  Slot slot[slots];
  int next = 0;

  explicit UploadRing(int dev) : device(dev) {
    BLIP_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
    BLIP_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    for (Slot& s : slot) BLIP_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  }
  ~UploadRing() {  // at thread exit; errors ignored (the runtime may be shutting down)
    int previous = 0;
    (void)cudaGetDevice(&previous);
    (void)cudaSetDevice(device);
    (void)cudaStreamSynchronize(copy_stream);
    for (Slot& s : slot) {
      if (s.pinned) (void)cudaFreeHost(s.pinned);
      (void)cudaEventDestroy(s.done);
    }
    (void)cudaEventDestroy(ready);
    (void)cudaStreamDestroy(copy_stream);
    (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
  }
  UploadRing(const UploadRing&) = delete;
  UploadRing& operator=(const UploadRing&) = delete;
};

struct ThreadUploadRings {
  std::vector<std::unique_ptr<UploadRing>> rings;
  UploadRing& of(int device) {
    for (auto& r : rings)
      if (r->device == device) return *r;
    rings.push_back(std::make_unique<UploadRing>(device));
    return *rings.back();
  }
};
thread_local ThreadUploadRings t_upload_rings;

struct TransferCounters {
  std::atomic<uint64_t> to_device{0}, to_host{0}, bytes_to_device{0}, bytes_to_host{0};
};
TransferCounters& transfer_counters() {
  static TransferCounters c;
  return c;
}

}  // namespace

namespace detail {

namespace {
// dlopen()s soname, then the toolkit's folder's copy; a finder of its symbols.
struct OpenedLibrary {
  void* handle = nullptr;
  const char* soname = nullptr;
  template <class F>
  void find(F& fn, const char* symbol) const {
    fn = reinterpret_cast<F>(::dlsym(handle, symbol));
    BLIP_CHECK(fn, "blip::cuda: ", soname, " has no ", symbol);
  }
};
OpenedLibrary open_library(const char* soname, const char* in_toolkit, const char* what) {
  void* lib = nullptr;
  std::string tried;
  for (const char* name : {soname, in_toolkit}) {
    lib = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char* why = ::dlerror();
    tried += str(tried.empty() ? "" : "; ", why ? why : name);
  }
  BLIP_CHECK(lib, "blip::cuda: cannot open ", what, " (", tried, ")");
  return {lib, soname};  // stays open for the life of the process
}
}  // namespace

const CublasLtApi& cublas_lt() {
  static const CublasLtApi api = [] {
    const OpenedLibrary lib = open_library(BLIP_CUBLASLT_SONAME, BLIP_CUBLAS_DIR "/" BLIP_CUBLASLT_SONAME, "cuBLASLt");
    CublasLtApi a{};
    lib.find(a.create, "cublasLtCreate");
    lib.find(a.destroy, "cublasLtDestroy");
    lib.find(a.get_version, "cublasLtGetVersion");
    lib.find(a.desc_create, "cublasLtMatmulDescCreate");
    lib.find(a.desc_destroy, "cublasLtMatmulDescDestroy");
    lib.find(a.desc_set, "cublasLtMatmulDescSetAttribute");
    lib.find(a.layout_create, "cublasLtMatrixLayoutCreate");
    lib.find(a.layout_destroy, "cublasLtMatrixLayoutDestroy");
    lib.find(a.preference_create, "cublasLtMatmulPreferenceCreate");
    lib.find(a.preference_destroy, "cublasLtMatmulPreferenceDestroy");
    lib.find(a.preference_set, "cublasLtMatmulPreferenceSetAttribute");
    lib.find(a.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    lib.find(a.matmul, "cublasLtMatmul");
    return a;
  }();
  return api;
}

const CublasApi& cublas() {
  static const CublasApi api = [] {
    const OpenedLibrary lib = open_library(BLIP_CUBLAS_SONAME, BLIP_CUBLAS_DIR "/" BLIP_CUBLAS_SONAME, "cuBLAS");
    const auto find = [&lib](auto& fn, const char* symbol) { lib.find(fn, symbol); };
    CublasApi a{};
    find(a.create, "cublasCreate_v2");
    find(a.destroy, "cublasDestroy_v2");
    find(a.set_stream, "cublasSetStream_v2");
    find(a.set_math_mode, "cublasSetMathMode");
    find(a.sgemm_strided_batched, "cublasSgemmStridedBatched");
    find(a.dgemm_strided_batched, "cublasDgemmStridedBatched");
    find(a.gemm_ex, "cublasGemmEx");
    find(a.status_string, "cublasGetStatusString");
    find(a.get_property, "cublasGetProperty");
    return a;
  }();
  return api;
}

void note_transfer(bool to_device, size_t bytes) noexcept {
  TransferCounters& c = transfer_counters();
  (to_device ? c.to_device : c.to_host).fetch_add(1, std::memory_order_relaxed);
  (to_device ? c.bytes_to_device : c.bytes_to_host).fetch_add(bytes, std::memory_order_relaxed);
}
}  // namespace detail

size_t cublas_lt_version() { return detail::cublas_lt().get_version(); }

int cublas_version() {
  int major = 0, minor = 0, patch = 0;
  const detail::CublasApi& api = detail::cublas();
  BLIP_CUBLAS_CHECK(api.get_property(MAJOR_VERSION, &major));
  BLIP_CUBLAS_CHECK(api.get_property(MINOR_VERSION, &minor));
  BLIP_CUBLAS_CHECK(api.get_property(PATCH_LEVEL, &patch));
  return major * 10000 + minor * 100 + patch;
}

TransferStats transfer_stats() noexcept {
  const TransferCounters& c = transfer_counters();
  return {c.to_device.load(std::memory_order_relaxed), c.to_host.load(std::memory_order_relaxed),
          c.bytes_to_device.load(std::memory_order_relaxed), c.bytes_to_host.load(std::memory_order_relaxed)};
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // "no device" / "no driver" must not leak into later checks
    return 0;
  }
  return n;
}

void synchronize() {
  BLIP_CUDA_CHECK(cudaDeviceSynchronize());
  detail::report_index_faults(nullptr, true);
}

void empty_cache() { allocator().empty(); }

CacheStats cache_stats() { return allocator().stats(); }

Stream::Stream() {
  cudaStream_t s = nullptr;
  BLIP_CUDA_CHECK(cudaStreamCreate(&s));
  stream_ = s;
}

Stream::~Stream() {
  if (!stream_) return;
  const auto s = static_cast<cudaStream_t>(stream_);
  // Blocks cached under this stream may be handed to a later stream that gets the same
  // handle value; waiting here guarantees no kernel still uses them.
  (void)cudaStreamSynchronize(s);
  detail::forget_stream(s);
  (void)cudaStreamDestroy(s);
}

void Stream::synchronize() const {
  BLIP_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
  detail::report_index_faults(static_cast<cudaStream_t>(stream_), false);
}

StreamGuard::StreamGuard(const Stream& stream) : previous_(t_current_stream) {
  t_current_stream = stream.native();
}

StreamGuard::~StreamGuard() { t_current_stream = previous_; }

void* current_stream() { return t_current_stream; }

void* cublas_handle() {
  int device = 0;
  BLIP_CUDA_CHECK(cudaGetDevice(&device));
  cublasHandle_t handle = nullptr;
  for (auto& [d, h] : t_cublas.handles)
    if (d == device) handle = h;
  if (!handle) {
    BLIP_CUBLAS_CHECK(detail::cublas().create(&handle));
    t_cublas.handles.emplace_back(device, handle);
  }
  BLIP_CUBLAS_CHECK(detail::cublas().set_stream(handle, stream_now()));
  return handle;
}

}  // namespace blip::cuda

namespace blip {

void* DeviceMemory<Cuda>::allocate(size_t bytes) { return cuda::allocator().allocate(bytes); }

void DeviceMemory<Cuda>::release(void* p, size_t) { cuda::allocator().release(p); }

// Host copies wait for the stream: the host buffer may be pageable or freed right after.
void DeviceMemory<Cuda>::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t s = cuda::stream_now();
  cuda::detail::note_transfer(true, bytes);
  BLIP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  BLIP_CUDA_CHECK(cudaStreamSynchronize(s));
}

void DeviceMemory<Cuda>::upload_async(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  int device = 0;
  BLIP_CUDA_CHECK(cudaGetDevice(&device));
  cuda::UploadRing& ring = cuda::t_upload_rings.of(device);
  cuda::UploadRing::Slot& slot = ring.slot[ring.next];
  ring.next = (ring.next + 1) % cuda::UploadRing::slots;
  if (slot.in_flight) BLIP_CUDA_CHECK(cudaEventSynchronize(slot.done));
  slot.in_flight = false;
  if (slot.capacity < bytes) {
    if (slot.pinned) BLIP_CUDA_CHECK(cudaFreeHost(slot.pinned));
    slot.pinned = nullptr;
    slot.capacity = 0;
    const size_t size = (bytes + (size_t{1} << 20) - 1) & ~((size_t{1} << 20) - 1);  // whole MiB: fewer regrowths
    BLIP_CUDA_CHECK(cudaHostAlloc(&slot.pinned, size, cudaHostAllocDefault));
    slot.capacity = size;
  }
  std::memcpy(slot.pinned, src, bytes);
  const cudaStream_t consumer = cuda::stream_now();
  cuda::detail::note_transfer(true, bytes);
  // dst may be cached memory the consumer's stream used before: the copy starts after the work
  // queued there so far. So a copy overlaps kernels only when it is queued ahead of them (the
  // evaluation loop uploads batch i + 1 before it queues batch i's forward).
  BLIP_CUDA_CHECK(cudaEventRecord(ring.ready, consumer));
  BLIP_CUDA_CHECK(cudaStreamWaitEvent(ring.copy_stream, ring.ready, 0));
  BLIP_CUDA_CHECK(cudaMemcpyAsync(dst, slot.pinned, bytes, cudaMemcpyHostToDevice, ring.copy_stream));
  BLIP_CUDA_CHECK(cudaEventRecord(slot.done, ring.copy_stream));
  slot.in_flight = true;
  BLIP_CUDA_CHECK(cudaStreamWaitEvent(consumer, slot.done, 0));
}

void DeviceMemory<Cuda>::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t s = cuda::stream_now();
  cuda::detail::note_transfer(false, bytes);
  BLIP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  BLIP_CUDA_CHECK(cudaStreamSynchronize(s));
  cuda::detail::report_index_faults(s, false);  // results read after a bad lookup must not pass silently
}

void DeviceMemory<Cuda>::copy_within(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  BLIP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::stream_now()));
}

void DeviceMemory<Cuda>::fill_zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  BLIP_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda::stream_now()));
}

}  // namespace blip
