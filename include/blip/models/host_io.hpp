// blip/models/host_io.hpp — a model on any device, called with host tensors: what the
// application layers (search, index, embed, Retriever, the tool) need, written once.
//
// Contract:
// - to<To>(TextBatch) moves ids and mask (upload<To>: without the host waiting, ops/copy.hpp);
//   to_host(Features) moves every defined field to the CPU.
// - extract_feat_on_host(model, images, texts, keep_embeds), image_embeds_on_host(model, images),
//   itm_scores_on_host / itm_logits_on_host(model, pairs, image_embeds, ids, mask): the model's own
//   calls with the inputs moved to its device (Model::device_type) and the results moved back.
//   ids are the plain token ids: [ENC] goes into column 0 on the device (encoder_ids).
// - On the CPU nothing is copied: the calls are the model's.
// The evaluation loop (eval/retrieval_loop.hpp) does not go through these: it keeps features and
// image embeds on the model's device between its stages and moves only the score matrices back.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "blip/models/blip_retrieval.hpp"
#include "blip/ops/copy.hpp"

namespace blip {

template <Device To, Differentiable T, Device From>
TextBatch<T, To> to(const TextBatch<T, From>& batch) {
  return {to<To>(batch.ids), to<To>(batch.mask)};
}
template <Device To, Differentiable T, Device From>
TextBatch<T, To> upload(const TextBatch<T, From>& batch) {
  return {upload<To>(batch.ids), upload<To>(batch.mask)};
}

template <Differentiable T, Device From>
Features<T, Cpu> to_host(const Features<T, From>& f) {
  if constexpr (std::same_as<From, Cpu>) {
    return f;
  } else {
    const auto move = [](const auto& t) {
      using Out = Tensor<typename std::decay_t<decltype(t)>::value_type, Cpu>;
      return t.defined() ? to<Cpu>(t) : Out();
    };
    return {move(f.image_embeds), move(f.image_feat), move(f.text_embeds), move(f.text_feat), move(f.text_ids),
            move(f.text_attn_mask)};
  }
}

template <class Model>
Features<float, Cpu> extract_feat_on_host(const Model& model, const Tensor<float, Cpu>* images,
                                          const TextBatch<float, Cpu>* texts,
                                          std::optional<bool> keep_embeds = std::nullopt) {
  using D = typename Model::device_type;
  if constexpr (std::same_as<D, Cpu>) {
    return model.extract_feat(images, texts, keep_embeds);
  } else {
    std::optional<Tensor<float, D>> x;
    std::optional<TextBatch<float, D>> t;
    if (images) x = upload<D>(*images);
    if (texts) t = upload<D>(*texts);
    return to_host(model.extract_feat(x ? &*x : nullptr, t ? &*t : nullptr, keep_embeds));
  }
}

template <class Model>
Tensor<float, Cpu> image_embeds_on_host(const Model& model, const Tensor<float, Cpu>& images) {
  using D = typename Model::device_type;
  return to<Cpu>(model.image_embeds(to<D>(images)));
}

template <class Model>
std::vector<float> itm_scores_on_host(const Model& model, const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                      const Tensor<float, Cpu>& image_embeds, const Tensor<int64_t, Cpu>& ids,
                                      const Tensor<int64_t, Cpu>& mask) {
  using D = typename Model::device_type;
  return model.itm_scores(pairs, to<D>(image_embeds), model.encoder_ids(to<D>(ids)), to<D>(mask));
}

template <class Model>
std::vector<float> itm_logits_on_host(const Model& model, const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                      const Tensor<float, Cpu>& image_embeds, const Tensor<int64_t, Cpu>& ids,
                                      const Tensor<int64_t, Cpu>& mask) {
  using D = typename Model::device_type;
  return model.itm_logits(pairs, to<D>(image_embeds), model.encoder_ids(to<D>(ids)), to<D>(mask));
}

}  // namespace blip
