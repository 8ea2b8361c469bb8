// src/cuda/select.cu — topk on the device: a stable segmented radix sort (CUB), one segment per
// row, of keys that put NaN first (kernels.hpp states the order). The sort covers whole rows
// because a re-rank's k is a sizeable part of a row (k = 256 of 5k–25k columns) and CUB's sort
// is already bandwidth-bound there; rows go in chunks of at most 2^26 elements (CUB counts in
// int; the scratch — keys and columns, twice, through CUB's DoubleBuffer — stays under 1 GiB).

#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>

#include "blip/backend/cuda/kernels.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::blocks_for;
using detail::check_launch;
using detail::DeviceBuffer;
using detail::first_index;
using detail::grid_step;
using detail::stream_now;
using detail::threads_per_block;

// Sort keys: every NaN becomes the positive quiet NaN, which CUB's descending float order puts
// ahead of +inf (the CPU ranks NaN first); columns start in ascending order (stable sort: ties
// keep it).
template <class T>
__global__ void sort_keys_kernel(const T* x, int64_t count, int64_t n, T* keys, int* columns) {
  for (int64_t t = first_index(); t < count; t += grid_step()) {
    const T v = x[t];
    keys[t] = isnan(v) ? std::numeric_limits<T>::quiet_NaN() : v;
    columns[t] = static_cast<int>(t % n);
  }
}

__global__ void row_offsets_kernel(int* offsets, int64_t rows, int64_t n) {
  for (int64_t r = first_index(); r <= rows; r += grid_step()) offsets[r] = static_cast<int>(r * n);
}

// The first k of each sorted row; values are read from x, so -0 and NaN payloads come out as given.
template <class T>
__global__ void take_topk_kernel(const T* x, const int* sorted_columns, int64_t rows, int64_t n, int64_t k, T* values,
                                 int64_t* indices) {
  for (int64_t t = first_index(); t < rows * k; t += grid_step()) {
    const int64_t r = t / k, j = t % k;
    const int64_t c = sorted_columns[r * n + j];
    indices[t] = c;
    values[t] = x[r * n + c];
  }
}

template <class T>
__global__ void topk_scatter_kernel(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T* gx) {
  for (int64_t t = first_index(); t < rows * k; t += grid_step()) {
    const int64_t column = indices[t];
    if (column >= 0 && column < n) gx[(t / k) * n + column] = gy[t];  // a bad one is reported by the op's check
  }
}

}  // namespace

template <class T>
void topk(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int64_t* indices) {
  BLIP_CHECK(rows >= 0 && n >= 0 && k >= 0 && k <= n, "blip::cuda::topk: k = ", k, " of ", n, " columns (", rows,
             " rows)");
  BLIP_CHECK(n <= INT_MAX / 2, "blip::cuda::topk: ", n, " columns exceed one sort segment");
  if (rows == 0 || k == 0) return;
  const cudaStream_t s = stream_now();
  // Rows per sort (a row longer than the cap is one chunk of its own).
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t{1} << 26) / std::max<int64_t>(n, 1)));
  const int64_t items = chunk * n;
  DeviceBuffer<T> keys(items), keys_alt(items);
  DeviceBuffer<int> columns(items), columns_alt(items), offsets(chunk + 1);
  // CUB's need grows with the item count: the full chunk's size serves a shorter last chunk too.
  size_t temp_bytes = 0;
  {
    cub::DoubleBuffer<T> k2(keys.data, keys_alt.data);
    cub::DoubleBuffer<int> c2(columns.data, columns_alt.data);
    BLIP_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp_bytes, k2, c2, static_cast<int>(items), static_cast<int>(chunk), offsets.data, offsets.data + 1, 0,
        static_cast<int>(sizeof(T) * 8), s));
  }
  DeviceBuffer<unsigned char> temp(static_cast<int64_t>(temp_bytes));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0), count = m * n;
    const T* xr = x + r0 * n;
    sort_keys_kernel<T><<<blocks_for(count), threads_per_block, 0, s>>>(xr, count, n, keys.data, columns.data);
    check_launch("topk");
    row_offsets_kernel<<<blocks_for(m + 1), threads_per_block, 0, s>>>(offsets.data, m, n);
    check_launch("topk");
    cub::DoubleBuffer<T> k2(keys.data, keys_alt.data);
    cub::DoubleBuffer<int> c2(columns.data, columns_alt.data);
    size_t bytes = temp_bytes;
    BLIP_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp.data, bytes, k2, c2, static_cast<int>(count), static_cast<int>(m), offsets.data, offsets.data + 1, 0,
        static_cast<int>(sizeof(T) * 8), s));
    take_topk_kernel<T><<<blocks_for(m * k), threads_per_block, 0, s>>>(xr, c2.Current(), m, n, k, values + r0 * k,
                                                                      indices + r0 * k);
    check_launch("topk");
  }
}

template <class T>
void topk_backward(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T fill, T* gx) {
  BLIP_CHECK(rows >= 0 && n >= 0 && k >= 0 && k <= n, "blip::cuda::topk_backward: k = ", k, " of ", n, " columns");
  if (rows * n == 0) return;
  const cudaStream_t s = stream_now();
  if (fill == T(0)) BLIP_CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(T) * static_cast<size_t>(rows * n), s));
  else cuda::fill(gx, rows * n, fill);
  // A row's selected columns are distinct, so each gx element is written at most once.
  if (k > 0) topk_scatter_kernel<T><<<blocks_for(rows * k), threads_per_block, 0, s>>>(gy, indices, rows, n, k, gx);
  check_launch("topk_backward");
}

#define BLIP_INSTANTIATE_TOPK(T)                                                 \
  template void topk<T>(const T*, int64_t, int64_t, int64_t, T*, int64_t*);       \
  template void topk_backward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, T, T*);

BLIP_INSTANTIATE_TOPK(float)
BLIP_INSTANTIATE_TOPK(double)

}  // namespace blip::cuda
