// blip/nn/bert.hpp — BertEncoder: mmpretrain's XBertEncoder (BLIP's text transformer).
//
// Contract:
// - Embeddings: LN(word[ids] + position[0:L]) (no token types), eps from the config; the word
//   embedding's pad row gets zero gradient (padding_idx). L must not exceed
//   max_position_embeddings.
// - Self-attention mask: additive (1 - mask) * self_attn_mask_value (-10000 in BERT, not -inf)
//   on the keys; padded query rows are computed like any other.
// - text(ids, mask): mode 'text', self-attention only. multimodal(ids, mask, image_kv,
//   kv_index): mode 'multimodal', every layer cross-attends to the images' keys/values
//   (cross_keys_values(image_embeds), computed once per image; kv_index[b] picks text b's image).
// - Names: embeddings.{word_embeddings,position_embeddings,LayerNorm}.*, encoder.layer.N.*;
//   the buffer embeddings.position_ids (= arange) is kept for state dicts.
#pragma once

#include "blip/nn/transformer.hpp"

namespace blip {

struct TextConfig {
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t vocab_size = 30524;
  int64_t max_position_embeddings = 512;
  double layer_norm_eps = 1e-12;
  int64_t encoder_width = 768;
  int64_t pad_token_id = 0;
  double self_attn_mask_value = -10000.0;
};

template <class Layer = TransformerLayer<PostNorm, WithCrossAttention, GeluErf, float, Cpu>>
class BertEncoder {
  TextConfig config_;

 public:
  using value_type = typename Layer::value_type;
  using device_type = typename Layer::device_type;
  using T = value_type;
  using D = device_type;
  using KV = std::vector<CrossKV<T, D>>;  // one per layer

  explicit BertEncoder(const TextConfig& config)
      : config_(config),
        word_embeddings(config.vocab_size, config.hidden_size, config.pad_token_id),
        position_embeddings(Tensor<T, D>::zeros({config.max_position_embeddings, config.hidden_size})),
        embeddings_norm(config.hidden_size, config.layer_norm_eps),
        position_ids(arange<int64_t, D>(config.max_position_embeddings)) {
    position_ids = reshape(position_ids, {1, config.max_position_embeddings});
    const LayerSizes sizes{config.hidden_size, config.num_attention_heads, config.intermediate_size,
                           config.layer_norm_eps, config.encoder_width};
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers.emplace_back(sizes);
  }

  const TextConfig& config() const { return config_; }

  // tokens == Tokens::cls: only the CLS row, [B, 1, W] (the last layer computes one row).
  Tensor<T, D> text(const Tensor<int64_t, D>& ids, const Tensor<int64_t, D>& mask, Branch branch = Branch::online,
                    Tokens tokens = Tokens::all) const {
    return run(ids, mask, nullptr, {}, branch, tokens);
  }

  Tensor<T, D> multimodal(const Tensor<int64_t, D>& ids, const Tensor<int64_t, D>& mask, const KV& image_kv,
                          const Tensor<int64_t, D>& kv_index, Branch branch = Branch::online,
                          Tokens tokens = Tokens::all) const {
    BLIP_CHECK(image_kv.size() == layers.size(), "BertEncoder::multimodal: ", image_kv.size(),
               " cross keys/values for ", layers.size(), " layers");
    return run(ids, mask, &image_kv, kv_index, branch, tokens);
  }

  KV cross_keys_values(const Tensor<T, D>& image_embeds, Branch branch = Branch::online) const {
    BLIP_CHECK(image_embeds.dim() == 3 && image_embeds.size(2) == config_.encoder_width,
               "BertEncoder: image embeddings must be [B, S, ", config_.encoder_width, "], got ", image_embeds.shape());
    KV kv;
    for (const auto& layer : layers) kv.push_back(layer.cross_keys_values(image_embeds, branch));
    return kv;
  }

  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    word_embeddings.visit_parameters(f, join_name(prefix, "embeddings.word_embeddings"));
    f(join_name(prefix, "embeddings.position_embeddings.weight"), position_embeddings);
    embeddings_norm.visit_parameters(f, join_name(prefix, "embeddings.LayerNorm"));
    for (size_t i = 0; i < layers.size(); ++i)
      layers[i].visit_parameters(f, join_name(prefix, "encoder.layer." + std::to_string(i)));
  }

  // BERT initialisation: normal(0.02) weights and embeddings (pad row zero), zero biases, LN 1/0.
  void init_weights(Generator& gen) {
    visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
      if (name.ends_with("LayerNorm.weight")) init_constant(p, T(1));
      else if (name.ends_with(".bias")) init_constant(p, T(0));
      else init_normal(p, gen, 0.02);
    }, "");
    if (config_.pad_token_id >= 0) {
      NoGradGuard no_grad;
      fill_(contiguous(select(word_embeddings.weight.value(), 0, config_.pad_token_id)), T(0));
    }
  }

  Embedding<T, D> word_embeddings;
  Parameter<T, D> position_embeddings;
  LayerNorm<T, D> embeddings_norm;
  Tensor<int64_t, D> position_ids;  // buffer [1, max_pos]
  std::vector<Layer> layers;

 private:
  Tensor<T, D> run(const Tensor<int64_t, D>& ids, const Tensor<int64_t, D>& mask, const KV* image_kv,
                   const Tensor<int64_t, D>& kv_index, Branch branch, Tokens tokens) const {
    BLIP_CHECK(ids.dim() == 2 && mask.shape() == ids.shape(), "BertEncoder: ids ", ids.shape(), " and mask ",
               mask.shape(), " must both be [B, L]");
    const int64_t B = ids.size(0), L = ids.size(1);
    BLIP_CHECK(L <= config_.max_position_embeddings, "BertEncoder: sequence length ", L,
               " exceeds max_position_embeddings ", config_.max_position_embeddings);
    const Tensor<T, D> positions = narrow(position_embeddings.get(branch), 0, 0, L);
    Tensor<T, D> x = embeddings_norm(add(word_embeddings(ids, branch), positions), branch);
    // (1 - mask) * value on the keys, shaped [B, 1, 1, L] (mask entries are 0 or 1): made where the
    // mask lives, without a trip through the host.
    const Tensor<T, D> self_mask = masked_fill(full<T, D>({B, 1, 1, L}, static_cast<T>(config_.self_attn_mask_value)),
                                               reshape(mask, {B, 1, 1, L}), T(0));
    for (size_t i = 0; i < layers.size(); ++i)
      x = layers[i](x, self_mask, image_kv ? &(*image_kv)[i] : nullptr, kv_index, branch,
                    i + 1 == layers.size() ? tokens : Tokens::all);
    return tokens == Tokens::cls && layers.empty() ? narrow(x, 1, 0, 1) : x;
  }
};

}  // namespace blip
