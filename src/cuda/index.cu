// src/cuda/index.cu — gathers, scatter-adds and the mean negative log-likelihood on the device,
// with the CPU kernels' semantics (backend/cpu/index.hpp, select.hpp): slices are [outer,
// extent, inner] blocks; scatter_add sums repeated indices in position order (one thread per
// column, no atomics: deterministic) and skips `skip` (-1: none). Indices and labels are device
// memory and are not checked here (ops check them first).

#include <cstdint>
#include <type_traits>

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
    dst[t] = src[(o * src_extent + index[i]) * inner + j];
  }
}

template <class T>
__global__ void scatter_add_kernel(const T* src, T* dst, int64_t dst_extent, const int64_t* index, int64_t n,
                                   int64_t outer, int64_t inner, int64_t skip) {
  for (int64_t t = first_index(); t < outer * inner; t += grid_step()) {
    const int64_t o = t / inner, j = t % inner;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t target = index[i];
      if (target == skip) continue;
      dst[(o * dst_extent + target) * inner + j] += src[(o * n + i) * inner + j];
    }
  }
}

// loss[0] = -mean_i log_probs[i, label_i], summed in double (one block).
template <class T>
__global__ void nll_mean_kernel(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s -= static_cast<double>(log_probs[i * c + labels[i]]);
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
    if (t % c == labels[t / c]) v -= T(1);
    gx[t] = v * scale_by;
  }
}

void check_sizes(const char* op, int64_t a, int64_t b, int64_t c) {
  BLIP_CHECK(a >= 0 && b >= 0 && c >= 0, "blip::cuda::", op, ": negative size (", a, ", ", b, ", ", c, ")");
}

}  // namespace

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
