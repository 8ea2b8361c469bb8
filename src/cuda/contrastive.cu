// src/cuda/contrastive.cu — the small kernels that keep a contrastive training step on the
// device: iota, clamp, Philox dropout masks, same-id targets, hard-negative draws and the
// queue's enqueue (backend/cpu/contrastive.hpp has the contract). The bodies are
// backend/portable.hpp's, the CPU kernels' own, so both devices give the same bits.

#include <cstdint>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/portable.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::blocks_for;
using detail::check_launch;
using detail::empty;
using detail::first_index;
using detail::grid_step;
using detail::stream_now;
using detail::threads_per_block;

template <class T>
__global__ void iota_kernel(T* out, int64_t n, T start, int64_t divisor) {
  for (int64_t i = first_index(); i < n; i += grid_step()) out[i] = start + static_cast<T>(i / divisor);
}

template <class T>
__global__ void clamp_kernel(T* x, int64_t n, T lo, T hi) {
  for (int64_t i = first_index(); i < n; i += grid_step()) x[i] = x[i] < lo ? lo : (hi < x[i] ? hi : x[i]);
}

template <class T>
__global__ void dropout_mask_kernel(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed) {
  for (int64_t i = first_index(); i < n; i += grid_step())
    out[i] = backend::portable::dropout_keep(seed, i, threshold) ? keep_scale : T(0);
}

// One block per row: the count of matches by a block reduction, then the row written.
template <class U>
__global__ void match_ids_kernel(const int64_t* row_ids, const int64_t* col_ids, int64_t cols, U* out, bool normalise) {
  using Reduce = cub::BlockReduce<int64_t, threads_per_block>;
  __shared__ typename Reduce::TempStorage scratch;
  __shared__ int64_t count;
  const int64_t r = blockIdx.x, id = row_ids[r];
  int64_t mine = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mine += col_ids[c] == id;
  const int64_t total = Reduce(scratch).Sum(mine);
  if (threadIdx.x == 0) count = total;
  __syncthreads();
  const U hit = normalise && count > 0 ? U(1) / static_cast<U>(count) : U(1);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = col_ids[c] == id ? hit : U(0);
}

// One thread per row: the draw walks its row serially, in the CPU's order (a parallel scan would
// round the running sum differently and could pick a neighbouring column). Rows are a batch
// (tens to thousands), so this is a single short launch.
template <class T>
__global__ void sample_negatives_kernel(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids,
                                        const int64_t* col_ids, int64_t row_offset, uint64_t seed, int64_t* out) {
  for (int64_t r = first_index(); r < rows; r += grid_step())
    out[r] = backend::portable::sample_negative_row(weights + r * cols, cols, col_ids, row_ids[r], row_offset + r, seed,
                                                    row_offset + r);
}

template <class T>
__global__ void queue_enqueue_kernel(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr) {
  const int64_t p = *ptr;
  for (int64_t i = first_index(); i < B * E; i += grid_step()) {
    const int64_t j = i / E, e = i % E;
    const int64_t column = backend::portable::queue_column(p, j, B, Q);
    if (column >= 0) queue[e * Q + column] = src[i];
  }
}

__global__ void queue_advance_kernel(int64_t* ptr, int64_t B, int64_t Q) {
  *ptr = backend::portable::queue_advanced(*ptr, B, Q);
}

}  // namespace

template <class T>
void iota(T* out, int64_t n, T start, int64_t divisor) {
  BLIP_CHECK(divisor >= 1, "blip::cuda::iota: divisor ", divisor, " must be at least 1");
  if (empty(n, "iota")) return;
  iota_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(out, n, start, divisor);
  check_launch("iota");
}

template <class T>
void clamp(T* x, int64_t n, T lo, T hi) {
  if (empty(n, "clamp")) return;
  clamp_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(x, n, lo, hi);
  check_launch("clamp");
}

template <class T>
void dropout_mask(T* out, int64_t n, uint64_t threshold, T keep_scale, uint64_t seed) {
  if (empty(n, "dropout_mask")) return;
  dropout_mask_kernel<T><<<blocks_for(n), threads_per_block, 0, stream_now()>>>(out, n, threshold, keep_scale, seed);
  check_launch("dropout_mask");
}

template <class U>
void match_ids(const int64_t* row_ids, int64_t rows, const int64_t* col_ids, int64_t cols, U* out, bool normalise) {
  if (empty(rows, "match_ids") || cols == 0) return;
  match_ids_kernel<U><<<detail::row_blocks(rows, "match_ids"), threads_per_block, 0, stream_now()>>>(
      row_ids, col_ids, cols, out, normalise);
  check_launch("match_ids");
}

template <class T>
void sample_negatives(const T* weights, int64_t rows, int64_t cols, const int64_t* row_ids, const int64_t* col_ids,
                      int64_t row_offset, uint64_t seed, int64_t* out) {
  if (empty(rows, "sample_negatives")) return;
  sample_negatives_kernel<T><<<blocks_for(rows), threads_per_block, 0, stream_now()>>>(
      weights, rows, cols, row_ids, col_ids, row_offset, seed, out);
  check_launch("sample_negatives");
}

template <class T>
void queue_enqueue(T* queue, int64_t E, int64_t Q, const T* src, int64_t B, const int64_t* ptr) {
  BLIP_CHECK(Q > 0, "blip::cuda::queue_enqueue: empty queue");
  if (empty(B * E, "queue_enqueue")) return;
  queue_enqueue_kernel<T><<<blocks_for(B * E), threads_per_block, 0, stream_now()>>>(queue, E, Q, src, B, ptr);
  check_launch("queue_enqueue");
}

void queue_advance(int64_t* ptr, int64_t B, int64_t Q) {
  BLIP_CHECK(Q > 0, "blip::cuda::queue_advance: empty queue");
  queue_advance_kernel<<<1, 1, 0, stream_now()>>>(ptr, B, Q);
  check_launch("queue_advance");
}

#define BLIP_INSTANTIATE_RANGE(T)                          \
  template void iota<T>(T*, int64_t, T, int64_t);          \
  template void clamp<T>(T*, int64_t, T, T);               \
  template void queue_enqueue<T>(T*, int64_t, int64_t, const T*, int64_t, const int64_t*);
BLIP_INSTANTIATE_RANGE(float)
BLIP_INSTANTIATE_RANGE(double)
BLIP_INSTANTIATE_RANGE(int64_t)

#define BLIP_INSTANTIATE_DRAWS(T)                                                                   \
  template void dropout_mask<T>(T*, int64_t, uint64_t, T, uint64_t);                                \
  template void sample_negatives<T>(const T*, int64_t, int64_t, const int64_t*, const int64_t*, int64_t, \
                                    uint64_t, int64_t*);                                            \
  template void match_ids<T>(const int64_t*, int64_t, const int64_t*, int64_t, T*, bool);
BLIP_INSTANTIATE_DRAWS(float)
BLIP_INSTANTIATE_DRAWS(double)
template void match_ids<uint8_t>(const int64_t*, int64_t, const int64_t*, int64_t, uint8_t*, bool);

}  // namespace blip::cuda
