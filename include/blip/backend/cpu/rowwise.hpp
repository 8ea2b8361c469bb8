// blip/backend/cpu/rowwise.hpp — kernels over the rows of a contiguous [rows, cols] block:
// softmax, log_softmax, layer norm and L2 normalisation, forward and backward.
// These are the portable versions (Eigen, vectorised for the flags the program is compiled
// with); backend/cpu/isa.hpp runs AVX2 or AVX-512 versions where the CPU has them.
//
// Contract: every function reads and writes contiguous rows; rows run in parallel; exp/log go
// through Eigen's vectorised functions. Softmax subtracts the row maximum first.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "blip/backend/cpu/parallel.hpp"

namespace blip::cpu {

template <class T>
using RowMap = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
template <class T>
using ConstRowMap = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

template <class RowFn>
void for_rows(int64_t rows, int64_t cols, int64_t cost_per_element, RowFn&& fn) {
  parallel_for(rows, cols * cost_per_element, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r);
  });
}

template <class T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols) {
  for_rows(rows, cols, 8, [&](int64_t r) {
    ConstRowMap<T> in(x + r * cols, cols);
    RowMap<T> out(y + r * cols, cols);
    out = (in - in.maxCoeff()).exp();
    out /= out.sum();
  });
}

template <class T>
void log_softmax_rows(const T* x, T* y, int64_t rows, int64_t cols) {
  for_rows(rows, cols, 8, [&](int64_t r) {
    ConstRowMap<T> in(x + r * cols, cols);
    RowMap<T> out(y + r * cols, cols);
    const T max = in.maxCoeff();
    out = in - max;
    out -= std::log(out.exp().sum());
  });
}

// gx = y * (gy - sum(gy * y)) for y = softmax(x).
template <class T>
void softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
  for_rows(rows, cols, 3, [&](int64_t r) {
    ConstRowMap<T> p(y + r * cols, cols), g(gy + r * cols, cols);
    RowMap<T> out(gx + r * cols, cols);
    out = p * (g - (g * p).sum());
  });
}

// gx = gy - exp(y) * sum(gy) for y = log_softmax(x).
template <class T>
void log_softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
  for_rows(rows, cols, 8, [&](int64_t r) {
    ConstRowMap<T> ly(y + r * cols, cols), g(gy + r * cols, cols);
    RowMap<T> out(gx + r * cols, cols);
    out = g - ly.exp() * g.sum();
  });
}

// y = (x - mean) * rstd * weight + bias; saves mean and rstd per row for the backward.
template <class T>
void layer_norm_rows(const T* x, const T* weight, const T* bias, T* y, T* mean_out, T* rstd_out,
                     int64_t rows, int64_t cols, double eps) {
  ConstRowMap<T> w(weight, cols), b(bias, cols);
  for_rows(rows, cols, 4, [&](int64_t r) {
    ConstRowMap<T> in(x + r * cols, cols);
    RowMap<T> out(y + r * cols, cols);
    const T mean = in.sum() / static_cast<T>(cols);
    const T var = (in - mean).square().sum() / static_cast<T>(cols);  // biased, as torch
    const T rstd = T(1) / std::sqrt(var + static_cast<T>(eps));
    out = (in - mean) * rstd * w + b;
    mean_out[r] = mean;
    rstd_out[r] = rstd;
  });
}

// gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)), gxhat = gy * weight;
// gweight = sum_rows(gy * xhat), gbias = sum_rows(gy) (accumulated into zeroed outputs).
template <class T>
void layer_norm_backward_rows(const T* x, const T* weight, const T* mean, const T* rstd, const T* gy,
                              T* gx, T* gweight, T* gbias, int64_t rows, int64_t cols) {
  ConstRowMap<T> w(weight, cols);
  for_rows(rows, cols, 6, [&](int64_t r) {
    ConstRowMap<T> in(x + r * cols, cols), g(gy + r * cols, cols);
    RowMap<T> out(gx + r * cols, cols);
    const auto xhat = (in - mean[r]) * rstd[r];
    const Eigen::Array<T, 1, Eigen::Dynamic> gxhat = g * w;
    const T mean_g = gxhat.sum() / static_cast<T>(cols);
    const T mean_gx = (gxhat * xhat).sum() / static_cast<T>(cols);
    out = rstd[r] * (gxhat - mean_g - xhat * mean_gx);
  });
  // Column sums: one thread per column block keeps the result independent of thread count.
  constexpr int64_t kBlock = 64;
  parallel_for((cols + kBlock - 1) / kBlock, rows * kBlock * 2, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kBlock, width = std::min(kBlock, cols - c0);
      RowMap<T> gw(gweight + c0, width), gb(gbias + c0, width);
      for (int64_t r = 0; r < rows; ++r) {
        ConstRowMap<T> in(x + r * cols + c0, width), g(gy + r * cols + c0, width);
        gw += g * (in - mean[r]) * rstd[r];
        gb += g;
      }
    }
  });
}

// y = x / max(||x||_2, eps) per row; norms[r] = max(||x_r||, eps) for the backward.
// out[i] = <x[i, :], q> for m rows of width d, on the calling thread.
template <class T>
void dot_rows(const T* x, int64_t m, int64_t d, const T* q, T* out) {
  for (int64_t i = 0; i < m; ++i) {
    T s = 0;
    for (int64_t j = 0; j < d; ++j) s += x[i * d + j] * q[j];
    out[i] = s;
  }
}

template <class T>
void l2_normalize_rows(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
  for_rows(rows, cols, 2, [&](int64_t r) {
    ConstRowMap<T> in(x + r * cols, cols);
    const T norm = std::max(std::sqrt(in.square().sum()), static_cast<T>(eps));
    RowMap<T>(y + r * cols, cols) = in / norm;
    norms[r] = norm;
  });
}

// Where the clamp is active the map is linear (x / eps); elsewhere the row's component along y
// is projected out: gx = (gy - y (gy . y)) / norm.
template <class T>
void l2_normalize_backward_rows(const T* y, const T* norms, const T* gy, T* gx, int64_t rows, int64_t cols,
                                double eps) {
  for_rows(rows, cols, 3, [&](int64_t r) {
    ConstRowMap<T> out(y + r * cols, cols), g(gy + r * cols, cols);
    RowMap<T> dx(gx + r * cols, cols);
    const T norm = norms[r];
    if (norm > static_cast<T>(eps)) dx = (g - out * (g * out).sum()) / norm;
    else dx = g / norm;
  });
}

// Dynamic per-row int8 quantisation of x [rows, cols]: scale[r] = max|x_r| / 127 (1 for a zero
// row), q = round-to-nearest-even(x / scale[r]) in [-127, 127]. A row holding NaN or ±Inf gets
// scale NaN and q = 0, so its products come out NaN, as in fp32.
inline void quantize_rows_s8(const float* x, int8_t* q, float* scale, int64_t rows, int64_t cols) {
  for_rows(rows, cols, 2, [&](int64_t r) {
    const float* in = x + r * cols;
    float m = 0.0f, nonfinite = 0.0f;  // x * 0 is NaN exactly for NaN and ±Inf
    for (int64_t j = 0; j < cols; ++j) {
      m = std::max(m, std::fabs(in[j]));
      nonfinite += in[j] * 0.0f;
    }
    if (nonfinite != 0.0f) {
      scale[r] = std::numeric_limits<float>::quiet_NaN();
      std::fill_n(q + r * cols, cols, int8_t{0});
      return;
    }
    scale[r] = m > 0.0f ? m / 127.0f : 1.0f;
    const float inv = m > 0.0f ? 127.0f / m : 0.0f;
    for (int64_t j = 0; j < cols; ++j) q[r * cols + j] = static_cast<int8_t>(std::nearbyint(in[j] * inv));
  });
}

// In place, y [rows, cols] = acc · row_scale[r] · col_scale[j] + bias[j] (bias may be null),
// where y holds an int8 product's int32 accumulators on entry (read through memcpy: the memory
// is typed float).
inline void dequantize_rows(float* y, const float* row_scale, const float* col_scale, const float* bias, int64_t rows,
                            int64_t cols) {
  for_rows(rows, cols, 1, [&](int64_t r) {
    for (int64_t j = 0; j < cols; ++j) {
      int32_t acc;
      std::memcpy(&acc, y + r * cols + j, sizeof acc);
      y[r * cols + j] = std::fma(static_cast<float>(acc), row_scale[r] * col_scale[j], bias ? bias[j] : 0.0f);
    }
  });
}

}  // namespace blip::cpu
