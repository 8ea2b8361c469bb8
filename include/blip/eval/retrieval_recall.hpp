// blip/eval/retrieval_recall.hpp — mmpretrain's RetrievalRecall as the retrieval test loop runs it.
//
// Contract: retrieval_recall(score_i2t [N, T], score_t2i [T, N], gt_text_ids per image, topk)
// returns the metric dict in the reference's key order: "i2t/retrieval/Recall@K" for each K of
// topk, then "t2i/retrieval/Recall@K". i2t: one query per image, a hit when any of its captions'
// text ids is among the first K of the row's top max(topk); t2i: one query per caption (captions
// flattened image by image), a hit when its image is among the first K. Value: the sum of 100.0
// per hit over queries, divided once by the number of queries (double). The top-k, ties
// included, is blip::topk — PyTorch's CPU order — so Recall@5/@10 over re-ranked rows full of
// -100 match the reference. max(topk) above a row length throws (torch.topk raises too).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "blip/ops/topk.hpp"

namespace blip::eval {

using Metrics = std::vector<std::pair<std::string, double>>;  // ordered as the reference's dict

namespace detail {

// Percentage of rows whose first K indices (of the row's top max(topk)) hit a ground-truth column.
template <Differentiable T>
std::vector<double> recall_at(const Tensor<T, Cpu>& scores, const std::vector<std::vector<int64_t>>& gt,
                              const std::vector<int64_t>& topk, const char* direction) {
  BLIP_CHECK(scores.dim() == 2 && scores.size(0) == static_cast<int64_t>(gt.size()), "retrieval_recall: ", direction,
             " scores ", scores.shape(), " do not match ", gt.size(), " queries");
  BLIP_CHECK(!topk.empty(), "retrieval_recall: topk is empty");
  const int64_t max_k = *std::max_element(topk.begin(), topk.end());
  BLIP_CHECK(max_k <= scores.size(1), "retrieval_recall: ", direction, " max(topk) = ", max_k, " exceeds the ",
             scores.size(1), " candidates per query");
  const std::vector<int64_t> idx = blip::topk(scores, max_k).indices.to_vector();
  std::vector<double> sums(topk.size(), 0.0);
  for (size_t q = 0; q < gt.size(); ++q)
    for (size_t t = 0; t < topk.size(); ++t) {
      bool hit = false;
      for (int64_t j = 0; j < topk[t] && !hit; ++j)
        hit = std::find(gt[q].begin(), gt[q].end(), idx[q * static_cast<size_t>(max_k) + static_cast<size_t>(j)]) != gt[q].end();
      sums[t] += hit ? 100.0 : 0.0;
    }
  for (double& s : sums) s /= static_cast<double>(gt.size());
  return sums;
}

}  // namespace detail

// gt_text_ids[i]: the text ids (columns of score_i2t) of image i's captions; captions are the
// rows of score_t2i in image order, so caption rows of image i map to image i.
template <Differentiable T>
Metrics retrieval_recall(const Tensor<T, Cpu>& score_i2t, const Tensor<T, Cpu>& score_t2i,
                         const std::vector<std::vector<int64_t>>& gt_text_ids, const std::vector<int64_t>& topk = {1, 5, 10}) {
  std::vector<std::vector<int64_t>> t2i_gt;
  for (size_t i = 0; i < gt_text_ids.size(); ++i)
    for (size_t c = 0; c < gt_text_ids[i].size(); ++c) t2i_gt.push_back({static_cast<int64_t>(i)});
  const auto i2t = detail::recall_at(score_i2t, gt_text_ids, topk, "i2t");
  const auto t2i = detail::recall_at(score_t2i, t2i_gt, topk, "t2i");
  Metrics out;
  for (size_t t = 0; t < topk.size(); ++t) out.emplace_back("i2t/retrieval/Recall@" + std::to_string(topk[t]), i2t[t]);
  for (size_t t = 0; t < topk.size(); ++t) out.emplace_back("t2i/retrieval/Recall@" + std::to_string(topk[t]), t2i[t]);
  return out;
}

}  // namespace blip::eval
