// blip/search/nearest.hpp — what a nearest-neighbour search returns, and the function type that
// lets a query use any index kind: the exact GEMM (top_n, here) or an approximate
// FAISS index (search/ann_index.hpp ann_nearest).
//
// Contract:
// - top_n(index_feat [M, E], query_feat [Q, E], n): per query the n largest cosine similarities
//   (one GEMM + blip::topk, so ties order as the model's retrieval does); n is clipped to M.
// - exact_nearest(index): top_n over the index's features, as a NearestFn (the index must
//   outlive it).
// - A NearestFn maps query features [Q, E] (L2-normalised rows) and k to Q lists of at
// most k hits, best first, whose `similarity` is the inner product of the two features (exact,
// or FAISS's estimate for a PQ index without a re-score).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "blip/core/tensor.hpp"
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

inline std::vector<std::vector<SearchHit>> top_n(const Tensor<float, Cpu>& index_feat, const Tensor<float, Cpu>& query_feat,
                                                 int64_t n) {
  BLIP_CHECK(index_feat.dim() == 2 && query_feat.dim() == 2 && index_feat.size(1) == query_feat.size(1),
             "top_n: index features ", index_feat.shape(), " and query features ", query_feat.shape(), " do not match");
  BLIP_CHECK(n > 0, "top_n: n must be positive, got ", n);
  NoGradGuard no_grad;
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
