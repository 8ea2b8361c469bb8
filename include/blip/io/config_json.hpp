// blip/io/config_json.hpp — BlipConfig as JSON: the layout of the golden case sets'
// config.json (vision / text / itc_head / tokens / data_preprocessor keys), which is also what
// blip writes into a checkpoint's metadata ("blip.config") and into the config.json beside it.
//
// Contract: blip_config_from_json: missing keys keep BlipConfig's defaults; a key of the wrong
// type throws blip::Error naming the file and the key. blip_config_to_json writes every field
// the model's structure and its inference depend on (plus "model_type": "blip_retrieval"), so
// from_json(to_json(c)) gives c back. is_blip_config_json tells our layout from others.
#pragma once

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/io/json_text.hpp"
#include "blip/io/regular_file.hpp"
#include "blip/models/blip_retrieval.hpp"

namespace blip::io {

inline BlipConfig blip_config_from_json(const nlohmann::json& j, const std::string& origin = "config") {
  BlipConfig c;
  auto get = [&](const nlohmann::json& obj, const char* section, const char* key, auto& out) {
    if (!obj.contains(key)) return;
    try {
      out = obj.at(key).get<std::decay_t<decltype(out)>>();
    } catch (const nlohmann::json::exception& e) {
      fail("config: '", origin, "' key ", section, ".", key, " has the wrong type: ", e.what());
    }
  };
  if (j.contains("vision")) {
    const auto& v = j["vision"];
    get(v, "vision", "img_size", c.vision.img_size);
    get(v, "vision", "patch_size", c.vision.patch_size);
    get(v, "vision", "in_channels", c.vision.in_channels);
    get(v, "vision", "embed_dims", c.vision.embed_dims);
    get(v, "vision", "num_layers", c.vision.num_layers);
    get(v, "vision", "num_heads", c.vision.num_heads);
    get(v, "vision", "feedforward_channels", c.vision.feedforward_channels);
    get(v, "vision", "layer_norm_eps", c.vision.layer_norm_eps);
  }
  if (j.contains("text")) {
    const auto& t = j["text"];
    get(t, "text", "hidden_size", c.text.hidden_size);
    get(t, "text", "num_hidden_layers", c.text.num_hidden_layers);
    get(t, "text", "num_attention_heads", c.text.num_attention_heads);
    get(t, "text", "intermediate_size", c.text.intermediate_size);
    get(t, "text", "vocab_size", c.text.vocab_size);
    get(t, "text", "max_position_embeddings", c.text.max_position_embeddings);
    get(t, "text", "layer_norm_eps", c.text.layer_norm_eps);
    get(t, "text", "encoder_width", c.text.encoder_width);
    get(t, "text", "pad_token_id", c.text.pad_token_id);
    get(t, "text", "self_attn_mask_value", c.text.self_attn_mask_value);
  }
  if (j.contains("itc_head")) {
    const auto& h = j["itc_head"];
    get(h, "itc_head", "embed_dim", c.embed_dim);
    get(h, "itc_head", "queue_size", c.queue_size);
    get(h, "itc_head", "temperature", c.temperature);
    get(h, "itc_head", "alpha", c.alpha);
  }
  get(j, "", "momentum", c.momentum);
  get(j, "", "topk", c.topk);
  get(j, "", "max_txt_len", c.max_txt_len);
  get(j, "", "fast_match_default", c.fast_match);
  if (j.contains("tokens")) {
    const auto& t = j["tokens"];
    get(t, "tokens", "pad_id", c.tokens.pad);
    get(t, "tokens", "cls_id", c.tokens.cls);
    get(t, "tokens", "sep_id", c.tokens.sep);
    get(t, "tokens", "dec_id", c.tokens.dec);
    get(t, "tokens", "enc_id", c.tokens.enc);
  }
  if (j.contains("data_preprocessor")) {
    get(j["data_preprocessor"], "data_preprocessor", "mean", c.mean);
    get(j["data_preprocessor"], "data_preprocessor", "std", c.std);
  }
  std::string rule;
  get(j, "", "momentum_rule", rule);
  if (!rule.empty()) {
    BLIP_CHECK(rule == "mmpretrain" || rule == "ema", "config: '", origin, "' key momentum_rule is '", rule,
               "', not mmpretrain or ema");
    c.momentum_rule = rule == "ema" ? MomentumRule::ema : MomentumRule::mmpretrain;
  }
  get(j, "", "clamp_temperature", c.clamp_temperature);
  return c;
}

inline nlohmann::json blip_config_to_json(const BlipConfig& c) {
  nlohmann::json j;
  j["model_type"] = "blip_retrieval";
  j["vision"] = {{"img_size", c.vision.img_size},
                 {"patch_size", c.vision.patch_size},
                 {"in_channels", c.vision.in_channels},
                 {"embed_dims", c.vision.embed_dims},
                 {"num_layers", c.vision.num_layers},
                 {"num_heads", c.vision.num_heads},
                 {"feedforward_channels", c.vision.feedforward_channels},
                 {"layer_norm_eps", c.vision.layer_norm_eps}};
  j["text"] = {{"hidden_size", c.text.hidden_size},
               {"num_hidden_layers", c.text.num_hidden_layers},
               {"num_attention_heads", c.text.num_attention_heads},
               {"intermediate_size", c.text.intermediate_size},
               {"vocab_size", c.text.vocab_size},
               {"max_position_embeddings", c.text.max_position_embeddings},
               {"layer_norm_eps", c.text.layer_norm_eps},
               {"encoder_width", c.text.encoder_width},
               {"pad_token_id", c.text.pad_token_id},
               {"self_attn_mask_value", c.text.self_attn_mask_value}};
  j["itc_head"] = {{"embed_dim", c.embed_dim},
                   {"queue_size", c.queue_size},
                   {"temperature", c.temperature},
                   {"alpha", c.alpha}};
  j["momentum"] = c.momentum;
  j["momentum_rule"] = c.momentum_rule == MomentumRule::ema ? "ema" : "mmpretrain";
  j["clamp_temperature"] = c.clamp_temperature;
  j["topk"] = c.topk;
  j["max_txt_len"] = c.max_txt_len;
  j["fast_match_default"] = c.fast_match;
  j["tokens"] = {{"pad_id", c.tokens.pad},
                 {"cls_id", c.tokens.cls},
                 {"sep_id", c.tokens.sep},
                 {"dec_id", c.tokens.dec},
                 {"enc_id", c.tokens.enc}};
  j["data_preprocessor"] = {{"mean", c.mean}, {"std", c.std}};
  return j;
}

// Our layout (what blip writes, and the golden case sets' config.json), not HF's or another's.
inline bool is_blip_config_json(const nlohmann::json& j) {
  return j.is_object() && (j.value("model_type", std::string()) == "blip_retrieval" ||
                           (j.contains("vision") && j.contains("text") && !j.contains("vision_config")));
}

// The fields that fix the model's structure (tensor shapes, eps, token ids, preprocessing):
// each one that differs between a and b, as "name: a vs b" (empty when they agree).
inline std::vector<std::string> config_differences(const BlipConfig& a, const BlipConfig& b) {
  std::vector<std::string> out;
  auto cmp = [&](const char* name, const auto& x, const auto& y) {
    bool same = x == y;
    if constexpr (std::is_floating_point_v<std::decay_t<decltype(x)>>)  // 0.48145466 * 255 vs 122.770938
      same = std::abs(x - y) <= 1e-6 * std::max(1.0, std::abs(double(x)));
    if (!same) out.push_back(str(name, ": ", x, " vs ", y));
  };
  cmp("vision.img_size", a.vision.img_size, b.vision.img_size);
  cmp("vision.patch_size", a.vision.patch_size, b.vision.patch_size);
  cmp("vision.in_channels", a.vision.in_channels, b.vision.in_channels);
  cmp("vision.embed_dims", a.vision.embed_dims, b.vision.embed_dims);
  cmp("vision.num_layers", a.vision.num_layers, b.vision.num_layers);
  cmp("vision.num_heads", a.vision.num_heads, b.vision.num_heads);
  cmp("vision.feedforward_channels", a.vision.feedforward_channels, b.vision.feedforward_channels);
  cmp("vision.layer_norm_eps", a.vision.layer_norm_eps, b.vision.layer_norm_eps);
  cmp("text.hidden_size", a.text.hidden_size, b.text.hidden_size);
  cmp("text.num_hidden_layers", a.text.num_hidden_layers, b.text.num_hidden_layers);
  cmp("text.num_attention_heads", a.text.num_attention_heads, b.text.num_attention_heads);
  cmp("text.intermediate_size", a.text.intermediate_size, b.text.intermediate_size);
  cmp("text.vocab_size", a.text.vocab_size, b.text.vocab_size);
  cmp("text.max_position_embeddings", a.text.max_position_embeddings, b.text.max_position_embeddings);
  cmp("text.layer_norm_eps", a.text.layer_norm_eps, b.text.layer_norm_eps);
  cmp("text.encoder_width", a.text.encoder_width, b.text.encoder_width);
  cmp("embed_dim", a.embed_dim, b.embed_dim);
  cmp("tokens.enc_id", a.tokens.enc, b.tokens.enc);
  cmp("tokens.cls_id", a.tokens.cls, b.tokens.cls);
  for (int ch = 0; ch < 3; ++ch) {
    cmp("mean", a.mean[ch], b.mean[ch]);
    cmp("std", a.std[ch], b.std[ch]);
  }
  return out;
}

inline BlipConfig load_blip_config(const std::string& path) {
  return blip_config_from_json(read_json_file(path, "config", uint64_t{16} << 20), path);
}

}  // namespace blip::io
