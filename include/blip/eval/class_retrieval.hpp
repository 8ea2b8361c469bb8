// blip/eval/class_retrieval.hpp — retrieval metrics with class-level ground truth (a text is
// relevant to every image of its class), as the Fashion-MNIST demo evaluates.
//
// Contract: class_retrieval(score_i2t [N, T], score_t2i [T, N], image_classes [N],
// text_classes [T], topk, precision_k) returns, in order, "i2t/retrieval/Recall@K" (an image's
// query hits when one of its first K texts has its class), "t2i/retrieval/Recall@K" (a text's
// query hits when one of its first K images has its class) and
// "t2i/retrieval/Precision@precision_k" (the mean share, in percent, of a text's first
// precision_k images that have its class; omitted when precision_k is 0). Rankings are
// blip::topk's, ties included. Mismatched sizes or K over a row length throw blip::Error.
#pragma once

#include "blip/eval/retrieval_recall.hpp"

namespace blip::eval {

namespace detail {

template <Differentiable T>
std::vector<int64_t> ranked(const Tensor<T, Cpu>& scores, int64_t k, const char* what) {
  BLIP_CHECK(k > 0 && k <= scores.size(1), "class_retrieval: ", what, " needs the top ", k, " of rows of ",
             scores.size(1));
  return blip::topk(scores, k).indices.to_vector();
}

}  // namespace detail

template <Differentiable T>
Metrics class_retrieval(const Tensor<T, Cpu>& score_i2t, const Tensor<T, Cpu>& score_t2i,
                        const std::vector<int64_t>& image_classes, const std::vector<int64_t>& text_classes,
                        const std::vector<int64_t>& topk = {1, 5, 10}, int64_t precision_k = 100) {
  const int64_t N = static_cast<int64_t>(image_classes.size()), Tn = static_cast<int64_t>(text_classes.size());
  BLIP_CHECK(score_i2t.dim() == 2 && score_i2t.size(0) == N && score_i2t.size(1) == Tn && score_t2i.dim() == 2 &&
                 score_t2i.size(0) == Tn && score_t2i.size(1) == N,
             "class_retrieval: scores ", score_i2t.shape(), " and ", score_t2i.shape(), " do not match ", N,
             " images and ", Tn, " texts");
  BLIP_CHECK(!topk.empty(), "class_retrieval: topk is empty");
  const int64_t max_k = *std::max_element(topk.begin(), topk.end());
  Metrics out;
  const auto recall = [&](const Tensor<T, Cpu>& scores, const std::vector<int64_t>& query_class,
                          const std::vector<int64_t>& item_class, const char* dir) {
    const int64_t k = max_k;
    const std::vector<int64_t> idx = detail::ranked(scores, k, dir);
    for (int64_t K : topk) {
      double hits = 0;
      for (size_t q = 0; q < query_class.size(); ++q) {
        bool hit = false;
        for (int64_t j = 0; j < K && !hit; ++j)
          hit = item_class[static_cast<size_t>(idx[q * static_cast<size_t>(k) + static_cast<size_t>(j)])] == query_class[q];
        hits += hit;
      }
      out.emplace_back(std::string(dir) + "/retrieval/Recall@" + std::to_string(K),
                       100.0 * hits / static_cast<double>(query_class.size()));
    }
  };
  recall(score_i2t, image_classes, text_classes, "i2t");
  recall(score_t2i, text_classes, image_classes, "t2i");
  if (precision_k > 0) {
    const std::vector<int64_t> idx = detail::ranked(score_t2i, precision_k, "t2i precision");
    double share = 0;
    for (int64_t q = 0; q < Tn; ++q) {
      int64_t right = 0;
      for (int64_t j = 0; j < precision_k; ++j)
        right += image_classes[static_cast<size_t>(idx[static_cast<size_t>(q * precision_k + j)])] ==
                 text_classes[static_cast<size_t>(q)];
      share += static_cast<double>(right) / static_cast<double>(precision_k);
    }
    out.emplace_back("t2i/retrieval/Precision@" + std::to_string(precision_k), 100.0 * share / static_cast<double>(Tn));
  }
  return out;
}

}  // namespace blip::eval
