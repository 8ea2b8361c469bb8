// Key maps between mmpretrain (ours), Salesforce BLIP / LAVIS and transformers names. The
// expected upstream names are written from their sources: BLIP models/blip_retrieval.py,
// models/vit.py (timm Block: norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2; patch_embed.proj;
// norm), models/med.py (BertModel, add_pooling_layer=False); LAVIS blip_retrieval.py
// (queue_ptr); transformers modeling_blip.py / modeling_blip_text.py.
#include <catch2/catch.hpp>

#include <set>

#include "blip/io/key_maps.hpp"
#include "blip/io/state_dict.hpp"
#include "blip/models/presets.hpp"

using namespace blip;
using namespace blip::io;

namespace {

// BLIP-base's layer counts (so the same 950 names) at a width tests can afford.
BlipConfig base_names_config() {
  BlipConfig c = presets::blip_base();
  c.vision.img_size = 32;
  c.vision.patch_size = 16;
  c.vision.embed_dims = 16;
  c.vision.num_heads = 2;
  c.vision.feedforward_channels = 32;
  c.text.hidden_size = 16;
  c.text.num_attention_heads = 2;
  c.text.intermediate_size = 32;
  c.text.vocab_size = 40;
  c.text.max_position_embeddings = 8;
  c.text.encoder_width = 16;
  c.embed_dim = 8;
  c.queue_size = 8;
  return c;
}

struct Row {
  const char* ours;
  const char* blip;  // "" = no such key
  const char* hf;
};

// Every key outside the layers, and layer 0's.
const std::vector<Row> expected_rows = {
    {"vision_backbone.cls_token", "visual_encoder.cls_token", "vision_model.embeddings.class_embedding"},
    {"vision_backbone.pos_embed", "visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"},
    {"vision_backbone.patch_embed.projection.weight", "visual_encoder.patch_embed.proj.weight",
     "vision_model.embeddings.patch_embedding.weight"},
    {"vision_backbone.patch_embed.projection.bias", "visual_encoder.patch_embed.proj.bias",
     "vision_model.embeddings.patch_embedding.bias"},
    {"vision_backbone.layers.0.ln1.weight", "visual_encoder.blocks.0.norm1.weight",
     "vision_model.encoder.layers.0.layer_norm1.weight"},
    {"vision_backbone.layers.0.ln1.bias", "visual_encoder.blocks.0.norm1.bias",
     "vision_model.encoder.layers.0.layer_norm1.bias"},
    {"vision_backbone.layers.0.attn.qkv.weight", "visual_encoder.blocks.0.attn.qkv.weight",
     "vision_model.encoder.layers.0.self_attn.qkv.weight"},
    {"vision_backbone.layers.0.attn.qkv.bias", "visual_encoder.blocks.0.attn.qkv.bias",
     "vision_model.encoder.layers.0.self_attn.qkv.bias"},
    {"vision_backbone.layers.0.attn.proj.weight", "visual_encoder.blocks.0.attn.proj.weight",
     "vision_model.encoder.layers.0.self_attn.projection.weight"},
    {"vision_backbone.layers.0.attn.proj.bias", "visual_encoder.blocks.0.attn.proj.bias",
     "vision_model.encoder.layers.0.self_attn.projection.bias"},
    {"vision_backbone.layers.0.ln2.weight", "visual_encoder.blocks.0.norm2.weight",
     "vision_model.encoder.layers.0.layer_norm2.weight"},
    {"vision_backbone.layers.0.ln2.bias", "visual_encoder.blocks.0.norm2.bias",
     "vision_model.encoder.layers.0.layer_norm2.bias"},
    {"vision_backbone.layers.0.ffn.layers.0.0.weight", "visual_encoder.blocks.0.mlp.fc1.weight",
     "vision_model.encoder.layers.0.mlp.fc1.weight"},
    {"vision_backbone.layers.0.ffn.layers.0.0.bias", "visual_encoder.blocks.0.mlp.fc1.bias",
     "vision_model.encoder.layers.0.mlp.fc1.bias"},
    {"vision_backbone.layers.0.ffn.layers.1.weight", "visual_encoder.blocks.0.mlp.fc2.weight",
     "vision_model.encoder.layers.0.mlp.fc2.weight"},
    {"vision_backbone.layers.0.ffn.layers.1.bias", "visual_encoder.blocks.0.mlp.fc2.bias",
     "vision_model.encoder.layers.0.mlp.fc2.bias"},
    {"vision_backbone.ln1.weight", "visual_encoder.norm.weight", "vision_model.post_layernorm.weight"},
    {"vision_backbone.ln1.bias", "visual_encoder.norm.bias", "vision_model.post_layernorm.bias"},
    {"text_backbone.embeddings.word_embeddings.weight", "text_encoder.embeddings.word_embeddings.weight",
     "text_encoder.embeddings.word_embeddings.weight"},
    {"text_backbone.embeddings.position_embeddings.weight", "text_encoder.embeddings.position_embeddings.weight",
     "text_encoder.embeddings.position_embeddings.weight"},
    {"text_backbone.embeddings.LayerNorm.weight", "text_encoder.embeddings.LayerNorm.weight",
     "text_encoder.embeddings.LayerNorm.weight"},
    {"text_backbone.embeddings.LayerNorm.bias", "text_encoder.embeddings.LayerNorm.bias",
     "text_encoder.embeddings.LayerNorm.bias"},
    {"text_backbone.embeddings.position_ids", "text_encoder.embeddings.position_ids", ""},
    {"text_backbone.encoder.layer.0.attention.self.query.weight", "text_encoder.encoder.layer.0.attention.self.query.weight",
     "text_encoder.encoder.layer.0.attention.self.query.weight"},
    {"text_backbone.encoder.layer.0.attention.self.query.bias", "text_encoder.encoder.layer.0.attention.self.query.bias",
     "text_encoder.encoder.layer.0.attention.self.query.bias"},
    {"text_backbone.encoder.layer.0.attention.self.key.weight", "text_encoder.encoder.layer.0.attention.self.key.weight",
     "text_encoder.encoder.layer.0.attention.self.key.weight"},
    {"text_backbone.encoder.layer.0.attention.self.key.bias", "text_encoder.encoder.layer.0.attention.self.key.bias",
     "text_encoder.encoder.layer.0.attention.self.key.bias"},
    {"text_backbone.encoder.layer.0.attention.self.value.weight", "text_encoder.encoder.layer.0.attention.self.value.weight",
     "text_encoder.encoder.layer.0.attention.self.value.weight"},
    {"text_backbone.encoder.layer.0.attention.self.value.bias", "text_encoder.encoder.layer.0.attention.self.value.bias",
     "text_encoder.encoder.layer.0.attention.self.value.bias"},
    {"text_backbone.encoder.layer.0.attention.output.dense.weight",
     "text_encoder.encoder.layer.0.attention.output.dense.weight",
     "text_encoder.encoder.layer.0.attention.output.dense.weight"},
    {"text_backbone.encoder.layer.0.attention.output.dense.bias", "text_encoder.encoder.layer.0.attention.output.dense.bias",
     "text_encoder.encoder.layer.0.attention.output.dense.bias"},
    {"text_backbone.encoder.layer.0.attention.output.LayerNorm.weight",
     "text_encoder.encoder.layer.0.attention.output.LayerNorm.weight",
     "text_encoder.encoder.layer.0.attention.output.LayerNorm.weight"},
    {"text_backbone.encoder.layer.0.attention.output.LayerNorm.bias",
     "text_encoder.encoder.layer.0.attention.output.LayerNorm.bias",
     "text_encoder.encoder.layer.0.attention.output.LayerNorm.bias"},
    {"text_backbone.encoder.layer.0.crossattention.self.query.weight",
     "text_encoder.encoder.layer.0.crossattention.self.query.weight",
     "text_encoder.encoder.layer.0.crossattention.self.query.weight"},
    {"text_backbone.encoder.layer.0.crossattention.self.query.bias",
     "text_encoder.encoder.layer.0.crossattention.self.query.bias",
     "text_encoder.encoder.layer.0.crossattention.self.query.bias"},
    {"text_backbone.encoder.layer.0.crossattention.self.key.weight",
     "text_encoder.encoder.layer.0.crossattention.self.key.weight",
     "text_encoder.encoder.layer.0.crossattention.self.key.weight"},
    {"text_backbone.encoder.layer.0.crossattention.self.key.bias",
     "text_encoder.encoder.layer.0.crossattention.self.key.bias",
     "text_encoder.encoder.layer.0.crossattention.self.key.bias"},
    {"text_backbone.encoder.layer.0.crossattention.self.value.weight",
     "text_encoder.encoder.layer.0.crossattention.self.value.weight",
     "text_encoder.encoder.layer.0.crossattention.self.value.weight"},
    {"text_backbone.encoder.layer.0.crossattention.self.value.bias",
     "text_encoder.encoder.layer.0.crossattention.self.value.bias",
     "text_encoder.encoder.layer.0.crossattention.self.value.bias"},
    {"text_backbone.encoder.layer.0.crossattention.output.dense.weight",
     "text_encoder.encoder.layer.0.crossattention.output.dense.weight",
     "text_encoder.encoder.layer.0.crossattention.output.dense.weight"},
    {"text_backbone.encoder.layer.0.crossattention.output.dense.bias",
     "text_encoder.encoder.layer.0.crossattention.output.dense.bias",
     "text_encoder.encoder.layer.0.crossattention.output.dense.bias"},
    {"text_backbone.encoder.layer.0.crossattention.output.LayerNorm.weight",
     "text_encoder.encoder.layer.0.crossattention.output.LayerNorm.weight",
     "text_encoder.encoder.layer.0.crossattention.output.LayerNorm.weight"},
    {"text_backbone.encoder.layer.0.crossattention.output.LayerNorm.bias",
     "text_encoder.encoder.layer.0.crossattention.output.LayerNorm.bias",
     "text_encoder.encoder.layer.0.crossattention.output.LayerNorm.bias"},
    {"text_backbone.encoder.layer.0.intermediate.dense.weight", "text_encoder.encoder.layer.0.intermediate.dense.weight",
     "text_encoder.encoder.layer.0.intermediate.dense.weight"},
    {"text_backbone.encoder.layer.0.intermediate.dense.bias", "text_encoder.encoder.layer.0.intermediate.dense.bias",
     "text_encoder.encoder.layer.0.intermediate.dense.bias"},
    {"text_backbone.encoder.layer.0.output.dense.weight", "text_encoder.encoder.layer.0.output.dense.weight",
     "text_encoder.encoder.layer.0.output.dense.weight"},
    {"text_backbone.encoder.layer.0.output.dense.bias", "text_encoder.encoder.layer.0.output.dense.bias",
     "text_encoder.encoder.layer.0.output.dense.bias"},
    {"text_backbone.encoder.layer.0.output.LayerNorm.weight", "text_encoder.encoder.layer.0.output.LayerNorm.weight",
     "text_encoder.encoder.layer.0.output.LayerNorm.weight"},
    {"text_backbone.encoder.layer.0.output.LayerNorm.bias", "text_encoder.encoder.layer.0.output.LayerNorm.bias",
     "text_encoder.encoder.layer.0.output.LayerNorm.bias"},
    {"vision_neck.weight", "vision_proj.weight", "vision_proj.weight"},
    {"vision_neck.bias", "vision_proj.bias", "vision_proj.bias"},
    {"text_neck.weight", "text_proj.weight", "text_proj.weight"},
    {"text_neck.bias", "text_proj.bias", "text_proj.bias"},
    {"multimodal_head.fc.weight", "itm_head.weight", "itm_head.weight"},
    {"multimodal_head.fc.bias", "itm_head.bias", "itm_head.bias"},
    {"temp", "temp", ""},
    {"head.temp", "", ""},
    {"vision_backbone_m.cls_token", "visual_encoder_m.cls_token", ""},
    {"vision_backbone_m.pos_embed", "visual_encoder_m.pos_embed", ""},
    {"vision_backbone_m.patch_embed.projection.weight", "visual_encoder_m.patch_embed.proj.weight", ""},
    {"vision_backbone_m.layers.0.attn.qkv.weight", "visual_encoder_m.blocks.0.attn.qkv.weight", ""},
    {"vision_backbone_m.layers.0.ffn.layers.1.bias", "visual_encoder_m.blocks.0.mlp.fc2.bias", ""},
    {"vision_backbone_m.ln1.weight", "visual_encoder_m.norm.weight", ""},
    {"text_backbone_m.embeddings.word_embeddings.weight", "text_encoder_m.embeddings.word_embeddings.weight", ""},
    {"text_backbone_m.embeddings.position_ids", "text_encoder_m.embeddings.position_ids", ""},
    {"text_backbone_m.encoder.layer.0.crossattention.self.key.weight",
     "text_encoder_m.encoder.layer.0.crossattention.self.key.weight", ""},
    {"vision_neck_m.weight", "vision_proj_m.weight", ""},
    {"vision_neck_m.bias", "vision_proj_m.bias", ""},
    {"text_neck_m.weight", "text_proj_m.weight", ""},
    {"text_neck_m.bias", "text_proj_m.bias", ""},
    {"head.image_queue", "image_queue", ""},
    {"head.text_queue", "text_queue", ""},
    {"head.idx_queue", "idx_queue", ""},
    {"head.queue_ptr", "ptr_queue", ""},
};

std::optional<std::string> opt(const char* s) { return *s ? std::optional<std::string>(s) : std::nullopt; }

}  // namespace

TEST_CASE("key maps: layer 0 and every non-layer key match the upstream names", "[key_maps]") {
  for (const Row& r : expected_rows) {
    INFO(r.ours);
    CHECK(to_naming(r.ours, KeyNaming::mmpretrain) == std::optional<std::string>(r.ours));
    CHECK(to_naming(r.ours, KeyNaming::blip) == opt(r.blip));
    CHECK(to_naming(r.ours, KeyNaming::hf) == opt(r.hf));
    const std::string lavis = std::string(r.ours) == "head.queue_ptr" ? "queue_ptr" : r.blip;
    CHECK(to_naming(r.ours, KeyNaming::lavis) == opt(lavis.c_str()));
    if (*r.blip) CHECK(from_naming(r.blip, KeyNaming::blip) == std::optional<std::string>(r.ours));
    if (*r.hf) CHECK(from_naming(r.hf, KeyNaming::hf) == std::optional<std::string>(r.ours));
  }
  // Deeper layers keep their index.
  CHECK(to_naming("vision_backbone.layers.11.ffn.layers.0.0.weight", KeyNaming::blip) ==
        std::optional<std::string>("visual_encoder.blocks.11.mlp.fc1.weight"));
  CHECK(to_naming("vision_backbone.layers.10.attn.proj.bias", KeyNaming::hf) ==
        std::optional<std::string>("vision_model.encoder.layers.10.self_attn.projection.bias"));
  // transformers files from before position_ids became non-persistent still load.
  CHECK(from_naming("text_encoder.embeddings.position_ids", KeyNaming::hf) ==
        std::optional<std::string>("text_backbone.embeddings.position_ids"));
}

TEST_CASE("key maps: every BLIP-base key round-trips, without collisions", "[key_maps]") {
  StandardBlip<float> model(base_names_config());
  const StateDict state = export_state_dict(model);
  REQUIRE(state.size() == 950);
  const std::map<KeyNaming, size_t> expected_count = {
      {KeyNaming::mmpretrain, 950}, {KeyNaming::blip, 949}, {KeyNaming::lavis, 949}, {KeyNaming::hf, 472}};
  for (const auto& [naming, count] : expected_count) {
    INFO(naming_name(naming));
    std::set<std::string> theirs;
    for (const std::string& key : state.keys()) {
      const auto mapped = to_naming(key, naming);
      if (!mapped) continue;
      CHECK(theirs.insert(*mapped).second);
      CHECK(from_naming(*mapped, naming) == std::optional<std::string>(key));
    }
    CHECK(theirs.size() == count);
    std::vector<std::string> keys(theirs.begin(), theirs.end());
    CHECK(detect_naming(keys).naming == naming);
  }
}

TEST_CASE("key maps: unknown names, gamma/beta and malformed layer keys", "[key_maps]") {
  CHECK_FALSE(from_naming("text_decoder.bert.embeddings.word_embeddings.weight", KeyNaming::blip));
  CHECK_FALSE(from_naming("visual_encoder.blocks.x.norm1.weight", KeyNaming::blip));
  CHECK_FALSE(from_naming("visual_encoder.blocks.0.attn.qkv_extra.weight", KeyNaming::blip));
  CHECK_FALSE(from_naming("visual_encoderX.cls_token", KeyNaming::blip));
  CHECK_FALSE(from_naming("vision_model.encoder.layers.0.self_attn.proj.weight", KeyNaming::hf));
  CHECK_FALSE(to_naming("multimodal_backbone.encoder.layer.0.output.dense.weight", KeyNaming::blip));
  CHECK(from_naming("text_encoder.encoder.layer.3.output.LayerNorm.gamma", KeyNaming::blip) ==
        std::optional<std::string>("text_backbone.encoder.layer.3.output.LayerNorm.weight"));
  CHECK(from_naming("text_encoder.embeddings.LayerNorm.beta", KeyNaming::hf) ==
        std::optional<std::string>("text_backbone.embeddings.LayerNorm.bias"));
  CHECK(from_naming("queue_ptr", KeyNaming::lavis) == std::optional<std::string>("head.queue_ptr"));
  CHECK_FALSE(from_naming("queue_ptr", KeyNaming::blip));
}

TEST_CASE("key maps: naming detection", "[key_maps]") {
  CHECK(detect_naming({"visual_encoder.cls_token", "ptr_queue"}).naming == KeyNaming::blip);
  CHECK(detect_naming({"visual_encoder.cls_token", "queue_ptr"}).naming == KeyNaming::lavis);
  const DetectedNaming wrapped = detect_naming({"model.visual_encoder.cls_token", "epoch"});
  CHECK(wrapped.naming == KeyNaming::blip);
  CHECK(wrapped.prefix == "model.");
  CHECK(detect_naming({"vision_model.post_layernorm.weight"}).naming == KeyNaming::hf);
  CHECK(detect_naming({"state_dict.vision_backbone.ln1.weight"}).prefix == "state_dict.");
  CHECK_THROWS_WITH(detect_naming({"text_encoder.embeddings.word_embeddings.weight"}),
                    Catch::Contains("give the naming"));
  CHECK_THROWS_WITH(detect_naming({"vision_backbone.ln1.weight", "visual_encoder.norm.weight"}),
                    Catch::Contains("mixes"));
  CHECK_THROWS_WITH(detect_naming({"encoder.weight"}, "x.pth"), Catch::Contains("x.pth") && Catch::Contains("encoder.weight"));
  CHECK(parse_naming("lavis") == KeyNaming::lavis);
  CHECK_THROWS_WITH(parse_naming("timm"), Catch::Contains("timm"));
}
