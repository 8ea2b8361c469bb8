// blip/pretrained/self_describing.hpp — what blip writes so that a checkpoint describes itself:
// its config and its vocabulary in the safetensors metadata, a config.json beside it, and for
// transformers the files of a HuggingFace folder.
//
// Contract:
// - model_metadata(config, vocab): {"format": "pt", "blip.config": the config as JSON
//   (io/config_json.hpp), "blip.vocab_fingerprint": vocab_fingerprint(vocab)}, plus the vocabulary
//   itself under "blip.vocab" when it has at most kEmbedVocabMax tokens (a small model's own
//   vocabulary travels with it; bert-base-uncased's 30524 are recognised by fingerprint).
// - write_config_beside(weights, config): config.json in the weights' folder, unless a config.json
//   that is not blip's is there (a HuggingFace folder's own): then nothing, and false.
// - write_hf_folder_files(folder, config, vocab): config.json (BlipForImageTextRetrieval),
//   preprocessor_config.json, and with a vocab vocab.txt and tokenizer_config.json ([DEC] as
//   bos_token, [ENC] as an extra special token), which transformers' from_pretrained reads.
// Files are written atomically (io/atomic_file.hpp).
#pragma once

#include <filesystem>
#include <map>

#include "blip/io/atomic_file.hpp"
#include "blip/io/config_json.hpp"
#include "blip/io/hf_config.hpp"
#include "blip/pretrained/model_folder.hpp"

namespace blip::pretrained {

inline constexpr int64_t kEmbedVocabMax = 4096;

inline std::map<std::string, std::string> model_metadata(const BlipConfig& config, const text::Vocab* vocab) {
  std::map<std::string, std::string> m{{"format", "pt"}, {kConfigKey, io::blip_config_to_json(config).dump()}};
  if (vocab) {
    m[kVocabFingerprintKey] = vocab_fingerprint(*vocab);
    if (vocab->size() <= kEmbedVocabMax) m[kVocabKey] = vocab->text();
  }
  return m;
}

inline void write_text_file(const std::string& path, const std::string& text) {
  io::write_file_atomically(path, text.data(), text.size());
}

inline bool write_config_beside(const std::string& weights, const BlipConfig& config) {
  namespace fs = std::filesystem;
  fs::path folder = fs::path(weights).parent_path();
  if (folder.empty()) folder = ".";
  const fs::path path = folder / "config.json";
  std::error_code ec;
  if (fs::exists(path, ec)) {
    bool ours = false;
    try {
      ours = io::is_blip_config_json(io::read_json_file(path.string(), "config", uint64_t{16} << 20));
    } catch (const Error&) {
    }
    if (!ours) return false;
  }
  write_text_file(path.string(), io::blip_config_to_json(config).dump(1) + "\n");
  return true;
}

inline void write_hf_folder_files(const std::string& folder, const BlipConfig& config, const text::Vocab* vocab) {
  namespace fs = std::filesystem;
  const fs::path f(folder.empty() ? "." : folder);
  write_text_file((f / "config.json").string(), io::hf_config_json(config).dump(2) + "\n");
  write_text_file((f / "preprocessor_config.json").string(), io::hf_preprocessor_json(config).dump(2) + "\n");
  if (!vocab) return;
  write_text_file((f / "vocab.txt").string(), vocab->text());
  const nlohmann::json tok = {{"tokenizer_class", "BertTokenizer"},
                              {"do_lower_case", true},
                              {"tokenize_chinese_chars", true},
                              {"strip_accents", nullptr},
                              {"unk_token", "[UNK]"},
                              {"sep_token", "[SEP]"},
                              {"pad_token", "[PAD]"},
                              {"cls_token", "[CLS]"},
                              {"mask_token", "[MASK]"},
                              {"bos_token", "[DEC]"},
                              {"additional_special_tokens", {"[ENC]"}},
                              {"model_max_length", config.text.max_position_embeddings}};
  write_text_file((f / "tokenizer_config.json").string(), tok.dump(2) + "\n");
}

}  // namespace blip::pretrained
