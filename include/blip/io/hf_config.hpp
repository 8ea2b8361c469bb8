// blip/io/hf_config.hpp — BlipConfig from and to the files of a HuggingFace BLIP folder:
// config.json (BlipConfig with text_config / vision_config) and preprocessor_config.json
// (BlipImageProcessor).
//
// Contract: blip_config_from_hf(config, preprocessor, origin) reads every size and eps the
// model's structure depends on; a field the file leaves out takes transformers' class default
// (BlipVisionConfig: 768 wide, 12 layers, 12 heads, 3072, image 384, patch 16, eps 1e-5;
// BlipTextConfig: 768, 12 layers, 8 heads, 3072, vocab 30524, 512 positions, eps 1e-12;
// encoder_hidden_size = the vision width, as BlipConfig sets it; image_text_hidden_size 256).
// Settings blip cannot honour are refused by name (an activation other than "gelu", resample
// other than 3 = bicubic, a resize size that is not square or not the model's image_size, no
// normalisation, a rescale factor other than 1/255). preprocessor may be null (BLIP's CLIP
// mean/std). hf_config_json / hf_preprocessor_json write the files transformers'
// from_pretrained reads back into the same model.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>

#include "blip/io/config_json.hpp"
#include "blip/models/presets.hpp"

namespace blip::io {

inline bool is_hf_blip_config_json(const nlohmann::json& j) {
  return j.is_object() && (j.contains("vision_config") || j.contains("text_config") ||
                           j.value("model_type", std::string()) == "blip");
}

namespace hf_detail {

// j[key] as T, or `fallback` when absent or null; a value of another type is an error naming it.
template <class T>
T get(const nlohmann::json& j, const char* section, const char* key, T fallback, const std::string& origin) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail("config: '", origin, "' key ", section, key, " has the wrong type: ", e.what());
  }
}

inline void check_activation(const nlohmann::json& j, const char* section, const std::string& origin) {
  const std::string act = get<std::string>(j, section, "hidden_act", "gelu", origin);
  BLIP_CHECK(act == "gelu", "config: '", origin, "' key ", section, "hidden_act is '", act,
             "'; blip's BLIP uses GELU (erf), transformers' \"gelu\"");
}

}  // namespace hf_detail

inline BlipConfig blip_config_from_hf(const nlohmann::json& config, const nlohmann::json* preprocessor,
                                      const std::string& origin = "config.json",
                                      const std::string& preprocessor_origin = "preprocessor_config.json") {
  using hf_detail::get;
  BLIP_CHECK(config.is_object(), "config: '", origin, "' is not a JSON object");
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& v = config.contains("vision_config") ? config.at("vision_config") : empty;
  const nlohmann::json& t = config.contains("text_config") ? config.at("text_config") : empty;
  BLIP_CHECK(v.is_object() && t.is_object(), "config: '", origin, "' vision_config and text_config must be objects");
  hf_detail::check_activation(v, "vision_config.", origin);
  hf_detail::check_activation(t, "text_config.", origin);

  BlipConfig c = presets::blip_base();  // temperature, queue, momentum, topk: BLIP's
  c.vision.embed_dims = get<int64_t>(v, "vision_config.", "hidden_size", 768, origin);
  c.vision.feedforward_channels = get<int64_t>(v, "vision_config.", "intermediate_size", 3072, origin);
  c.vision.num_layers = get<int64_t>(v, "vision_config.", "num_hidden_layers", 12, origin);
  c.vision.num_heads = get<int64_t>(v, "vision_config.", "num_attention_heads", 12, origin);
  c.vision.img_size = get<int64_t>(v, "vision_config.", "image_size", 384, origin);
  c.vision.patch_size = get<int64_t>(v, "vision_config.", "patch_size", 16, origin);
  c.vision.in_channels = get<int64_t>(v, "vision_config.", "num_channels", 3, origin);
  c.vision.layer_norm_eps = get<double>(v, "vision_config.", "layer_norm_eps", 1e-5, origin);

  c.text.hidden_size = get<int64_t>(t, "text_config.", "hidden_size", 768, origin);
  c.text.intermediate_size = get<int64_t>(t, "text_config.", "intermediate_size", 3072, origin);
  c.text.num_hidden_layers = get<int64_t>(t, "text_config.", "num_hidden_layers", 12, origin);
  c.text.num_attention_heads = get<int64_t>(t, "text_config.", "num_attention_heads", 8, origin);
  c.text.vocab_size = get<int64_t>(t, "text_config.", "vocab_size", 30524, origin);
  c.text.max_position_embeddings = get<int64_t>(t, "text_config.", "max_position_embeddings", 512, origin);
  c.text.layer_norm_eps = get<double>(t, "text_config.", "layer_norm_eps", 1e-12, origin);
  c.text.encoder_width = get<int64_t>(t, "text_config.", "encoder_hidden_size", c.vision.embed_dims, origin);
  c.text.pad_token_id = get<int64_t>(t, "text_config.", "pad_token_id", 0, origin);
  c.embed_dim = get<int64_t>(config, "", "image_text_hidden_size", 256, origin);

  c.tokens.pad = c.text.pad_token_id;
  c.tokens.sep = get<int64_t>(t, "text_config.", "sep_token_id", 102, origin);
  c.tokens.dec = get<int64_t>(t, "text_config.", "bos_token_id", 30522, origin);
  c.tokens.enc = c.tokens.dec + 1;  // BLIP adds [DEC] then [ENC]; the tokenizer, when read, says for sure
  c.max_txt_len = std::min<int64_t>(35, c.text.max_position_embeddings);

  if (preprocessor) {
    const nlohmann::json& p = *preprocessor;
    const std::string& po = preprocessor_origin;
    BLIP_CHECK(p.is_object(), "config: '", po, "' is not a JSON object");
    const int64_t resample = get<int64_t>(p, "", "resample", 3, po);
    BLIP_CHECK(resample == 3, "config: '", po, "' key resample is ", resample,
               "; blip resizes bicubically as Pillow does (resample 3)");
    BLIP_CHECK(get<bool>(p, "", "do_normalize", true, po), "config: '", po,
               "' key do_normalize is false; BLIP's models take normalised pixels");
    BLIP_CHECK(get<bool>(p, "", "do_resize", true, po), "config: '", po,
               "' key do_resize is false; blip resizes every image to the model's image_size");
    const double rescale = get<double>(p, "", "rescale_factor", 1.0 / 255.0, po);
    BLIP_CHECK(get<bool>(p, "", "do_rescale", true, po) && std::abs(rescale * 255.0 - 1.0) < 1e-6, "config: '", po,
               "' rescales pixels by ", rescale, "; blip's pipeline takes pixels / 255");
    if (p.contains("size")) {
      const nlohmann::json& s = p.at("size");
      int64_t h = 0, w = 0;
      if (s.is_number_integer()) {
        h = w = s.get<int64_t>();
      } else {
        h = get<int64_t>(s, "size.", "height", 0, po);
        w = get<int64_t>(s, "size.", "width", 0, po);
      }
      BLIP_CHECK(h == w && h == c.vision.img_size, "config: '", po, "' resizes to ", h, "x", w,
                 " but the model's image_size is ", c.vision.img_size,
                 "; blip resizes to a square of the model's image_size");
    }
    const auto mean = get<std::vector<double>>(p, "", "image_mean", {0.48145466, 0.4578275, 0.40821073}, po);
    const auto stdv = get<std::vector<double>>(p, "", "image_std", {0.26862954, 0.26130258, 0.27577711}, po);
    BLIP_CHECK(mean.size() == 3 && stdv.size() == 3, "config: '", po, "' image_mean and image_std need 3 values, got ",
               mean.size(), " and ", stdv.size());
    for (int ch = 0; ch < 3; ++ch) {
      BLIP_CHECK(stdv[size_t(ch)] > 0, "config: '", po, "' image_std[", ch, "] is ", stdv[size_t(ch)]);
      c.mean[size_t(ch)] = mean[size_t(ch)] * 255.0;
      c.std[size_t(ch)] = stdv[size_t(ch)] * 255.0;
    }
  }
  return c;
}

// config.json for BlipForImageTextRetrieval with c's sizes.
inline nlohmann::json hf_config_json(const BlipConfig& c) {
  nlohmann::json v = {{"model_type", "blip_vision_model"},
                      {"hidden_size", c.vision.embed_dims},
                      {"intermediate_size", c.vision.feedforward_channels},
                      {"num_hidden_layers", c.vision.num_layers},
                      {"num_attention_heads", c.vision.num_heads},
                      {"image_size", c.vision.img_size},
                      {"patch_size", c.vision.patch_size},
                      {"num_channels", c.vision.in_channels},
                      {"layer_norm_eps", c.vision.layer_norm_eps},
                      {"hidden_act", "gelu"}};
  nlohmann::json t = {{"model_type", "blip_text_model"},
                      {"hidden_size", c.text.hidden_size},
                      {"intermediate_size", c.text.intermediate_size},
                      {"num_hidden_layers", c.text.num_hidden_layers},
                      {"num_attention_heads", c.text.num_attention_heads},
                      {"vocab_size", c.text.vocab_size},
                      {"max_position_embeddings", c.text.max_position_embeddings},
                      {"layer_norm_eps", c.text.layer_norm_eps},
                      {"encoder_hidden_size", c.text.encoder_width},
                      {"pad_token_id", c.tokens.pad},
                      {"sep_token_id", c.tokens.sep},
                      {"bos_token_id", c.tokens.dec},
                      {"hidden_act", "gelu"}};
  return {{"architectures", {"BlipForImageTextRetrieval"}},
          {"model_type", "blip"},
          {"image_text_hidden_size", c.embed_dim},
          {"text_config", t},
          {"vision_config", v}};
}

inline nlohmann::json hf_preprocessor_json(const BlipConfig& c) {
  std::vector<double> mean, stdv;
  for (int ch = 0; ch < 3; ++ch) {
    mean.push_back(c.mean[size_t(ch)] / 255.0);
    stdv.push_back(c.std[size_t(ch)] / 255.0);
  }
  return {{"image_processor_type", "BlipImageProcessor"},
          {"do_convert_rgb", true},
          {"do_resize", true},
          {"do_rescale", true},
          {"do_normalize", true},
          {"rescale_factor", 1.0 / 255.0},
          {"resample", 3},
          {"image_mean", mean},
          {"image_std", stdv},
          {"size", {{"height", c.vision.img_size}, {"width", c.vision.img_size}}}};
}

}  // namespace blip::io
