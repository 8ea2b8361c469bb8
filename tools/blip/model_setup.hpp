// tools/blip/model_setup.hpp — what the commands that run a trained model share: a preset by
// name, the model loaded from a checkpoint, and a tokenizer checked against the model.
//
// Errors say what to do: an unknown preset lists the known ones, a checkpoint that does not fit
// the preset says so, a vocabulary of the wrong size points at --vocab.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <blip/io/checkpoint_file.hpp>
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

inline std::unique_ptr<CliModel> load_model(const std::string& preset, const BlipConfig& config,
                                            const std::string& checkpoint) {
  BLIP_CHECK(std::filesystem::is_regular_file(checkpoint), "checkpoint '", checkpoint,
             "' not found (pass the model weights with --checkpoint)");
  auto model = std::make_unique<CliModel>(config);
  try {
    // A PyTorch .pth (zip or legacy) or a safetensors file, in any naming (detected from the keys).
    io::with_checkpoint_file(checkpoint, [&](const auto& source) { io::load_state_dict(*model, source); });
  } catch (const Error& e) {
    fail(e.what(), "\n  (is '", checkpoint, "' a BLIP retrieval checkpoint of preset '", preset,
         "'? choose the preset it was trained with: --preset base|tiny)");
  }
  return model;
}

inline text::BertTokenizer load_tokenizer(const std::string& vocab, const BlipConfig& config, const std::string& preset) {
  BLIP_CHECK(std::filesystem::is_regular_file(vocab), "vocabulary '", vocab, "' not found (pass it with --vocab)");
  text::BertTokenizer tok = text::BertTokenizer::blip(vocab, config.max_txt_len);
  BLIP_CHECK(tok.vocab().size() == config.text.vocab_size && tok.token_id("[ENC]") == config.tokens.enc,
             "the vocabulary '", vocab, "' gives ", tok.vocab().size(), " tokens with [DEC] and [ENC] ([ENC] = ",
             tok.token_id("[ENC]"), "), but preset '", preset, "' has ", config.text.vocab_size, " ([ENC] = ",
             config.tokens.enc, "); pass the vocabulary the model was trained with (--vocab)");
  return tok;
}

}  // namespace blip::cli
