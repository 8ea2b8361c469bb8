// blip/models/presets.hpp — the standard BLIP composition and its size presets.
//
// StandardBlip<T, D> is BLIP as mmpretrain builds it: ViT (pre-norm, GELU-erf) + BERT with
// cross-attention in every layer + linear necks + ITC head + ITM head without pooler.
// blip_base(): BLIP-base retrieval (ViT-B/16 at 384, BERT-base, vocab 30524, necks 768 -> 256,
// queue 57600, temp 0.07, momentum 0.995, topk 256, max_txt_len 35). blip_large(): BLIP-large
// retrieval (ViT-L/16 at 384: width 1024, 24 layers, 16 heads, MLP 4096; BERT-base with
// cross-attention over width 1024; the rest as base). tiny(): a few-layer model for tests.
#pragma once

#include "blip/models/blip_retrieval.hpp"

namespace blip {

template <Differentiable T = float, Device D = Cpu>
using StandardVisionTransformer = VisionTransformer<TransformerLayer<PreNorm, NoCrossAttention, GeluErf, T, D>>;
template <Differentiable T = float, Device D = Cpu>
using StandardBertEncoder = BertEncoder<TransformerLayer<PostNorm, WithCrossAttention, GeluErf, T, D>>;
template <Differentiable T = float, Device D = Cpu>
using StandardBlip = BlipRetrieval<StandardVisionTransformer<T, D>, StandardBertEncoder<T, D>, Linear<T, D>, Linear<T, D>,
                                   ItcHead<T, D>, ItmHead<NoPooler, T, D>>;

namespace presets {

inline BlipConfig blip_base() {
  BlipConfig c;
  c.vision = VisionConfig{.img_size = 384, .patch_size = 16, .in_channels = 3, .embed_dims = 768, .num_layers = 12,
                          .num_heads = 12, .feedforward_channels = 3072, .layer_norm_eps = 1e-6};
  c.text = TextConfig{.hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12, .intermediate_size = 3072,
                      .vocab_size = 30524, .max_position_embeddings = 512, .layer_norm_eps = 1e-12,
                      .encoder_width = 768, .pad_token_id = 0};
  c.embed_dim = 256;
  c.queue_size = 57600;
  c.temperature = 0.07;
  c.alpha = 0.4;
  c.momentum = 0.995;
  c.topk = 256;
  c.max_txt_len = 35;
  c.tokens = TokenIds{.pad = 0, .cls = 101, .sep = 102, .dec = 30522, .enc = 30523};
  return c;
}

inline BlipConfig blip_large() {
  BlipConfig c = blip_base();
  c.vision.embed_dims = 1024;
  c.vision.num_layers = 24;
  c.vision.num_heads = 16;
  c.vision.feedforward_channels = 4096;
  c.text.encoder_width = 1024;
  return c;
}

inline BlipConfig tiny() {
  BlipConfig c;
  c.vision = VisionConfig{.img_size = 32, .patch_size = 8, .in_channels = 3, .embed_dims = 32, .num_layers = 2,
                          .num_heads = 4, .feedforward_channels = 64, .layer_norm_eps = 1e-6};
  c.text = TextConfig{.hidden_size = 32, .num_hidden_layers = 2, .num_attention_heads = 4, .intermediate_size = 64,
                      .vocab_size = 128, .max_position_embeddings = 24, .layer_norm_eps = 1e-12, .encoder_width = 32,
                      .pad_token_id = 0};
  c.embed_dim = 16;
  c.queue_size = 32;
  c.topk = 3;
  c.max_txt_len = 12;
  c.tokens = TokenIds{.pad = 0, .cls = 101, .sep = 102, .dec = 126, .enc = 127};
  return c;
}

}  // namespace presets
}  // namespace blip

// With blip::models linked, the standard model's classes are compiled once, there.
#include "blip/models/standard_instances.hpp"
