// blip/backend/cpu/parallel.hpp — OpenMP loops for CPU kernels.
//
// Contract: parallel_for(n, work_per_item, fn) calls fn(begin, end) over disjoint chunks
// covering [0, n); if fn throws, the first exception is rethrown after every chunk has ended. Small jobs (n * work_per_item below a threshold) run inline, because a
// parallel region costs microseconds and most BLIP-sized tensors are large or tiny.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>

#include <omp.h>

namespace blip::cpu {

inline int num_threads() { return omp_get_max_threads(); }
inline void set_num_threads(int n) { omp_set_num_threads(std::max(1, n)); }

template <class Fn>
void parallel_for(int64_t n, int64_t work_per_item, Fn&& fn) {
  constexpr int64_t kMinParallelWork = 32768;
  const int threads = omp_in_parallel() ? 1 : num_threads();
  if (threads <= 1 || n <= 1 || n * std::max<int64_t>(work_per_item, 1) < kMinParallelWork) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, threads);
  // An exception may not leave an OpenMP region (std::terminate): the first one is kept and
  // rethrown here, so a kernel that fails inside (a oneDNN call it refuses) stays a blip::Error.
  std::exception_ptr error;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = n * c / chunks;
    const int64_t end = n * (c + 1) / chunks;
    try {
      if (begin < end) fn(begin, end);
    } catch (...) {
#pragma omp critical(blip_parallel_for_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace blip::cpu
