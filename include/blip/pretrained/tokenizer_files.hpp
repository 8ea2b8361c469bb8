// blip/pretrained/tokenizer_files.hpp — the BLIP tokenizer from the files a model comes with:
// HF tokenizers' tokenizer.json, or vocab.txt with transformers' tokenizer_config.json, or the
// vocabulary a blip checkpoint embeds; and the fingerprint a checkpoint records of its vocabulary.
//
// Contract:
// - tokenizer_from_tokenizer_json(path, max_length): a WordPiece model ("##" continuations)
//   with BertNormalizer (lowercase, clean_text, CJK spacing; accents stripped as lowercase
//   implies) and BertPreTokenizer: what BertTokenizer implements. Vocabulary = model.vocab by
//   id (ids 0..n-1, each once), then the added tokens above n in id order. Any other normaliser,
//   pre-tokeniser, model or a cased tokenizer is refused by name.
// - tokenizer_from_vocab_txt(vocab, config_files, max_length): vocab.txt, then the special
//   tokens the config files (tokenizer_config.json, special_tokens_map.json) name: bos_token,
//   then additional_special_tokens or extra_special_tokens; those the vocabulary lacks are
//   appended in that order. When none names any, BLIP's [DEC] and [ENC]. do_lower_case false is
//   refused.
// - vocab_fingerprint(vocab): "crc32:<8 hex>:<count>" over Vocab::text(); equal vocabularies
//   give equal fingerprints.
// Files are read bounded (64 MiB) and parsed with bounded depth; errors name the file and key.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "blip/io/crc32.hpp"
#include "blip/io/json_text.hpp"
#include "blip/io/regular_file.hpp"
#include "blip/text/bert_tokenizer.hpp"

namespace blip::pretrained {

inline std::string vocab_fingerprint(const text::Vocab& vocab) {
  const std::string t = vocab.text();
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", io::crc32(io::crc32_init(), t.data(), t.size()));
  return str("crc32:", hex, ":", vocab.size());
}

namespace tokenizer_detail {

// "[DEC]" or {"content": "[DEC]", ...}, as transformers writes special tokens.
inline std::string token_text(const nlohmann::json& j, const std::string& path, const char* key) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j.at("content").is_string()) return j.at("content").get<std::string>();
  fail("tokenizer config '", path, "' key ", key, " is neither a string nor {\"content\": ...}");
}

inline void expect(bool ok, const std::string& path, const std::string& what) {
  BLIP_CHECK(ok, "tokenizer '", path, "': ", what, "; blip implements BERT's uncased WordPiece tokenizer "
             "(BertNormalizer with lowercase, BertPreTokenizer, WordPiece with '##')");
}

}  // namespace tokenizer_detail

namespace tokenizer_detail {
inline text::BertTokenizer from_json(const nlohmann::json& j, const std::string& path, int64_t max_length);
}

// From tokenizer.json's parsed content; `path` names it in errors. A value of the wrong JSON type
// is an error naming the file, as every other defect is.
inline text::BertTokenizer tokenizer_from_json(const nlohmann::json& j, const std::string& path, int64_t max_length) {
  try {
    return tokenizer_detail::from_json(j, path, max_length);
  } catch (const nlohmann::json::exception& e) {
    fail("tokenizer '", path, "': a value has the wrong type: ", e.what());
  }
}

inline text::BertTokenizer tokenizer_detail::from_json(const nlohmann::json& j, const std::string& path,
                                                       int64_t max_length) {
  using tokenizer_detail::expect;
  expect(j.is_object() && j.contains("model") && j.at("model").is_object(), path, "no \"model\" object");
  const nlohmann::json& model = j.at("model");
  expect(model.value("type", std::string()) == "WordPiece", path,
         "model.type is '" + model.value("type", std::string("?")) + "', not WordPiece");
  expect(model.value("continuing_subword_prefix", std::string("##")) == "##", path,
         "model.continuing_subword_prefix is not '##'");
  const nlohmann::json norm = j.value("normalizer", nlohmann::json());
  expect(norm.is_object() && norm.value("type", std::string()) == "BertNormalizer", path,
         "normalizer is not BertNormalizer");
  expect(norm.value("lowercase", true) && norm.value("clean_text", true) && norm.value("handle_chinese_chars", true),
         path, "BertNormalizer without lowercase, clean_text or handle_chinese_chars");
  const nlohmann::json& sa = norm.contains("strip_accents") ? norm.at("strip_accents") : nlohmann::json();
  expect(sa.is_null() || (sa.is_boolean() && sa.get<bool>()), path, "strip_accents false with lowercase");
  const nlohmann::json pre = j.value("pre_tokenizer", nlohmann::json());
  expect(pre.is_object() && pre.value("type", std::string()) == "BertPreTokenizer", path,
         "pre_tokenizer is not BertPreTokenizer");
  expect(model.contains("vocab") && model.at("vocab").is_object(), path, "model.vocab is not an object");

  const nlohmann::json& vocab = model.at("vocab");
  const size_t n = vocab.size();
  std::vector<std::string> by_id(n);
  std::vector<bool> seen(n, false);
  for (const auto& [token, id_json] : vocab.items()) {
    expect(id_json.is_number_integer(), path, "model.vocab['" + token + "'] is not an integer id");
    const int64_t id = id_json.get<int64_t>();
    expect(id >= 0 && static_cast<size_t>(id) < n && !seen[size_t(id)], path,
           str("model.vocab ids are not 0..", n - 1, " each once (token '", token, "' has id ", id, ")"));
    seen[size_t(id)] = true;
    by_id[size_t(id)] = token;
  }
  std::string lines;
  for (const auto& t : by_id) lines += t + "\n";
  text::Vocab v = text::Vocab::from_text(lines, path);
  BLIP_CHECK(v.size() == static_cast<int64_t>(n), "tokenizer '", path, "': model.vocab holds a token with a line break");

  std::map<int64_t, std::string> added;
  std::vector<std::string> in_vocab;
  if (j.contains("added_tokens")) {
    expect(j.at("added_tokens").is_array(), path, "added_tokens is not an array");
    for (const nlohmann::json& a : j.at("added_tokens")) {
      expect(a.is_object() && a.contains("id") && a.at("id").is_number_integer() && a.contains("content") &&
                 a.at("content").is_string(),
             path, "an added_tokens entry lacks an integer id or a string content");
      const int64_t id = a.at("id").get<int64_t>();
      const std::string content = a.at("content").get<std::string>();
      if (id < static_cast<int64_t>(n)) {
        expect(by_id[size_t(id)] == content, path,
               str("added token '", content, "' has id ", id, ", which the vocab gives '", by_id[size_t(id)], "'"));
        in_vocab.push_back(content);  // still special: found in the raw text before normalising
        continue;
      }
      added.emplace(id, content);
    }
  }
  text::BertTokenizer::Options o;
  o.max_length = max_length;
  o.max_input_chars_per_word = model.value("max_input_chars_per_word", int64_t{100});
  expect(o.max_input_chars_per_word > 0, path, "model.max_input_chars_per_word is not positive");
  o.added_tokens = in_vocab;  // Vocab::add keeps their ids
  int64_t next = static_cast<int64_t>(n);
  for (const auto& [id, content] : added) {
    expect(id == next, path, str("added token ids are not consecutive after the vocab (", content, " has id ", id, ", expected ", next, ")"));
    o.added_tokens.push_back(content);
    ++next;
  }
  return text::BertTokenizer(std::move(v), o);
}

inline text::BertTokenizer tokenizer_from_tokenizer_json(const std::string& path, int64_t max_length) {
  return tokenizer_from_json(io::read_json_file(path, "tokenizer"), path, max_length);
}

inline text::BertTokenizer tokenizer_from_vocab_txt(const std::string& vocab_path,
                                                   const std::vector<std::string>& config_files, int64_t max_length) {
  text::Vocab v = text::Vocab::load(vocab_path);
  text::BertTokenizer::Options o;
  o.max_length = max_length;
  std::vector<std::string> wanted;
  for (const std::string& file : config_files) {
    const nlohmann::json c = io::read_json_file(file, "tokenizer config");
    BLIP_CHECK(c.is_object(), "tokenizer config '", file, "' is not a JSON object");
    BLIP_CHECK(c.value("do_lower_case", true), "tokenizer config '", file,
               "' has do_lower_case false; blip implements BERT's uncased tokenizer");
    if (c.contains("bos_token") && !c.at("bos_token").is_null())
      wanted.push_back(tokenizer_detail::token_text(c.at("bos_token"), file, "bos_token"));
    for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
      if (!c.contains(key) || c.at(key).is_null()) continue;
      BLIP_CHECK(c.at(key).is_array(), "tokenizer config '", file, "' key ", key, " is not a list");
      for (const nlohmann::json& t : c.at(key)) wanted.push_back(tokenizer_detail::token_text(t, file, key));
    }
  }
  if (wanted.empty()) wanted = {"[DEC]", "[ENC]"};  // BLIP's additions (mmpretrain's BlipTokenizer)
  o.added_tokens.clear();
  for (const std::string& t : wanted)  // appended when the vocabulary lacks them; special either way
    if (std::find(o.added_tokens.begin(), o.added_tokens.end(), t) == o.added_tokens.end()) o.added_tokens.push_back(t);
  return text::BertTokenizer(std::move(v), o);
}

}  // namespace blip::pretrained
