// blip/io/key_maps.hpp — state-dict key names of BLIP retrieval in each project, mapped to and
// from ours (mmpretrain's), and recognised from a checkpoint's keys.
//
// Contract:
// - Namings: mmpretrain (ours: vision_backbone / text_backbone / *_neck / multimodal_head /
//   head.*_queue / temp and head.temp), blip (Salesforce BLIP: visual_encoder.blocks.N,
//   text_encoder, vision_proj, text_proj, itm_head, *_m, image_queue, ptr_queue, temp), lavis
//   (as blip but `queue_ptr`), hf (transformers BlipForImageTextRetrieval:
//   vision_model.embeddings / encoder.layers.N / post_layernorm, text_encoder, vision_proj,
//   text_proj, itm_head; no momentum copies, queues or temp). docs/checkpoints.md has the tables.
// - to_naming(ours, n): the key in naming n, or nullopt where n has no such key (hf: momentum,
//   queues, temp, position_ids; blip/lavis/hf: `head.temp`, which is `temp`, and a separate
//   `multimodal_backbone`). from_naming(key, n): our key, or nullopt for a key n does not
//   define. Both are string rewrites: every naming stores the same tensors in the same layout
//   (fused ViT qkv rows q;k;v, conv patch weights [D, C, p, p], pos_embed [1, 1 + g*g, D],
//   split BERT q/k/v), so no tensor changes shape. Old BERT names `LayerNorm.gamma`/`.beta` are
//   read as `.weight`/`.bias` (as transformers does).
// - detect_naming(keys): the naming whose vision/text prefixes the keys use, and a common
//   wrapper prefix ("model." in BLIP's .pth files, "state_dict." in mmengine's, "module.")
//   under which the model's keys sit (keys outside it are not the model's: optimizer state,
//   epoch, ...); an error when no naming matches or the keys are ambiguous (text-only
//   "text_encoder.*": give the naming).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blip/core/error.hpp"

namespace blip::io {

enum class KeyNaming { mmpretrain, blip, lavis, hf };

inline const char* naming_name(KeyNaming n) {
  switch (n) {
    case KeyNaming::mmpretrain: return "mmpretrain";
    case KeyNaming::blip: return "blip";
    case KeyNaming::lavis: return "lavis";
    case KeyNaming::hf: return "hf";
  }
  return "?";
}

inline KeyNaming parse_naming(const std::string& name) {
  if (name == "mmpretrain") return KeyNaming::mmpretrain;
  if (name == "blip" || name == "salesforce") return KeyNaming::blip;
  if (name == "lavis") return KeyNaming::lavis;
  if (name == "hf" || name == "transformers") return KeyNaming::hf;
  fail("key naming '", name, "' is not one of mmpretrain, blip, lavis, hf");
}

namespace key_maps {

struct Rename {
  std::string_view ours, theirs;
};

// `key` with the leading dotted components `from` replaced by `to` (whole components only).
inline std::optional<std::string> swap_prefix(const std::string& key, std::string_view from, std::string_view to) {
  if (key.size() < from.size() || key.compare(0, from.size(), from) != 0) return std::nullopt;
  if (key.size() > from.size() && key[from.size()] != '.') return std::nullopt;
  return std::string(to) + key.substr(from.size());
}

inline std::optional<std::string> rename_first(const std::string& key, const std::vector<Rename>& rules, bool to_theirs) {
  for (const Rename& r : rules)
    if (auto out = swap_prefix(key, to_theirs ? r.ours : r.theirs, to_theirs ? r.theirs : r.ours)) return out;
  return std::nullopt;
}

// A ViT naming: names outside the layers, the layer list, and names inside a layer.
struct VitNames {
  std::vector<Rename> top;
  std::string_view ours_layers, theirs_layers;
  std::vector<Rename> layer;
};

inline const VitNames& vit_names(KeyNaming n) {
  // timm's VisionTransformer (models/vit.py in BLIP and LAVIS).
  static const VitNames timm{{{"cls_token", "cls_token"}, {"pos_embed", "pos_embed"},
                              {"patch_embed.projection", "patch_embed.proj"}, {"ln1", "norm"}},
                             "layers", "blocks",
                             {{"ln1", "norm1"}, {"ln2", "norm2"}, {"attn.qkv", "attn.qkv"}, {"attn.proj", "attn.proj"},
                              {"ffn.layers.0.0", "mlp.fc1"}, {"ffn.layers.1", "mlp.fc2"}}};
  // transformers' BlipVisionModel (modeling_blip.py).
  static const VitNames hf{{{"cls_token", "embeddings.class_embedding"}, {"pos_embed", "embeddings.position_embedding"},
                            {"patch_embed.projection", "embeddings.patch_embedding"}, {"ln1", "post_layernorm"}},
                           "layers", "encoder.layers",
                           {{"ln1", "layer_norm1"}, {"ln2", "layer_norm2"}, {"attn.qkv", "self_attn.qkv"},
                            {"attn.proj", "self_attn.projection"}, {"ffn.layers.0.0", "mlp.fc1"}, {"ffn.layers.1", "mlp.fc2"}}};
  static const VitNames same{{}, "layers", "layers", {}};
  switch (n) {
    case KeyNaming::blip:
    case KeyNaming::lavis: return timm;
    case KeyNaming::hf: return hf;
    default: return same;
  }
}

// Renames a key relative to the ViT (no module prefix) to or from naming n.
inline std::optional<std::string> map_vit(const std::string& rel, KeyNaming n, bool to_theirs) {
  const VitNames& v = vit_names(n);
  if (n == KeyNaming::mmpretrain) return rel;
  const std::string_view from_layers = to_theirs ? v.ours_layers : v.theirs_layers;
  const std::string_view to_layers = to_theirs ? v.theirs_layers : v.ours_layers;
  if (auto inner = swap_prefix(rel, from_layers, "")) {  // ".N.rest"
    const std::string s = *inner;
    const size_t dot = s.find('.', 1);
    if (s.size() < 2 || s[0] != '.' || dot == std::string::npos) return std::nullopt;
    const std::string index = s.substr(1, dot - 1);
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    const auto rest = rename_first(s.substr(dot + 1), v.layer, to_theirs);
    if (!rest) return std::nullopt;
    return std::string(to_layers) + "." + index + "." + *rest;
  }
  return rename_first(rel, v.top, to_theirs);
}

// Module-level renames: (ours, theirs, is_vit). Order matters only for overlapping prefixes.
struct ModuleRename {
  std::string_view ours, theirs;
  bool vit;
};

inline std::vector<ModuleRename> module_names(KeyNaming n) {
  switch (n) {
    case KeyNaming::mmpretrain:
      return {{"vision_backbone", "vision_backbone", true},   {"vision_backbone_m", "vision_backbone_m", true},
              {"text_backbone", "text_backbone", false},     {"text_backbone_m", "text_backbone_m", false},
              {"multimodal_backbone", "multimodal_backbone", false},
              {"vision_neck", "vision_neck", false},         {"vision_neck_m", "vision_neck_m", false},
              {"text_neck", "text_neck", false},             {"text_neck_m", "text_neck_m", false},
              {"multimodal_head", "multimodal_head", false}, {"head", "head", false},
              {"temp", "temp", false}};
    case KeyNaming::blip:
    case KeyNaming::lavis:
      return {{"vision_backbone", "visual_encoder", true},  {"vision_backbone_m", "visual_encoder_m", true},
              {"text_backbone", "text_encoder", false},     {"text_backbone_m", "text_encoder_m", false},
              {"vision_neck", "vision_proj", false},        {"vision_neck_m", "vision_proj_m", false},
              {"text_neck", "text_proj", false},            {"text_neck_m", "text_proj_m", false},
              {"multimodal_head.fc", "itm_head", false},    {"head.image_queue", "image_queue", false},
              {"head.text_queue", "text_queue", false},     {"head.idx_queue", "idx_queue", false},
              {"head.queue_ptr", n == KeyNaming::blip ? "ptr_queue" : "queue_ptr", false},
              {"temp", "temp", false}};
    case KeyNaming::hf:
      return {{"vision_backbone", "vision_model", true}, {"text_backbone", "text_encoder", false},
              {"vision_neck", "vision_proj", false},     {"text_neck", "text_proj", false},
              {"multimodal_head.fc", "itm_head", false}};
  }
  return {};
}

}  // namespace key_maps

// Our (mmpretrain) key in naming n; nullopt where n has no such key.
inline std::optional<std::string> to_naming(const std::string& ours, KeyNaming n) {
  // transformers registers position_ids non-persistent (older files hold it; from_naming reads it).
  const std::string_view ids = ".embeddings.position_ids";
  if (n == KeyNaming::hf && ours.size() > ids.size() && ours.compare(ours.size() - ids.size(), ids.size(), ids) == 0)
    return std::nullopt;
  for (const auto& m : key_maps::module_names(n)) {
    auto rel = key_maps::swap_prefix(ours, m.ours, "");
    if (!rel) continue;
    if (rel->empty()) return std::string(m.theirs);
    std::string inner = rel->substr(1);
    if (m.vit) {
      auto mapped = key_maps::map_vit(inner, n, true);
      if (!mapped) return std::nullopt;
      inner = *mapped;
    }
    return std::string(m.theirs) + "." + inner;
  }
  return std::nullopt;
}

// A key of naming n as our (mmpretrain) key; nullopt for a key n does not define.
inline std::optional<std::string> from_naming(const std::string& key, KeyNaming n) {
  std::string k = key;
  for (const auto& [old_suffix, new_suffix] : {std::pair{".gamma", ".weight"}, std::pair{".beta", ".bias"}}) {
    const std::string_view o(old_suffix);
    if (k.size() > o.size() && k.compare(k.size() - o.size(), o.size(), o) == 0 &&
        k.find("LayerNorm") != std::string::npos)
      k = k.substr(0, k.size() - o.size()) + new_suffix;
  }
  for (const auto& m : key_maps::module_names(n)) {
    auto rel = key_maps::swap_prefix(k, m.theirs, "");
    if (!rel) continue;
    if (rel->empty()) return std::string(m.ours);
    std::string inner = rel->substr(1);
    if (m.vit) {
      auto mapped = key_maps::map_vit(inner, n, false);
      if (!mapped) return std::nullopt;
      inner = *mapped;
    }
    return std::string(m.ours) + "." + inner;
  }
  return std::nullopt;
}

struct DetectedNaming {
  KeyNaming naming = KeyNaming::mmpretrain;
  std::string prefix;  // the wrapper prefix the model's keys sit under ("" when none)
};

inline DetectedNaming detect_naming(const std::vector<std::string>& keys, const std::string& where = "checkpoint") {
  auto starts = [](const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; };
  for (const std::string prefix : {"", "model.", "state_dict.", "module.", "model.module."}) {
    bool mm = false, blip = false, hf = false, text_encoder = false, lavis_ptr = false, blip_ptr = false;
    for (const std::string& key : keys) {
      if (!starts(key, prefix)) continue;
      const std::string k = key.substr(prefix.size());
      mm |= starts(k, "vision_backbone.") || starts(k, "text_backbone.");
      blip |= starts(k, "visual_encoder.");
      hf |= starts(k, "vision_model.");
      text_encoder |= starts(k, "text_encoder.");
      lavis_ptr |= k == "queue_ptr";
      blip_ptr |= k == "ptr_queue";
    }
    const int kinds = int(mm) + int(blip) + int(hf);
    BLIP_CHECK(kinds <= 1, "key naming: '", where, "' mixes the prefixes of several namings (vision_backbone: ", mm,
               ", visual_encoder: ", blip, ", vision_model: ", hf, "); give the naming");
    if (mm) return {KeyNaming::mmpretrain, prefix};
    if (blip) return {lavis_ptr && !blip_ptr ? KeyNaming::lavis : KeyNaming::blip, prefix};
    if (hf) return {KeyNaming::hf, prefix};
    BLIP_CHECK(!text_encoder, "key naming: '", where, "' has text_encoder.* keys but no vision keys, which blip, "
               "lavis and hf share; give the naming");
  }
  fail("key naming: '", where, "' (", keys.size(), " keys, e.g. '", keys.empty() ? std::string() : keys.front(),
       "') uses none of the known namings (vision_backbone.* = mmpretrain, visual_encoder.* = blip/lavis, "
       "vision_model.* = hf)");
}

}  // namespace blip::io
