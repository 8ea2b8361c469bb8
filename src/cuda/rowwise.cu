// src/cuda/rowwise.cu — kernels over the rows of a contiguous [rows, cols] block (softmax,
// log_softmax, layer norm, L2 normalisation, forward and backward) and sums over the middle axis
// of [outer, r, inner]. One block of threads per row, CUB's BlockReduce for the row's sums and
// maxima: a fixed order, so results are deterministic. The formulas are those of the CPU
// kernels (backend/cpu/rowwise.hpp, reduce.hpp).

#include <cstdint>
#include <cmath>
#include <type_traits>

#include "blip/backend/cuda/kernels.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::blocks_for;
using detail::check_launch;
using detail::exp_of;
using detail::log_of;
using detail::first_index;
using detail::grid_step;
using detail::row_blocks;
using detail::stream_now;
using detail::threads_per_block;

// Each thread's share of a row: columns threadIdx.x, + blockDim.x, ...
#define BLIP_FOR_COLS(j, cols) for (int64_t j = threadIdx.x; j < (cols); j += blockDim.x)

template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t cols, bool log_form) {
  const T* in = x + blockIdx.x * cols;
  T* out = y + blockIdx.x * cols;
  T m = -static_cast<T>(INFINITY);
  BLIP_FOR_COLS(j, cols) m = in[j] > m ? in[j] : m;
  m = block_max(m);
  T s = 0;
  BLIP_FOR_COLS(j, cols) s += exp_of(in[j] - m);
  s = block_sum(s);
  if (log_form) {
    const T log_sum = log_of(s);
    BLIP_FOR_COLS(j, cols) out[j] = (in[j] - m) - log_sum;
  } else {
    const T inv = T(1) / s;
    BLIP_FOR_COLS(j, cols) out[j] = exp_of(in[j] - m) * inv;
  }
}

// softmax: gx = y (gy - sum(gy y)); log_softmax: gx = gy - exp(y) sum(gy).
template <class T>
__global__ void softmax_backward_kernel(const T* y, const T* gy, T* gx, int64_t cols, bool log_form) {
  const int64_t base = blockIdx.x * cols;
  T s = 0;
  if (log_form) BLIP_FOR_COLS(j, cols) s += gy[base + j];
  else BLIP_FOR_COLS(j, cols) s += gy[base + j] * y[base + j];
  s = block_sum(s);
  if (log_form) BLIP_FOR_COLS(j, cols) gx[base + j] = gy[base + j] - exp_of(y[base + j]) * s;
  else BLIP_FOR_COLS(j, cols) gx[base + j] = y[base + j] * (gy[base + j] - s);
}

template <class T>
__global__ void layer_norm_kernel(const T* x, const T* weight, const T* bias, T* y, T* mean_out, T* rstd_out,
                                  int64_t cols, T eps) {
  const int64_t r = blockIdx.x, base = r * cols;
  T s = 0;
  BLIP_FOR_COLS(j, cols) s += x[base + j];
  const T mean = block_sum(s) / static_cast<T>(cols);
  T q = 0;
  BLIP_FOR_COLS(j, cols) q += (x[base + j] - mean) * (x[base + j] - mean);
  const T var = block_sum(q) / static_cast<T>(cols);  // biased, as torch
  const T rstd = T(1) / sqrt(var + eps);
  BLIP_FOR_COLS(j, cols) y[base + j] = (x[base + j] - mean) * rstd * weight[j] + bias[j];
  if (threadIdx.x == 0) {
    mean_out[r] = mean;
    rstd_out[r] = rstd;
  }
}

// gx = rstd (gxhat - mean(gxhat) - xhat mean(gxhat xhat)), gxhat = gy weight.
template <class T>
__global__ void layer_norm_backward_rows_kernel(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy,
                                                T* gx, int64_t cols) {
  const int64_t r = blockIdx.x, base = r * cols;
  const T mu = mean[r], rs = rstd[r];
  T sg = 0, sgx = 0;
  BLIP_FOR_COLS(j, cols) {
    const T g = gy[base + j] * weight[j];
    sg += g;
    sgx += g * (x[base + j] - mu) * rs;
  }
  const T mean_g = block_sum(sg) / static_cast<T>(cols);
  const T mean_gx = block_sum(sgx) / static_cast<T>(cols);
  BLIP_FOR_COLS(j, cols) {
    const T xhat = (x[base + j] - mu) * rs;
    gx[base + j] = rs * (gy[base + j] * weight[j] - mean_g - xhat * mean_gx);
  }
}

// gweight += sum_rows(gy xhat), gbias += sum_rows(gy): one thread per column, rows in order.
template <class T>
__global__ void layer_norm_backward_columns_kernel(const T* x, const T* mean, const T* rstd, const T* gy, T* gweight,
                                                   T* gbias, int64_t rows, int64_t cols) {
  for (int64_t c = first_index(); c < cols; c += grid_step()) {
    T gw = 0, gb = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const T g = gy[r * cols + c];
      gw += g * (x[r * cols + c] - mean[r]) * rstd[r];
      gb += g;
    }
    gweight[c] += gw;
    gbias[c] += gb;
  }
}

template <class T>
__global__ void l2_normalize_kernel(const T* x, T* y, T* norms, int64_t cols, T eps) {
  const int64_t r = blockIdx.x, base = r * cols;
  T s = 0;
  BLIP_FOR_COLS(j, cols) s += x[base + j] * x[base + j];
  const T root = sqrt(block_sum(s));
  const T norm = root < eps ? eps : root;  // std::max(root, eps): a NaN norm stays NaN
  BLIP_FOR_COLS(j, cols) y[base + j] = x[base + j] / norm;
  if (threadIdx.x == 0) norms[r] = norm;
}

// Where the clamp is active the map is linear (x / eps); elsewhere gx = (gy - y (gy . y)) / norm.
template <class T>
__global__ void l2_normalize_backward_kernel(const T* y, const T* norms, const T* gy, T* gx, int64_t cols, T eps) {
  const int64_t r = blockIdx.x, base = r * cols;
  const T norm = norms[r];
  T s = 0;
  BLIP_FOR_COLS(j, cols) s += gy[base + j] * y[base + j];
  s = block_sum(s);
  if (norm > eps) BLIP_FOR_COLS(j, cols) gx[base + j] = (gy[base + j] - y[base + j] * s) / norm;
  else BLIP_FOR_COLS(j, cols) gx[base + j] = gy[base + j] / norm;
}

// out[o] = sum_k x[o, k] (inner == 1): one block per o.
template <class T>
__global__ void sum_rows_kernel(const T* x, int64_t r, T* out) {
  const T* in = x + blockIdx.x * r;
  T s = 0;
  BLIP_FOR_COLS(k, r) s += in[k];
  s = block_sum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// out[o, i] = sum_k x[o, k, i]: one thread per (o, i), k in order (reads coalesce along i).
template <class T>
__global__ void sum_middle_kernel(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
  for (int64_t t = first_index(); t < outer * inner; t += grid_step()) {
    const int64_t o = t / inner, i = t % inner;
    T s = 0;
    for (int64_t k = 0; k < r; ++k) s += x[(o * r + k) * inner + i];
    out[t] = s;
  }
}

#undef BLIP_FOR_COLS

bool no_rows(int64_t rows, int64_t cols, const char* op) {
  BLIP_CHECK(rows >= 0 && cols >= 0, "blip::cuda::", op, ": negative size rows=", rows, " cols=", cols);
  return rows == 0;
}

}  // namespace

template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log_form) {
  const char* op = log_form ? "log_softmax" : "softmax";
  if (no_rows(rows, cols, op)) return;
  softmax_kernel<T><<<row_blocks(rows, op), threads_per_block, 0, stream_now()>>>(x, y, cols, log_form);
  check_launch(op);
}

template <class T>
void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols, bool log_form) {
  const char* op = log_form ? "log_softmax_backward" : "softmax_backward";
  if (no_rows(rows, cols, op)) return;
  softmax_backward_kernel<T><<<row_blocks(rows, op), threads_per_block, 0, stream_now()>>>(y, gy, gx, cols, log_form);
  check_launch(op);
}

template <class T>
void layer_norm(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                double eps) {
  if (no_rows(rows, cols, "layer_norm")) return;
  layer_norm_kernel<T><<<row_blocks(rows, "layer_norm"), threads_per_block, 0, stream_now()>>>(
      x, weight, bias, y, mean, rstd, cols, static_cast<T>(eps));
  check_launch("layer_norm");
}

template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy, T* gx, T* gweight,
                         T* gbias, int64_t rows, int64_t cols) {
  if (no_rows(rows, cols, "layer_norm_backward") || cols == 0) return;
  layer_norm_backward_rows_kernel<T><<<row_blocks(rows, "layer_norm_backward"), threads_per_block, 0, stream_now()>>>(
      x, weight, mean, rstd, gy, gx, cols);
  check_launch("layer_norm_backward");
  layer_norm_backward_columns_kernel<T><<<blocks_for(cols), threads_per_block, 0, stream_now()>>>(
      x, mean, rstd, gy, gweight, gbias, rows, cols);
  check_launch("layer_norm_backward");
}

template <class T>
void l2_normalize(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
  if (no_rows(rows, cols, "l2_normalize")) return;
  l2_normalize_kernel<T><<<row_blocks(rows, "l2_normalize"), threads_per_block, 0, stream_now()>>>(
      x, y, norms, cols, static_cast<T>(eps));
  check_launch("l2_normalize");
}

template <class T>
void l2_normalize_backward(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols, double eps) {
  if (no_rows(rows, cols, "l2_normalize_backward")) return;
  l2_normalize_backward_kernel<T><<<row_blocks(rows, "l2_normalize_backward"), threads_per_block, 0, stream_now()>>>(
      y, norms, gy, gx, cols, static_cast<T>(eps));
  check_launch("l2_normalize_backward");
}

template <class T>
void sum_middle(const T* x, int64_t outer, int64_t r, int64_t inner, T* out) {
  BLIP_CHECK(outer >= 0 && r >= 0 && inner >= 0, "blip::cuda::sum_middle: negative size outer=", outer, " r=", r,
             " inner=", inner);
  if (outer == 0 || inner == 0) return;
  if (inner == 1) {
    sum_rows_kernel<T><<<row_blocks(outer, "sum_middle"), threads_per_block, 0, stream_now()>>>(x, r, out);
  } else {
    sum_middle_kernel<T><<<blocks_for(outer * inner), threads_per_block, 0, stream_now()>>>(x, outer, r, inner, out);
  }
  check_launch("sum_middle");
}

#define BLIP_INSTANTIATE_ROWWISE(T)                                                                             \
  template void softmax<T>(const T*, T*, int64_t, int64_t, bool);                                               \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);                            \
  template void layer_norm<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double);              \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t,  \
                                       int64_t);                                                                \
  template void l2_normalize<T>(const T*, T*, T*, int64_t, int64_t, double);                                    \
  template void l2_normalize_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, double);           \
  template void sum_middle<T>(const T*, int64_t, int64_t, int64_t, T*);

BLIP_INSTANTIATE_ROWWISE(float)
BLIP_INSTANTIATE_ROWWISE(double)
template void sum_middle<int64_t>(const int64_t*, int64_t, int64_t, int64_t, int64_t*);  // sum() of index tensors
template void sum_middle<uint8_t>(const uint8_t*, int64_t, int64_t, int64_t, uint8_t*);  // (mask tensors)

}  // namespace blip::cuda
