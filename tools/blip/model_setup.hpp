// tools/blip/model_setup.hpp — what the commands that run a trained model share: the model
// options (--checkpoint, --preset, --config, --vocab) and the model they load.
//
// --checkpoint is a checkpoint file or a model folder (blip's, transformers', the HF hub's);
// the model describes itself (include/blip/pretrained/model_folder.hpp). --preset and --config
// give the sizes of a file that records none, and must agree with one that does. Errors say
// what to do: an unknown preset lists the known ones, a checkpoint that does not fit the config
// says so from its header before the model is built, a vocabulary of the wrong size points at
// --vocab; a checkpoint that cannot be read says why.
#pragma once

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <blip/io/hf_config.hpp>
#include <blip/models/presets.hpp>
#include <blip/pretrained/model_folder.hpp>

#include "commands.hpp"

namespace blip::cli {

using CliModel = StandardBlip<float, Cpu>;
template <Device D>
using CliModelOn = StandardBlip<float, D>;  // the model of a command that runs on --device

inline const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names{"base", "large", "tiny"};
  return names;
}

inline BlipConfig preset_config(const std::string& name) {
  if (name == "base") return presets::blip_base();
  if (name == "large") return presets::blip_large();
  if (name == "tiny") return presets::tiny();
  fail("unknown preset '", name, "' (known: base, large, tiny)");
}

// A --config file: blip's layout or transformers' config.json (with the preprocessor_config.json
// beside it, when there is one).
inline BlipConfig config_from_file(const std::string& path) {
  const nlohmann::json j = io::read_json_file(path, "config", uint64_t{16} << 20);
  if (io::is_blip_config_json(j)) return io::blip_config_from_json(j, path);
  if (io::is_hf_blip_config_json(j)) {
    const auto pre = std::filesystem::path(path).parent_path() / "preprocessor_config.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(pre, ec)) {
      const nlohmann::json p = io::read_json_file(pre.string(), "preprocessor config", uint64_t{16} << 20);
      return io::blip_config_from_hf(j, &p, path, pre.string());
    }
    return io::blip_config_from_hf(j, nullptr, path);
  }
  fail("config '", path, "' is neither blip's config layout (vision / text / itc_head keys) nor transformers' "
       "BlipConfig (vision_config / text_config)");
}

struct ModelChoice {
  std::string checkpoint, preset, config, vocab;

  bool has_config() const { return !preset.empty() || !config.empty(); }
  std::string config_name() const {
    return !config.empty() ? str("config '", config, "'") : !preset.empty() ? str("preset '", preset, "'") : "";
  }
  std::optional<BlipConfig> given_config() const {
    if (!config.empty()) return config_from_file(config);
    if (!preset.empty()) return preset_config(preset);
    return std::nullopt;
  }
  // How the library resolves the model: the given sizes, the vocabulary, the shipped default.
  pretrained::PretrainedOptions options(bool need_tokenizer = true) const {
    pretrained::PretrainedOptions o;
    o.config = given_config();
    o.config_name = config_name();
    o.vocab = vocab;
    o.default_vocab = default_vocab_path();
    o.need_tokenizer = need_tokenizer;
    return o;
  }
};

inline void add_model_options(CLI::App* cmd, ModelChoice& m, const char* checkpoint_help = nullptr) {
  cmd->add_option("--checkpoint", m.checkpoint,
                  checkpoint_help ? checkpoint_help
                                  : "Model: a checkpoint (.safetensors, .pth, .bin; mmpretrain, BLIP, LAVIS or HF "
                                    "names) or a model folder (blip's, transformers' save_pretrained, the HF hub's)")
      ->required();
  auto* preset = cmd->add_option("--preset", m.preset,
                                 "Sizes for a checkpoint that records none: base, large, tiny (must agree with one "
                                 "that does)")
                     ->check(CLI::IsMember(preset_names()));
  cmd->add_option("--config", m.config, "Sizes as a JSON file (blip's config.json or transformers' BlipConfig)")
      ->excludes(preset);
  cmd->add_option("--vocab", m.vocab,
                  "Vocabulary (vocab.txt or tokenizer.json) instead of the model's own (default: the one beside or "
                  "in the checkpoint, else the installed bert-base-uncased)");
}

// The model (on device D) and its tokenizer (when need_tokenizer, or when one is found).
template <Device D = Cpu>
pretrained::Pretrained<CliModelOn<D>> load_model(const ModelChoice& m, bool need_tokenizer = true,
                                                 const std::function<void(BlipConfig&)>& adjust = {}) {
  pretrained::PretrainedOptions o = m.options(need_tokenizer);
  o.adjust = adjust;  // settings that leave the weights alone (topk, fast_match)
  return pretrained::load_pretrained<CliModelOn<D>>(m.checkpoint, o);
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

}  // namespace blip::cli
