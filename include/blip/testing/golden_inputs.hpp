// blip/testing/golden_inputs.hpp — checks tokenizer and image golden sets of the reference
// (tokenizer/cases.jsonl; image/manifest.json) against this library.
//
// Contract: run_tokenizer_cases(dir, vocab) returns one CaseResult per golden caption (ids,
// masks and word pieces, raw and after CleanCaption, all exact); run_image_cases(dir) one per
// resize output, decode case and pipeline case (all exact). A set it cannot read gives a failed
// "read" result with the reason.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/eval/retrieval_recall.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/testing/golden_model.hpp"
#include "blip/text/bert_tokenizer.hpp"
#include "blip/text/clean_caption.hpp"
#include "blip/vision/pipeline.hpp"

namespace blip::testing {

inline std::vector<CaseResult> run_tokenizer_cases(const std::filesystem::path& dir, const std::string& vocab_path) {
  std::vector<CaseResult> results;
  try {
    const text::BertTokenizer tok = text::BertTokenizer::blip(vocab_path);
    std::ifstream in(dir / "cases.jsonl");
    BLIP_CHECK(in.good(), "tokenizer golden: cannot open ", (dir / "cases.jsonl").string());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto c = nlohmann::json::parse(line);
      const std::string text = c["text"].get<std::string>(), clean = c["clean_text"].get<std::string>();
      CaseResult r{c["id"].get<std::string>(), 0, 0, true, ""};
      const auto [ids, mask] = tok.encode(text);
      const auto [clean_ids, clean_mask] = tok.encode(clean);
      const std::string cleaned = text::clean_caption(text);
      if (cleaned != clean) r.detail += "clean_text differs; ";
      if (tok.tokenize(text) != c["tokens"].get<std::vector<std::string>>()) r.detail += "tokens differ; ";
      if (ids != c["input_ids"].get<std::vector<int64_t>>() || mask != c["attention_mask"].get<std::vector<int64_t>>())
        r.detail += "input_ids/attention_mask differ; ";
      if (clean_ids != c["clean_input_ids"].get<std::vector<int64_t>>() ||
          clean_mask != c["clean_attention_mask"].get<std::vector<int64_t>>())
        r.detail += "clean ids/mask differ; ";
      r.ok = r.detail.empty();
      r.max_error = r.ok ? 0 : 1;
      results.push_back(r);
    }
  } catch (const std::exception& e) {
    results.push_back({"read", 0, 0, false, e.what()});
  }
  return results;
}

namespace golden_detail {

inline vision::Image image_from(const io::SafeTensorsFile& f, const std::string& key) {
  const auto t = f.load<uint8_t>(key);
  vision::Image img(t.size(0), t.size(1), t.dim() == 3 ? t.size(2) : 1);
  img.pixels = t.to_vector();
  return img;
}

inline CaseResult compare_pixels(const std::string& name, const vision::Image& got, const vision::Image& expected) {
  CaseResult r{name, 0, 0, true, ""};
  if (got.height != expected.height || got.width != expected.width || got.channels != expected.channels) {
    r.ok = false;
    r.detail = str("size ", got.height, "x", got.width, "x", got.channels, " vs ", expected.height, "x", expected.width,
                   "x", expected.channels);
    return r;
  }
  for (size_t i = 0; i < got.pixels.size(); ++i)
    r.max_error = std::max(r.max_error, std::abs(static_cast<double>(got.pixels[i]) - expected.pixels[i]));
  r.ok = r.max_error == 0;
  return r;
}

}  // namespace golden_detail

inline bool topk_indices_differ(const io::SafeTensorsFile& tensors, const std::string& name, int64_t k) {
  for (const char* d : {"i2t", "t2i"}) {
    const auto scores = tensors.load<float>(name + ".score_" + d);
    if (topk(scores, k).indices.to_vector() != tensors.load<int64_t>(name + ".topk_idx_" + d).to_vector()) return true;
  }
  return false;
}

inline std::vector<CaseResult> run_image_cases(const std::filesystem::path& dir) {
  using namespace golden_detail;
  std::vector<CaseResult> results;
  try {
    std::ifstream in(dir / "manifest.json");
    BLIP_CHECK(in.good(), "image golden: cannot open ", (dir / "manifest.json").string());
    const auto m = nlohmann::json::parse(in);
    for (const auto& c : m.value("resize", nlohmann::json::array())) {
      const io::SafeTensorsFile f((dir / c["safetensors"].get<std::string>()).string());
      const vision::Image input = image_from(f, "input");
      for (const auto& o : c["outputs"])
        results.push_back(compare_pixels("resize/" + c["name"].get<std::string>() + "/" + o["tensor"].get<std::string>(),
                                         vision::resize_bicubic(input, o["width"].get<int64_t>(), o["height"].get<int64_t>()),
                                         image_from(f, o["tensor"].get<std::string>())));
    }
    for (const auto& c : m.value("decode", nlohmann::json::array())) {
      const io::SafeTensorsFile f((dir / c["safetensors"].get<std::string>()).string());
      results.push_back(compare_pixels("decode/" + c["name"].get<std::string>(),
                                       vision::load_image((dir / c["file"].get<std::string>()).string()),
                                       image_from(f, "decoded_bgr")));
    }
    for (const auto& c : m.value("pipeline", nlohmann::json::array())) {
      const io::SafeTensorsFile f((dir / c["safetensors"].get<std::string>()).string());
      const auto expected = f.load<float>("pixel_values").to_vector();
      const auto got = vision::load_and_preprocess((dir / c["file"].get<std::string>()).string()).to_vector();
      CaseResult r{"pipeline/" + c["name"].get<std::string>(), 0, 0, got.size() == expected.size(), ""};
      if (r.ok)
        for (size_t i = 0; i < got.size(); ++i) r.max_error = std::max(r.max_error, static_cast<double>(std::abs(got[i] - expected[i])));
      r.ok = r.ok && r.max_error == 0;
      results.push_back(r);
    }
  } catch (const std::exception& e) {
    results.push_back({"read", 0, 0, false, e.what()});
  }
  return results;
}

// retrieval/cases.json + cases.safetensors: the metric dict (values and key order) and the
// top-k indices of every row, exactly.
inline std::vector<CaseResult> run_retrieval_cases(const std::filesystem::path& dir) {
  std::vector<CaseResult> results;
  try {
    std::ifstream in(dir / "cases.json");
    BLIP_CHECK(in.good(), "retrieval golden: cannot open ", (dir / "cases.json").string());
    const auto j = nlohmann::ordered_json::parse(in);  // keeps the reference's key order
    const io::SafeTensorsFile tensors((dir / "cases.safetensors").string());
    for (const auto& [name, c] : j["cases"].items()) {
      const auto gt = c["gt_text_id"].get<std::vector<std::vector<int64_t>>>();
      const auto topk = c["topk"].is_array() ? c["topk"].get<std::vector<int64_t>>() : std::vector<int64_t>{1, 5, 10};
      CaseResult r{name, 0, 0, true, ""};
      const auto metrics = eval::retrieval_recall(tensors.load<float>(name + ".score_i2t"), tensors.load<float>(name + ".score_t2i"), gt, topk);
      std::vector<std::string> expected_keys, keys;
      for (const auto& [key, value] : c["expected"].items()) expected_keys.push_back(key);
      for (const auto& [key, value] : metrics) keys.push_back(key);
      if (keys != expected_keys) r.detail += "keys or their order differ; ";
      for (const auto& [key, value] : metrics)
        if (c["expected"].contains(key)) r.max_error = std::max(r.max_error, std::abs(value - c["expected"][key].get<double>()));
      const int64_t max_k = *std::max_element(topk.begin(), topk.end());
      if (topk_indices_differ(tensors, name, max_k)) r.detail += "top-k indices differ; ";
      r.ok = r.detail.empty() && r.max_error == 0;
      results.push_back(r);
    }
  } catch (const std::exception& e) {
    results.push_back({"read", 0, 0, false, e.what()});
  }
  return results;
}

}  // namespace blip::testing
