// blip/search/nearest.hpp — what a nearest-neighbour search returns, and the function type that
// lets a query use any index kind: the exact GEMM (top_n, here) or an approximate
// FAISS index (search/ann_index.hpp ann_nearest).
//
// Contract:
// - top_n(index_feat [M, E], query_feat [Q, E], n): per query the n largest cosine similarities;
//   n is clipped to M. Over a large index (kScanMinRows): a few queries make one pass over the
//   rows (scan_top_n), more take GEMMs over blocks of rows (blocked_top_n), ties lower row
//   first; a small index takes one GEMM + blip::topk (ties as the model's retrieval orders them).
// - exact_nearest(index): top_n over the index's features, as a NearestFn (the index must
//   outlive it).
// - A NearestFn maps query features [Q, E] (L2-normalised rows) and k to Q lists of at
// most k hits, best first, whose `similarity` is the inner product of the two features (exact,
// or FAISS's estimate for a PQ index without a re-score).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "blip/backend/cpu/isa.hpp"
#include "blip/core/tensor.hpp"
#include "blip/ops/copy.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/topk.hpp"
#include "blip/ops/view.hpp"
#include "blip/search/feature_index.hpp"

namespace blip::search {

struct SearchHit {
  int64_t entry = 0;         // row of the index
  float similarity = 0;      // cosine similarity of image_feat and text_feat
  float score = 0;           // ranking score: similarity, or itm_logit[:, 1] + similarity when re-ranked
  bool reranked = false;
};

using NearestFn = std::function<std::vector<std::vector<SearchHit>>(const Tensor<float, Cpu>& queries, int64_t k)>;

namespace detail {
using Candidate = std::pair<float, int64_t>;  // (similarity, row)
// Best first: the higher similarity (NaN, from a broken model, as the lowest), then the lower row.
inline float rank_key(float v) { return v != v ? -std::numeric_limits<float>::infinity() : v; }
inline bool better(const Candidate& a, const Candidate& b) {
  const float x = rank_key(a.first), y = rank_key(b.first);
  return x != y ? x > y : a.second < b.second;
}

// Keeps the k best of `heap` (front: the worst kept) with the candidates of one row of scores.
inline void keep_best(std::vector<Candidate>& heap, const float* scores, int64_t count, int64_t first_row, int64_t k) {
  for (int64_t j = 0; j < count; ++j) {
    const Candidate c{scores[j], first_row + j};
    if (static_cast<int64_t>(heap.size()) < k) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
}
}  // namespace detail

namespace detail {
// The best k of `candidates` as hits, best first.
inline std::vector<SearchHit> best_hits(std::vector<Candidate> candidates, int64_t k) {
  std::sort(candidates.begin(), candidates.end(), better);
  candidates.resize(std::min(candidates.size(), static_cast<size_t>(k)));
  std::vector<SearchHit> hits;
  for (const auto& [sim, row] : candidates) hits.push_back({row, sim, sim, false});
  return hits;
}
}  // namespace detail

// The exact top n by one pass over the rows, in blocks that stay in cache while every query
// reads them; each thread keeps a heap of its n best per query, merged at the end. For a few
// queries over a large index the work is reading the matrix: the GEMM reads it no faster and
// topk then sorts M scores per query (docs/performance.md, "exact search"). Ties: lower row first.
inline std::vector<std::vector<SearchHit>> scan_top_n(const Tensor<float, Cpu>& index_feat, const Tensor<float, Cpu>& query_feat,
                                                      int64_t n) {
  const Tensor<float, Cpu> x = contiguous(index_feat), q = contiguous(query_feat);
  const int64_t m = x.size(0), d = x.size(1), nq = q.size(0), k = std::min(n, m);
  constexpr int64_t block = 256;  // 256 rows of 256 floats: 256 KB, in L2 across the queries
  const int64_t blocks = (m + block - 1) / block;
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(blocks)));
  std::vector<std::vector<detail::Candidate>> best(static_cast<size_t>(threads * nq));
#pragma omp parallel num_threads(threads)
  {
    const auto t = static_cast<size_t>(omp_get_thread_num());
    std::vector<float> s(block);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = b * block, rows = std::min(block, m - r0);
      for (int64_t i = 0; i < nq; ++i) {
        cpu::isa::dot_rows(x.data() + r0 * d, rows, d, q.data() + i * d, s.data());
        detail::keep_best(best[t * static_cast<size_t>(nq) + static_cast<size_t>(i)], s.data(), rows, r0, k);
      }
    }
  }
  std::vector<std::vector<SearchHit>> out(static_cast<size_t>(nq));
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<detail::Candidate> all;
    for (int t = 0; t < threads; ++t) {
      const auto& h = best[static_cast<size_t>(t * nq + i)];
      all.insert(all.end(), h.begin(), h.end());
    }
    out[static_cast<size_t>(i)] = detail::best_hits(std::move(all), k);
  }
  return out;
}


// The exact top n of many queries: GEMMs over blocks of rows, each block's scores folded into
// per-query heaps before the next, so the [Q, M] score matrix never exists (at a million rows
// and a thousand queries it would be 4 GB, and topk would then sort it). Ties: lower row first.
inline std::vector<std::vector<SearchHit>> blocked_top_n(const Tensor<float, Cpu>& index_feat,
                                                         const Tensor<float, Cpu>& query_feat, int64_t n) {
  const int64_t m = index_feat.size(0), nq = query_feat.size(0), k = std::min(n, m);
  constexpr int64_t block = 16384;
  std::vector<std::vector<detail::Candidate>> heaps(static_cast<size_t>(nq));
  for (int64_t r0 = 0; r0 < m; r0 += block) {
    const int64_t rows = std::min(block, m - r0);
    const Tensor<float, Cpu> sim = matmul(query_feat, transpose(narrow(index_feat, 0, r0, rows), 0, 1));  // [Q, rows]
    const float* s = sim.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nq; ++i) detail::keep_best(heaps[static_cast<size_t>(i)], s + i * rows, rows, r0, k);
  }
  std::vector<std::vector<SearchHit>> out(static_cast<size_t>(nq));
  for (int64_t i = 0; i < nq; ++i) out[static_cast<size_t>(i)] = detail::best_hits(std::move(heaps[static_cast<size_t>(i)]), k);
  return out;
}

// From this many rows the scan (at most kScanMaxQueries queries) or the blocked GEMM pays
// (measured: docs/performance.md); smaller indexes take one GEMM and blip::topk.
inline constexpr int64_t kScanMinRows = 65536, kScanMaxQueries = 8;

inline std::vector<std::vector<SearchHit>> top_n(const Tensor<float, Cpu>& index_feat, const Tensor<float, Cpu>& query_feat,
                                                 int64_t n) {
  BLIP_CHECK(index_feat.dim() == 2 && query_feat.dim() == 2 && index_feat.size(1) == query_feat.size(1),
             "top_n: index features ", index_feat.shape(), " and query features ", query_feat.shape(), " do not match");
  BLIP_CHECK(n > 0, "top_n: n must be positive, got ", n);
  NoGradGuard no_grad;
  if (index_feat.size(0) >= kScanMinRows)
    return query_feat.size(0) <= kScanMaxQueries ? scan_top_n(index_feat, query_feat, n)
                                                 : blocked_top_n(index_feat, query_feat, n);
  const int64_t k = std::min(n, index_feat.size(0));
  const Tensor<float, Cpu> sim = matmul(query_feat, transpose(index_feat, 0, 1));  // [Q, M]
  const auto top = topk(sim, k);
  const std::vector<float> values = top.values.to_vector();
  const std::vector<int64_t> indices = top.indices.to_vector();
  std::vector<std::vector<SearchHit>> out(static_cast<size_t>(query_feat.size(0)));
  for (size_t q = 0; q < out.size(); ++q)
    for (int64_t j = 0; j < k; ++j) {
      const size_t at = q * static_cast<size_t>(k) + static_cast<size_t>(j);
      out[q].push_back({indices[at], values[at], values[at], false});
    }
  return out;
}

inline NearestFn exact_nearest(const FeatureIndex& index) {
  return [&index](const Tensor<float, Cpu>& queries, int64_t k) { return top_n(index.feats(), queries, k); };
}


}  // namespace blip::search
