// tools/blip/model_setup.hpp — what the commands that run a trained model share: a preset by
// name, the model loaded from a checkpoint, and a tokenizer checked against the model.
//
// Errors say what to do: an unknown preset lists the known ones, a checkpoint that does not fit
// the preset says so (from its header, before the model is built), a vocabulary of the wrong
// size points at --vocab; a checkpoint that cannot be read says why, without the preset hint.
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <blip/io/checkpoint_file.hpp>
#include <blip/io/regular_file.hpp>
#include <blip/io/model_state.hpp>
#include <blip/models/presets.hpp>
#include <blip/text/bert_tokenizer.hpp>

namespace blip::cli {

using CliModel = StandardBlip<float, Cpu>;

inline BlipConfig preset_config(const std::string& name) {
  if (name == "base") return presets::blip_base();
  if (name == "tiny") return presets::tiny();
  fail("unknown preset '", name, "' (known: base, tiny)");
}

// A few tensors whose shapes follow from the preset: compared with the checkpoint's header
// before the model is built (BLIP-base takes 1.9 GB and seconds to build). Keys the checkpoint
// lacks are left to load_state_dict, which names them.
template <class Source>
void check_checkpoint_fits(const Source& source, const BlipConfig& c, const std::string& preset,
                           const std::string& checkpoint) {
  const std::vector<std::string> keys = source.keys();
  const io::DetectedNaming naming = io::detect_naming(keys, checkpoint);
  std::map<std::string, std::string> theirs;  // our name -> the checkpoint's key
  for (const std::string& key : keys)
    if (key.compare(0, naming.prefix.size(), naming.prefix) == 0)
      if (const auto ours = io::from_naming(key.substr(naming.prefix.size()), naming.naming)) theirs.emplace(*ours, key);
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"vision_backbone.cls_token", {1, 1, c.vision.embed_dims}},
      {"vision_neck.weight", {c.embed_dim, c.vision.embed_dims}},
      {"text_backbone.embeddings.word_embeddings.weight", {c.text.vocab_size, c.text.hidden_size}},
      {"text_neck.weight", {c.embed_dim, c.text.hidden_size}}};
  for (const auto& [name, shape] : expected) {
    const auto it = theirs.find(name);
    if (it == theirs.end()) continue;
    BLIP_CHECK(source.shape(it->second) == shape, "checkpoint '", checkpoint, "' tensor '", it->second, "' has shape ",
               source.shape(it->second), " but preset '", preset, "' needs ", shape,
               ": choose the preset the checkpoint was trained with (--preset base|tiny)");
  }
}

// Opening the file comes first, so a missing, unreadable or malformed checkpoint is reported as
// such; only a checkpoint that reads but does not fit gets the --preset hint.
inline std::unique_ptr<CliModel> load_model(const std::string& preset, const BlipConfig& config,
                                            const std::string& checkpoint) {
  std::error_code ec;
  BLIP_CHECK(std::filesystem::exists(checkpoint, ec), "checkpoint '", checkpoint,
             "' not found (pass the model weights with --checkpoint)");
  // A PyTorch .pth (zip or legacy) or a safetensors file, in any naming (detected from the keys).
  return io::with_checkpoint_file(checkpoint, [&](const auto& source) {
    check_checkpoint_fits(source, config, preset, checkpoint);
    auto model = std::make_unique<CliModel>(config);
    try {
      io::load_state_dict(*model, source);
    } catch (const Error& e) {
      fail(e.what(), "\n  (is '", checkpoint, "' a BLIP retrieval checkpoint of preset '", preset,
           "'? choose the preset it was trained with: --preset base|tiny)");
    }
    return model;
  });
}

// Scores or features the model produced must be finite: NaN/inf weights (a damaged or diverged
// checkpoint) would otherwise give an index every search refuses, or recall from NaN scores.
inline void check_finite_output(const Tensor<float, Cpu>& t, const char* what, const std::string& checkpoint) {
  const std::vector<float> v = t.to_vector();
  size_t bad = 0;
  for (float x : v) bad += std::isfinite(x) ? 0 : 1;
  BLIP_CHECK(bad == 0, "the model gives ", bad, " non-finite values among the ", v.size(), " ", what,
             " with checkpoint '", checkpoint, "' (are its weights damaged or diverged?)");
}

inline text::BertTokenizer load_tokenizer(const std::string& vocab, const BlipConfig& config, const std::string& preset) {
  std::error_code ec;
  BLIP_CHECK(std::filesystem::exists(vocab, ec), "vocabulary '", vocab, "' not found (pass it with --vocab)");
  { const io::RegularFile check(vocab, "vocabulary"); }  // a directory or FIFO is named, not waited on
  text::BertTokenizer tok = text::BertTokenizer::blip(vocab, config.max_txt_len);
  BLIP_CHECK(tok.vocab().size() == config.text.vocab_size && tok.token_id("[ENC]") == config.tokens.enc,
             "the vocabulary '", vocab, "' gives ", tok.vocab().size(), " tokens with [DEC] and [ENC] ([ENC] = ",
             tok.token_id("[ENC]"), "), but preset '", preset, "' has ", config.text.vocab_size, " ([ENC] = ",
             config.tokens.enc, "); pass the vocabulary the model was trained with (--vocab)");
  return tok;
}

}  // namespace blip::cli
