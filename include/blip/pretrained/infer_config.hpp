// blip/pretrained/infer_config.hpp — a BlipConfig read off a checkpoint's tensor shapes, for
// the files that carry no config: Salesforce BLIP / LAVIS and mmpretrain .pth files.
//
// Contract: infer_blip_config(source) detects the key naming (io/key_maps.hpp) and takes every
// size from the shapes: ViT width, layers, MLP width, patch and image size (pos_embed =
// 1 + (img/patch)^2 tokens) and input channels; BERT width, layers, intermediate size, vocab,
// positions and the cross-attention's encoder width; the necks' embed_dim; the queue size when
// the file holds the queues. What shapes cannot tell is the convention of every released BLIP:
// heads = width / 64 (ViT-B 12, ViT-L 16, BERT-base 12), layer-norm eps 1e-6 for the ViT (1e-5
// in transformers' naming) and 1e-12 for BERT, BLIP-base's token ids, temperature, mean and std.
// A tensor missing or of an impossible shape throws blip::Error naming the file and the key.
#pragma once

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "blip/io/key_maps.hpp"
#include "blip/io/tensor_source.hpp"
#include "blip/models/presets.hpp"

namespace blip::pretrained {

template <io::TensorSource S>
BlipConfig infer_blip_config(const S& source) {
  const std::vector<std::string> keys = source.keys();
  const io::DetectedNaming naming = io::detect_naming(keys, source.path());
  std::map<std::string, std::string> ours;  // our name -> the file's key
  for (const std::string& key : keys)
    if (key.compare(0, naming.prefix.size(), naming.prefix) == 0)
      if (auto o = io::from_naming(key.substr(naming.prefix.size()), naming.naming)) ours.emplace(*o, key);

  auto shape_of = [&](const std::string& name, size_t rank) {
    const auto it = ours.find(name);
    BLIP_CHECK(it != ours.end(), "checkpoint '", source.path(), "' has no tensor for '", name,
               "' (", io::naming_name(naming.naming), " naming), so its sizes cannot be read off its shapes; "
               "give them with --config or --preset");
    const Shape s = source.shape(it->second);
    BLIP_CHECK(s.size() == rank, "checkpoint '", source.path(), "' tensor '", it->second, "' has shape ", s,
               ", not of rank ", rank);
    for (int64_t d : s) BLIP_CHECK(d > 0, "checkpoint '", source.path(), "' tensor '", it->second, "' has shape ", s);
    return s;
  };
  auto count_layers = [&](const std::string& prefix) {
    std::set<int64_t> seen;
    for (const auto& [name, key] : ours) {
      if (name.compare(0, prefix.size(), prefix) != 0) continue;
      const size_t end = name.find('.', prefix.size());
      const std::string index = name.substr(prefix.size(), end - prefix.size());
      if (!index.empty() && index.size() < 6 && index.find_first_not_of("0123456789") == std::string::npos)
        seen.insert(std::stoll(index));
    }
    const int64_t n = static_cast<int64_t>(seen.size());
    BLIP_CHECK(n > 0 && *seen.rbegin() == n - 1, "checkpoint '", source.path(), "' layers under '", prefix,
               "' are not numbered 0..", n - 1);
    return n;
  };
  auto heads_of = [&](int64_t width, const char* what) {
    BLIP_CHECK(width % 64 == 0, "checkpoint '", source.path(), "' ", what, " width ", width,
               " is not a multiple of 64, so its number of heads cannot be assumed; give it with --config");
    return width / 64;
  };

  BlipConfig c = presets::blip_base();
  const Shape patch = shape_of("vision_backbone.patch_embed.projection.weight", 4);
  const Shape pos = shape_of("vision_backbone.pos_embed", 3);
  c.vision.embed_dims = patch[0];
  c.vision.in_channels = patch[1];
  c.vision.patch_size = patch[2];
  BLIP_CHECK(patch[2] == patch[3], "checkpoint '", source.path(), "' patch embedding ", patch, " is not square");
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(double(pos[1] - 1))));
  BLIP_CHECK(pos[2] == c.vision.embed_dims && grid * grid == pos[1] - 1, "checkpoint '", source.path(),
             "' position embedding ", pos, " is not 1 + a square grid of width ", c.vision.embed_dims);
  c.vision.img_size = grid * c.vision.patch_size;
  c.vision.num_layers = count_layers("vision_backbone.layers.");
  c.vision.feedforward_channels = shape_of("vision_backbone.layers.0.ffn.layers.0.0.weight", 2)[0];
  c.vision.num_heads = heads_of(c.vision.embed_dims, "ViT");
  c.vision.layer_norm_eps = naming.naming == io::KeyNaming::hf ? 1e-5 : 1e-6;

  const Shape words = shape_of("text_backbone.embeddings.word_embeddings.weight", 2);
  c.text.vocab_size = words[0];
  c.text.hidden_size = words[1];
  c.text.max_position_embeddings = shape_of("text_backbone.embeddings.position_embeddings.weight", 2)[0];
  c.text.num_hidden_layers = count_layers("text_backbone.encoder.layer.");
  c.text.intermediate_size = shape_of("text_backbone.encoder.layer.0.intermediate.dense.weight", 2)[0];
  c.text.encoder_width = shape_of("text_backbone.encoder.layer.0.crossattention.self.key.weight", 2)[1];
  c.text.num_attention_heads = heads_of(c.text.hidden_size, "BERT");
  c.embed_dim = shape_of("vision_neck.weight", 2)[0];
  c.max_txt_len = std::min<int64_t>(c.max_txt_len, c.text.max_position_embeddings);
  if (ours.count("head.image_queue")) c.queue_size = shape_of("head.image_queue", 2)[1];
  // BLIP-base's ids fit the BERT vocabulary plus [DEC] and [ENC]; another vocabulary says its own.
  if (c.text.vocab_size != 30524) c.tokens.dec = c.text.vocab_size - 2, c.tokens.enc = c.text.vocab_size - 1;
  return c;
}

}  // namespace blip::pretrained
