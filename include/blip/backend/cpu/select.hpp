// blip/backend/cpu/select.hpp — topk with PyTorch's CPU tie order, and the mean negative
// log-likelihood of cross_entropy, on the CPU.
//
// Contract:
// - topk: per row of [rows, n], the k largest values and their columns, largest first. Ties (and
//   NaN, which ranks first) are ordered exactly as PyTorch 1.13's CPU topk orders them: (value,
//   column) pairs in column order, comparator "a > b (NaN first)", then std::partial_sort of the
//   first k when k * 64 <= n, else std::nth_element at k-1 followed by std::sort of the first k-1.
//   topk_backward writes gx [rows, n]: `fill` except the selected columns, which get gy (0 for
//   the gradient; ITM re-ranking scatters its scores into a matrix of -100 with it).
// - nll_mean: loss[0] = -mean_i log_probs[i, label_i] (summed in double); nll_mean_backward:
//   gx = (exp(log_probs) - onehot(label)) · gy[0] / n. Labels are checked by the caller.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "blip/backend/cpu/elementwise.hpp"
#include "blip/backend/cpu/parallel.hpp"

namespace blip::cpu {

template <class T>
void topk(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int64_t* indices) {
  const auto greater = [](const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
  };
  parallel_for(rows, n * 4, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<T, int64_t>> row(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      if (k == 0) continue;
      for (int64_t j = 0; j < n; ++j) row[static_cast<size_t>(j)] = {x[r * n + j], j};
      if (k * 64 <= n) {
        std::partial_sort(row.begin(), row.begin() + k, row.end(), greater);
      } else {
        std::nth_element(row.begin(), row.begin() + k - 1, row.end(), greater);
        std::sort(row.begin(), row.begin() + k - 1, greater);
      }
      for (int64_t j = 0; j < k; ++j) {
        values[r * k + j] = row[static_cast<size_t>(j)].first;
        indices[r * k + j] = row[static_cast<size_t>(j)].second;
      }
    }
  });
}

template <class T>
void topk_backward(const T* gy, const int64_t* indices, int64_t rows, int64_t n, int64_t k, T fill, T* gx) {
  parallel_for(rows, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::fill_n(gx + r * n, n, fill);
      for (int64_t j = 0; j < k; ++j) gx[r * n + indices[r * k + j]] = gy[r * k + j];
    }
  });
}

template <class T>
void nll_mean(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, T* loss) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total -= static_cast<double>(log_probs[i * c + labels[i]]);
  loss[0] = static_cast<T>(total / static_cast<double>(n));
}

template <class T>
void nll_mean_backward(const T* log_probs, const int64_t* labels, int64_t n, int64_t c, const T* gy, T* gx) {
  exp(log_probs, gx, n * c);
  const T scale_by = gy[0] / static_cast<T>(n);
  for (int64_t i = 0; i < n; ++i) gx[i * c + labels[i]] -= T(1);
  cpu::scale(gx, gx, n * c, scale_by);
}

}  // namespace blip::cpu
