// tests/retrieval_fixtures.hpp — what the data, eval and search tests build on: a temporary
// directory, random PNG files, a vocabulary that fits presets::tiny() and a tiny random model.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "blip/core/rng.hpp"
#include "blip/models/presets.hpp"
#include "blip/text/bert_tokenizer.hpp"
#include "blip/vision/encode.hpp"

namespace fixtures {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "blip_test_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  TempDir(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A PNG of random colours (channels 3, or 1 for gray).
inline void write_random_png(const std::string& path, int64_t h, int64_t w, uint64_t seed, int64_t channels = 3) {
  blip::Generator gen(seed);
  blip::vision::Image img(h, w, channels);
  for (auto& p : img.pixels) p = static_cast<uint8_t>(gen.uniform_int(256));
  blip::vision::write_png(path, img);
}

// 126 tokens in BERT's positions for the specials ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
// [MASK] 103), so that with [DEC] 126 and [ENC] 127 appended it matches presets::tiny().
inline std::string write_tiny_vocab(const std::string& path) {
  static const char* words[] = {"a", "dog", "cat", "on", "the", "beach", "red", "car", "in", "snow", "two", "men",
                                "green", "shirt", "park", "blue", "sky", "white", "house", "tree"};
  std::ofstream out(path);
  for (int i = 0; i < 126; ++i) {
    if (i == 0) out << "[PAD]\n";
    else if (i == 100) out << "[UNK]\n";
    else if (i == 101) out << "[CLS]\n";
    else if (i == 102) out << "[SEP]\n";
    else if (i == 103) out << "[MASK]\n";
    else if (i <= static_cast<int>(std::size(words))) out << words[i - 1] << "\n";
    else out << "[unused" << i << "]\n";
  }
  return path;
}

using TinyModel = blip::StandardBlip<float, blip::Cpu>;

inline std::unique_ptr<TinyModel> tiny_model(uint64_t seed, bool fast_match, int64_t topk = 3) {
  blip::BlipConfig cfg = blip::presets::tiny();
  cfg.fast_match = fast_match;
  cfg.topk = topk;
  auto model = std::make_unique<TinyModel>(cfg);
  blip::Generator gen(seed);
  model->init_weights(gen);
  return model;
}

}  // namespace fixtures
