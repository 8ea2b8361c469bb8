// blip/ops/topk.hpp — the k largest values along the last axis, with PyTorch's CPU tie order.
//
// Contract: returns values and int64 indices [..., k], largest first. Ties (and NaN, which
// ranks first) are ordered exactly as PyTorch 1.13's CPU topk orders them, because retrieval
// metrics over re-ranked rows full of equal -100 scores depend on it: per row, (value, column)
// pairs in column order, comparator "a > b (NaN first)", then std::partial_sort of the first k
// when k * 64 <= n, else std::nth_element at k-1 followed by std::sort of the first k-1.
// The values are differentiable (the gradient goes back to the selected columns).
// k > n throws blip::Error.
#pragma once

#include <algorithm>
#include <cmath>

#include "blip/ops/elementwise.hpp"

namespace blip {

template <Element T, Device D>
struct TopK {
  Tensor<T, D> values;
  Tensor<int64_t, D> indices;
};

template <Element T, Device D>
TopK<T, D> topk(const Tensor<T, D>& x, int64_t k) {
  BLIP_CHECK(x.dim() >= 1, "topk: input must have rank >= 1, got ", x.shape());
  const int64_t n = x.size(-1);
  BLIP_CHECK(k >= 0 && k <= n, "topk: k = ", k, " is outside [0, ", n, "] for shape ", x.shape());
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Shape out_shape = x.shape();
  out_shape.back() = k;
  std::vector<T> values(static_cast<size_t>(rows * k));
  std::vector<int64_t> indices(static_cast<size_t>(rows * k));
  const std::vector<T> data = contiguous(x.detach()).to_vector();
  const auto greater = [](const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
  };
  cpu::parallel_for(rows, n * 4, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<T, int64_t>> row(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t j = 0; j < n; ++j) row[static_cast<size_t>(j)] = {data[static_cast<size_t>(r * n + j)], j};
      if (k == 0) continue;
      if (k * 64 <= n) {
        std::partial_sort(row.begin(), row.begin() + k, row.end(), greater);
      } else {
        std::nth_element(row.begin(), row.begin() + k - 1, row.end(), greater);
        std::sort(row.begin(), row.begin() + k - 1, greater);
      }
      for (int64_t j = 0; j < k; ++j) {
        values[static_cast<size_t>(r * k + j)] = row[static_cast<size_t>(j)].first;
        indices[static_cast<size_t>(r * k + j)] = row[static_cast<size_t>(j)].second;
      }
    }
  });
  TopK<T, D> result{Tensor<T, D>::from_vector(out_shape, values), Tensor<int64_t, D>::from_vector(out_shape, indices)};
  if (grad_needed(x))
    record(result.values, "topk", {&x}, [in_shape = x.shape(), indices, rows, n, k](const Tensor<T, D>& gy) {
      const std::vector<T> g = contiguous(gy).to_vector();
      std::vector<T> gx(static_cast<size_t>(rows * n), T(0));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j)
          gx[static_cast<size_t>(r * n + indices[static_cast<size_t>(r * k + j)])] += g[static_cast<size_t>(r * k + j)];
      return std::vector{Tensor<T, D>::from_vector(in_shape, gx)};
    });
  return result;
}

}  // namespace blip
