// blip/search/query.hpp — querying a FeatureIndex: cosine top-n and the ITM re-rank.
//
// Contract:
// - top_n / exact_nearest: search/nearest.hpp.
// - rerank(model, hits, k, itm_scores): the first k hits re-scored as itm_logit[:, 1] + sim —
//   the model's compute_score_matrix_* rule — and sorted by that score (stable); the hits after
//   k keep their similarity order below them (the model would score them -100).
//   itm_scores(candidate entries) supplies the ITM logits, so one function serves both
//   directions: texts-for-an-image and images-for-a-text (itm_for_text / itm_for_image).
// - The model may live on any device: queries and candidates are host tensors, moved to it
//   (models/host_io.hpp).
// - model_fingerprint(model): FNV-1a of the two necks' weights, stored in an index so that a
//   query with another checkpoint is refused instead of returning meaningless neighbours.
#pragma once

#include <algorithm>
#include <functional>

#include "blip/models/blip_retrieval.hpp"
#include "blip/models/host_io.hpp"
#include "blip/search/feature_index.hpp"
#include "blip/search/nearest.hpp"

namespace blip::search {

// itm_scores(entries) -> itm_logit[:, 1] of the query paired with each entry.
using ItmScoreFn = std::function<std::vector<float>(const std::vector<int64_t>& entries)>;

inline std::vector<SearchHit> rerank(std::vector<SearchHit> hits, int64_t k, const ItmScoreFn& itm_scores) {
  k = std::min<int64_t>(k, static_cast<int64_t>(hits.size()));
  if (k <= 0) return hits;
  std::vector<int64_t> entries;
  for (int64_t j = 0; j < k; ++j) entries.push_back(hits[static_cast<size_t>(j)].entry);
  const std::vector<float> itm = itm_scores(entries);
  BLIP_CHECK(itm.size() == entries.size(), "rerank: ", itm.size(), " ITM scores for ", entries.size(), " candidates");
  for (int64_t j = 0; j < k; ++j) {
    SearchHit& h = hits[static_cast<size_t>(j)];
    h.score = itm[static_cast<size_t>(j)] + h.similarity;
    h.reranked = true;
  }
  std::stable_sort(hits.begin(), hits.begin() + k, [](const SearchHit& a, const SearchHit& b) { return a.score > b.score; });
  return hits;
}

// ITM scores of one text (ids/mask [1, L]) against candidate images' embeds [K, S, W].
template <class Model>
std::vector<float> itm_for_text(const Model& model, const Tensor<int64_t, Cpu>& ids, const Tensor<int64_t, Cpu>& mask,
                                const Tensor<float, Cpu>& candidate_embeds) {
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < candidate_embeds.size(0); ++i) pairs.emplace_back(i, 0);
  return itm_scores_on_host(model, pairs, candidate_embeds, ids, mask);
}

// ITM scores of one image (embeds [1, S, W]) against candidate texts (ids/mask [K, L]).
template <class Model>
std::vector<float> itm_for_image(const Model& model, const Tensor<float, Cpu>& image_embeds,
                                 const Tensor<int64_t, Cpu>& ids, const Tensor<int64_t, Cpu>& mask) {
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t t = 0; t < ids.size(0); ++t) pairs.emplace_back(0, t);
  return itm_scores_on_host(model, pairs, image_embeds, ids, mask);
}

template <class Model>
uint64_t model_fingerprint(const Model& model) {
  detail::Fnv1a sum;
  const auto add = [&](const auto& neck) {
    const std::vector<float> w = neck.weight.value().to_vector();
    sum.add(w.data(), w.size() * sizeof(float));
  };
  add(model.vision_neck);
  add(model.text_neck);
  return sum.h;
}

}  // namespace blip::search
