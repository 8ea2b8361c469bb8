// blip/io/config_json.hpp — BlipConfig from the JSON layout of the golden case sets'
// config.json (vision / text / itc_head / itm_head / tokens / data_preprocessor keys).
//
// Contract: missing keys keep BlipConfig's defaults; a key of the wrong type throws
// blip::Error naming the file and the key.
#pragma once

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
  return c;
}

inline BlipConfig load_blip_config(const std::string& path) {
  const std::vector<uint8_t> bytes = read_regular_file(path, uint64_t{16} << 20, "config");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return blip_config_from_json(parse_json_text(text, str("config: '", path, "'")), path);
}

}  // namespace blip::io
