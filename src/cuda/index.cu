// src/cuda/index.cu — gathers, scatter-adds and the mean negative log-likelihood on the device,
// with the CPU kernels' semantics (backend/cpu/index.hpp, select.hpp): slices are [outer,
// extent, inner] blocks; scatter_add sums repeated indices in position order (one thread per
// column, no atomics: deterministic) and skips `skip` (-1: none). Indices and labels are device
// memory; check_indices records the first one outside [0, extent) in pinned host memory and the
// error is thrown when the host next waits for the stream (runtime.hpp's contract). The kernels
// that read indices never touch memory outside their tensors: a bad index gathers zeros, adds
// nothing and contributes nothing to the NLL, so the deferred error is the only effect.

#include <climits>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "blip/backend/cuda/kernels.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::block_sum;
using detail::blocks_for;
using detail::check_launch;
using detail::exp_of;
using detail::first_index;
using detail::grid_step;
using detail::stream_now;
using detail::threads_per_block;

template <class T>
__global__ void gather_kernel(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer,
                              int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t t = first_index(); t < total; t += grid_step()) {
    const int64_t j = t % inner, i = (t / inner) % n, o = t / (inner * n);
    const int64_t at = index[i];
    dst[t] = at >= 0 && at < src_extent ? src[(o * src_extent + at) * inner + j] : T(0);
  }
}

template <class T>
__global__ void scatter_add_kernel(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n,
                                   int64_t outer, int64_t inner, int64_t skip) {
  for (int64_t t = first_index(); t < outer * inner; t += grid_step()) {
    const int64_t o = t / inner, j = t % inner;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t target = index[i];
      if (target == skip || target < 0 || target >= dst_extent) continue;
      dst[(o * dst_extent + target) * inner + j] += src[(o * n + i) * inner + j];
    }
  }
}

// loss[0] = -mean_i log_probs[i, label_i], summed in double (one block).
template <class T>
__global__ void nll_mean_kernel(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (labels[i] >= 0 && labels[i] < c) s -= static_cast<double>(log_probs[i * c + labels[i]]);
  s = block_sum(s);
  if (threadIdx.x == 0) loss[0] = static_cast<T>(s / static_cast<double>(n));
}

// gx = (exp(log_probs) - onehot(label)) · gy[0] / n.
template <class T>
__global__ void nll_mean_backward_kernel(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy,
                                         T* gx) {
  const T scale_by = gy[0] / static_cast<T>(n);
  for (int64_t t = first_index(); t < n * c; t += grid_step()) {
    T v = exp_of(log_probs[t]);
    if (t % c == labels[t / c]) v -= T(1);  // a label outside [0, c) matches no column
    gx[t] = v * scale_by;
  }
}

// ---- deferred index checks -------------------------------------------------------------------
// One slot per check in flight, in pinned host memory mapped into the device's address space: the
// kernels write it directly, and the host reads it after waiting for the check's stream.
struct IndexFault {
  unsigned long long position;  // ULLONG_MAX: none found
  long long value;
  int done;  // set by the check's last kernel: only then may the host read and reuse the slot
};

__global__ void find_index_fault_kernel(const int64_t* index, int64_t n, int64_t extent, IndexFault* fault) {
  for (int64_t t = first_index(); t < n; t += grid_step())
    if (index[t] < 0 || index[t] >= extent) atomicMin(&fault->position, static_cast<unsigned long long>(t));
}

// The value at the first bad position (a second launch: atomicMin has settled by then), then the
// done flag, made visible to the host after the value.
__global__ void read_index_fault_kernel(const int64_t* index, IndexFault* fault) {
  if (fault->position != ULLONG_MAX) fault->value = index[fault->position];
  __threadfence_system();
  *reinterpret_cast<volatile int*>(&fault->done) = 1;
}

struct PendingCheck {
  int slot;
  cudaStream_t stream;
  std::string op, what;
  int64_t extent;
};

class FaultBoard {
 public:
  static constexpr int slots = 1024;

  FaultBoard() {
    void* p = nullptr;
    BLIP_CUDA_CHECK(cudaHostAlloc(&p, sizeof(IndexFault) * slots, cudaHostAllocMapped | cudaHostAllocPortable));
    faults_ = static_cast<IndexFault*>(p);
    void* d = nullptr;
    BLIP_CUDA_CHECK(cudaHostGetDevicePointer(&d, p, 0));
    device_faults_ = static_cast<IndexFault*>(d);
    for (int i = slots - 1; i >= 0; --i) free_.push_back(i);
  }

  // A cleared slot (its device address) for a check about to be queued on `stream`; waits for
  // the device when all slots are in flight, reporting what they found.
  IndexFault* open(cudaStream_t stream, const char* op, const char* what, int64_t extent) {
    std::unique_lock lock(mutex_);
    while (free_.empty()) {  // (another thread may take the slots a drain freed: wait again)
      lock.unlock();
      BLIP_CUDA_CHECK(cudaDeviceSynchronize());
      report(nullptr, true);
      lock.lock();
    }
    const int slot = free_.back();
    free_.pop_back();
    faults_[slot].position = ULLONG_MAX;
    faults_[slot].value = 0;
    faults_[slot].done = 0;
    pending_.push_back({slot, stream, op, what, extent});
    return device_faults_ + slot;
  }

  // Retires the finished checks of `stream` (every stream's when `all`) and throws the first
  // fault among them (the others are dropped: one error per wait). A check queued by another
  // thread after this thread's wait has not finished (done = 0) and stays pending.
  void report(cudaStream_t stream, bool all) {
    std::string error;
    {
      std::lock_guard lock(mutex_);
      std::vector<PendingCheck> still;
      for (const PendingCheck& c : pending_) {
        const volatile IndexFault* f = faults_ + c.slot;
        if ((!all && c.stream != stream) || f->done == 0) {
          still.push_back(c);
          continue;
        }
        if (error.empty() && f->position != ULLONG_MAX)
          error = str(c.op, ": ", c.what, " ", static_cast<int64_t>(f->value), " at position ",
                      static_cast<int64_t>(f->position), " is outside [0, ", c.extent, ") (found on the device)");
        free_.push_back(c.slot);
      }
      pending_.swap(still);
    }
    if (!error.empty()) fail(error);
  }

  // A destroyed stream's checks have finished (~Stream waited): they move to the default stream's
  // list, so a new stream with the same handle does not inherit them.
  void forget(cudaStream_t stream) {
    std::lock_guard lock(mutex_);
    for (PendingCheck& c : pending_)
      if (c.stream == stream) c.stream = nullptr;
  }

 private:
  std::mutex mutex_;
  IndexFault* faults_ = nullptr;         // host address; never freed: the board lives as long as the process
  IndexFault* device_faults_ = nullptr;  // the same memory, as kernels address it
  std::vector<int> free_;
  std::vector<PendingCheck> pending_;
};

FaultBoard& fault_board() {
  static FaultBoard* board = new FaultBoard;  // leaked on purpose: kernels may still write it at exit
  return *board;
}

void check_sizes(const char* op, int64_t a, int64_t b, int64_t c) {
  BLIP_CHECK(a >= 0 && b >= 0 && c >= 0, "blip::cuda::", op, ": negative size (", a, ", ", b, ", ", c, ")");
}

}  // namespace

namespace detail {
void report_index_faults(cudaStream_t stream, bool all) { fault_board().report(stream, all); }
void forget_stream(cudaStream_t stream) noexcept {
  try {
    fault_board().forget(stream);
  } catch (...) {  // the board could not be made (no pinned memory): it holds nothing to move
  }
}
}  // namespace detail

void check_indices(const int64_t* index, int64_t n, int64_t extent, const char* op, const char* what) {
  check_sizes("check_indices", n, extent, 0);
  if (n == 0) return;
  const cudaStream_t s = stream_now();
  IndexFault* fault = fault_board().open(s, op, what, extent);
  find_index_fault_kernel<<<blocks_for(n), threads_per_block, 0, s>>>(index, n, extent, fault);
  check_launch("check_indices");
  read_index_fault_kernel<<<1, 1, 0, s>>>(index, fault);
  check_launch("check_indices");
}

template <class T>
void gather(const T* src, int64_t src_extent, T* dst, const int64_t* index, int64_t n, int64_t outer, int64_t inner) {
  check_sizes("gather", n, outer, inner);
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  gather_kernel<T><<<blocks_for(total), threads_per_block, 0, stream_now()>>>(src, src_extent, dst, index, n, outer,
                                                                              inner);
  check_launch("gather");
}

template <class T>
void scatter_add(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n, int64_t outer,
                 int64_t inner, int64_t skip) {
  check_sizes("scatter_add", n, outer, inner);
  if (outer * inner == 0 || n == 0) return;
  scatter_add_kernel<T><<<blocks_for(outer * inner), threads_per_block, 0, stream_now()>>>(src, dst, dst_extent, index,
                                                                                           n, outer, inner, skip);
  check_launch("scatter_add");
}

template <class T>
void nll_mean(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
  check_sizes("nll_mean", n, c, 0);
  nll_mean_kernel<T><<<1, threads_per_block, 0, stream_now()>>>(log_probs, labels, n, c, loss);
  check_launch("nll_mean");
}

template <class T>
void nll_mean_backward(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy, T* gx) {
  check_sizes("nll_mean_backward", n, c, 0);
  if (n * c == 0) return;
  nll_mean_backward_kernel<T><<<blocks_for(n * c), threads_per_block, 0, stream_now()>>>(log_probs, labels, n, c, gy,
                                                                                         gx);
  check_launch("nll_mean_backward");
}

#define BLIP_INSTANTIATE_INDEX(T)                                                                              \
  template void gather<T>(const T*, int64_t, T*, const int64_t*, int64_t, int64_t, int64_t);                   \
  template void scatter_add<T>(const T*, T*, int64_t, const int64_t*, int64_t, int64_t, int64_t, int64_t);
#define BLIP_INSTANTIATE_LOSS(T)                                                                               \
  template void nll_mean<T>(const T*, const int64_t*, int64_t, int64_t, T*);                                   \
  template void nll_mean_backward<T>(const T*, const int64_t*, int64_t, int64_t, const T*, T*);

BLIP_INSTANTIATE_INDEX(float)
BLIP_INSTANTIATE_INDEX(double)
BLIP_INSTANTIATE_INDEX(int64_t)
BLIP_INSTANTIATE_LOSS(float)
BLIP_INSTANTIATE_LOSS(double)

}  // namespace blip::cuda
