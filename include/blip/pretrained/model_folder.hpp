// blip/pretrained/model_folder.hpp — a BLIP retrieval model from the path a user has: a
// checkpoint file, or a folder as blip, transformers' save_pretrained, the HF hub, Salesforce
// BLIP / LAVIS or mmpretrain leave it.
//
// Contract:
// - find_model_files(path): for a folder, its weights (model.safetensors, else
//   pytorch_model.bin, else its only .safetensors / .pth / .bin file) and the files beside them
//   (config.json, preprocessor_config.json, tokenizer.json, vocab.txt, tokenizer_config.json,
//   special_tokens_map.json); for a file, the file and those files in its folder.
// - resolve_config(files, source, options), in this order:
//   1. the checkpoint's own record: safetensors metadata "blip.config" (what blip writes);
//   2. config.json beside it: blip's layout (io/config_json.hpp) or transformers' BlipConfig
//      with preprocessor_config.json (io/hf_config.hpp); any other JSON is not a BLIP config
//      and is passed over;
//   3. the tensor shapes (infer_config.hpp), for .pth files that carry no config.
//   options.config (a preset or --config file) is used instead where the file records none,
//   and must agree with the record where it does: each field that differs is named.
// - check_config_fits(source, config, origin): the shapes the config implies against the
//   file's header, before a model is built (BLIP-large takes seconds and 1.8 GB).
// - resolve_tokenizer(files, metadata, config, options): options.vocab (vocab.txt or
//   tokenizer.json), else the folder's tokenizer.json, else its vocab.txt (+ tokenizer
//   configs), else the vocabulary the checkpoint embeds ("blip.vocab"), else options.default_vocab
//   when its size fits and its fingerprint matches the recorded one. The tokenizer's size must
//   equal the model's vocab_size; the config's token ids are then set from the tokenizer.
// - load_pretrained<Model>(path, options): all of the above, then the weights (any naming).
// Every error names the path, the file the value came from and what to pass instead.
#pragma once

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "blip/io/checkpoint_file.hpp"
#include "blip/io/config_json.hpp"
#include "blip/io/hf_config.hpp"
#include "blip/io/model_state.hpp"
#include "blip/pretrained/infer_config.hpp"
#include "blip/pretrained/tokenizer_files.hpp"

namespace blip::pretrained {

// safetensors __metadata__ keys blip writes (self_describing.hpp) and reads here.
inline constexpr const char* kConfigKey = "blip.config";
inline constexpr const char* kVocabKey = "blip.vocab";
inline constexpr const char* kVocabFingerprintKey = "blip.vocab_fingerprint";

struct ModelFiles {
  std::string weights;       // the checkpoint file
  std::string folder;        // where the files beside it are looked for
  std::string config;        // config.json ("" when absent; so are the others)
  std::string preprocessor;  // preprocessor_config.json
  std::string tokenizer_json, vocab_txt;
  std::vector<std::string> tokenizer_configs;  // tokenizer_config.json, special_tokens_map.json
};

inline ModelFiles find_model_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  BLIP_CHECK(!ec && fs::exists(st), "model '", path, "' not found (give a checkpoint file or a model folder)");
  ModelFiles f;
  auto file_in = [&](const std::string& name) {
    const fs::path p = fs::path(f.folder) / name;
    std::error_code e;
    return fs::is_regular_file(p, e) ? p.string() : std::string();
  };
  if (fs::is_directory(st)) {
    f.folder = path;
    BLIP_CHECK(file_in("model.safetensors.index.json").empty() && file_in("pytorch_model.bin.index.json").empty(),
               "model folder '", path, "' holds sharded weights (*.index.json); join them into one file first "
               "(transformers: save_pretrained(..., max_shard_size=\"10GB\"))");
    for (const char* name : {"model.safetensors", "pytorch_model.bin"})
      if (f.weights.empty()) f.weights = file_in(name);
    if (f.weights.empty()) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(path, ec)) {
        const std::string ext = e.path().extension().string();
        std::error_code e2;
        if ((ext == ".safetensors" || ext == ".pth" || ext == ".bin" || ext == ".pt") && e.is_regular_file(e2))
          found.push_back(e.path().string());
      }
      BLIP_CHECK(!ec, "cannot list model folder '", path, "': ", ec.message());
      BLIP_CHECK(!found.empty(), "model folder '", path,
                 "' holds no weights (model.safetensors, pytorch_model.bin or one .safetensors/.pth/.bin file)");
      std::sort(found.begin(), found.end());
      BLIP_CHECK(found.size() == 1, "model folder '", path, "' holds ", found.size(), " weight files ('", found[0],
                 "', '", found[1], "'...); give the one to use as the checkpoint path");
      f.weights = found[0];
    }
  } else {
    f.weights = path;
    f.folder = fs::path(path).parent_path().string();
    if (f.folder.empty()) f.folder = ".";
  }
  f.config = file_in("config.json");
  f.preprocessor = file_in("preprocessor_config.json");
  f.tokenizer_json = file_in("tokenizer.json");
  f.vocab_txt = file_in("vocab.txt");
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"})
    if (auto p = file_in(name); !p.empty()) f.tokenizer_configs.push_back(p);
  return f;
}

// The bert-base-uncased vocabulary blip ships: $BLIP_VOCAB, else the path the build recorded
// (BLIP_DEFAULT_VOCAB_PATH, set by the blip::blip CMake target), else none.
inline std::string default_vocab_path() {
  if (const char* env = std::getenv("BLIP_VOCAB"); env && *env) return env;
#ifdef BLIP_DEFAULT_VOCAB_PATH
  return BLIP_DEFAULT_VOCAB_PATH;
#else
  return {};
#endif
}

struct PretrainedOptions {
  std::optional<BlipConfig> config;  // a preset or --config file: used where the file records none
  std::string config_name;           // how to name it in errors ("preset 'base'", "config 'x.json'")
  std::string vocab;                 // a vocabulary (vocab.txt or tokenizer.json) instead of the folder's
  std::string default_vocab = default_vocab_path();  // for checkpoints that record only a fingerprint
  bool need_tokenizer = true;        // false: a model that embeds only images
  std::function<void(BlipConfig&)> adjust;  // applied to the resolved config before the build
};

struct ResolvedConfig {
  BlipConfig config;
  std::string source;  // where it came from, for messages
};

template <class Source>
std::map<std::string, std::string> checkpoint_metadata(const Source& source) {
  if constexpr (requires { source.metadata(); }) {
    return {source.metadata().begin(), source.metadata().end()};
  } else {
    return {};
  }
}

// Sizes a model can be built from, within bounds no released model comes near: a config from a
// stranger's file cannot ask for an unbounded allocation or a division by zero.
inline void check_config_sane(const BlipConfig& c, const std::string& origin) {
  auto in = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    BLIP_CHECK(v >= lo && v <= hi, "config from ", origin, ": ", name, " is ", v, ", outside [", lo, ", ", hi, "]");
  };
  in("vision.embed_dims", c.vision.embed_dims, 1, 16384);
  in("vision.num_layers", c.vision.num_layers, 1, 256);
  in("vision.num_heads", c.vision.num_heads, 1, 1024);
  in("vision.feedforward_channels", c.vision.feedforward_channels, 1, 65536);
  in("vision.patch_size", c.vision.patch_size, 1, 1024);
  in("vision.img_size", c.vision.img_size, c.vision.patch_size, 8192);
  in("vision.in_channels", c.vision.in_channels, 1, 4);
  in("text.hidden_size", c.text.hidden_size, 1, 16384);
  in("text.num_hidden_layers", c.text.num_hidden_layers, 1, 256);
  in("text.num_attention_heads", c.text.num_attention_heads, 1, 1024);
  in("text.intermediate_size", c.text.intermediate_size, 1, 65536);
  in("text.vocab_size", c.text.vocab_size, 1, int64_t{1} << 22);
  in("text.max_position_embeddings", c.text.max_position_embeddings, 2, 1 << 16);
  in("text.encoder_width", c.text.encoder_width, 1, 16384);
  in("embed_dim", c.embed_dim, 1, 16384);
  in("queue_size", c.queue_size, 0, int64_t{1} << 24);
  in("max_txt_len", c.max_txt_len, 2, c.text.max_position_embeddings);
  BLIP_CHECK(c.vision.embed_dims % c.vision.num_heads == 0 && c.text.hidden_size % c.text.num_attention_heads == 0,
             "config from ", origin, ": a width is not a multiple of its number of heads (vision ", c.vision.embed_dims,
             " / ", c.vision.num_heads, ", text ", c.text.hidden_size, " / ", c.text.num_attention_heads, ")");
  BLIP_CHECK(c.vision.img_size % c.vision.patch_size == 0, "config from ", origin, ": image size ", c.vision.img_size,
             " is not a multiple of the patch size ", c.vision.patch_size);
  for (double s : c.std) BLIP_CHECK(s > 0 && std::isfinite(s), "config from ", origin, ": a std is ", s);
  for (double m : c.mean) BLIP_CHECK(std::isfinite(m), "config from ", origin, ": a mean is ", m);
  BLIP_CHECK(c.vision.layer_norm_eps > 0 && c.text.layer_norm_eps > 0, "config from ", origin,
             ": a layer_norm_eps is not positive");
}

// The config the files record (1, 2 above), if any.
inline std::optional<ResolvedConfig> recorded_config(const ModelFiles& f, const std::map<std::string, std::string>& meta) {
  if (auto it = meta.find(kConfigKey); it != meta.end()) {
    const std::string origin = str("'", f.weights, "' metadata ", kConfigKey);
    return ResolvedConfig{io::blip_config_from_json(io::parse_json_text(it->second, origin), origin),
                          str("the config recorded in '", f.weights, "'")};
  }
  if (f.config.empty()) return std::nullopt;
  const nlohmann::json j = io::read_json_file(f.config, "config", uint64_t{16} << 20);
  if (io::is_blip_config_json(j)) return ResolvedConfig{io::blip_config_from_json(j, f.config), str("'", f.config, "'")};
  if (io::is_hf_blip_config_json(j)) {
    std::optional<nlohmann::json> pre;
    if (!f.preprocessor.empty()) pre = io::read_json_file(f.preprocessor, "preprocessor config", uint64_t{16} << 20);
    return ResolvedConfig{io::blip_config_from_hf(j, pre ? &*pre : nullptr, f.config, f.preprocessor),
                          str("'", f.config, "'", f.preprocessor.empty() ? "" : str(" and '", f.preprocessor, "'"))};
  }
  return std::nullopt;
}

template <class Source>
ResolvedConfig resolve_config(const ModelFiles& f, const Source& source, const PretrainedOptions& o) {
  const std::optional<ResolvedConfig> recorded = recorded_config(f, checkpoint_metadata(source));
  if (recorded && o.config) {
    const std::vector<std::string> diff = io::config_differences(*o.config, recorded->config);
    if (!diff.empty()) {
      std::string list;
      for (size_t i = 0; i < diff.size() && i < 6; ++i) list += "\n  " + diff[i];
      fail(o.config_name.empty() ? std::string("the given config") : o.config_name, " does not match ",
           recorded->source, " (given vs recorded):", list, diff.size() > 6 ? "\n  ..." : "",
           "\n  (leave out --preset / --config: the model describes itself)");
    }
    check_config_sane(*o.config, o.config_name);
    return {*o.config, o.config_name};
  }
  const ResolvedConfig r = recorded ? *recorded
                           : o.config ? ResolvedConfig{*o.config, o.config_name}
                                      : ResolvedConfig{infer_blip_config(source),
                                                       str("the tensor shapes of '", f.weights, "' (heads = width / 64)")};
  check_config_sane(r.config, r.source);
  return r;
}

// The shapes a few tensors must have under config, checked against the header before the model
// is built; keys the file lacks are left to load_state_dict, which names them.
template <class Source>
void check_config_fits(const Source& source, const BlipConfig& c, const std::string& origin) {
  const std::vector<std::string> keys = source.keys();
  const io::DetectedNaming naming = io::detect_naming(keys, source.path());
  std::map<std::string, std::string> theirs;
  for (const std::string& key : keys)
    if (key.compare(0, naming.prefix.size(), naming.prefix) == 0)
      if (const auto ours = io::from_naming(key.substr(naming.prefix.size()), naming.naming)) theirs.emplace(*ours, key);
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"vision_backbone.cls_token", {1, 1, c.vision.embed_dims}},
      {"vision_backbone.patch_embed.projection.weight",
       {c.vision.embed_dims, c.vision.in_channels, c.vision.patch_size, c.vision.patch_size}},
      {"vision_backbone.layers.0.ffn.layers.0.0.weight", {c.vision.feedforward_channels, c.vision.embed_dims}},
      {"vision_neck.weight", {c.embed_dim, c.vision.embed_dims}},
      {"text_backbone.embeddings.word_embeddings.weight", {c.text.vocab_size, c.text.hidden_size}},
      {"text_backbone.encoder.layer.0.intermediate.dense.weight", {c.text.intermediate_size, c.text.hidden_size}},
      {"text_backbone.encoder.layer.0.crossattention.self.key.weight", {c.text.hidden_size, c.text.encoder_width}},
      {"text_neck.weight", {c.embed_dim, c.text.hidden_size}},
      {str("vision_backbone.layers.", c.vision.num_layers - 1, ".ln1.weight"), {c.vision.embed_dims}},
      {str("text_backbone.encoder.layer.", c.text.num_hidden_layers - 1, ".output.LayerNorm.weight"), {c.text.hidden_size}}};
  for (const auto& [name, shape] : expected) {
    const auto it = theirs.find(name);
    if (it == theirs.end()) continue;
    BLIP_CHECK(source.shape(it->second) == shape, "checkpoint '", source.path(), "' tensor '", it->second,
               "' has shape ", source.shape(it->second), " but ", origin, " needs ", shape,
               ": the config does not describe this checkpoint");
  }
  // The last layer of each stack must be there when the first is (a config with more layers than
  // the file would otherwise build them all before load_state_dict names the first missing key).
  for (const auto& [first, last] :
       {std::pair{std::string("vision_backbone.layers.0.ln1.weight"),
                  str("vision_backbone.layers.", c.vision.num_layers - 1, ".ln1.weight")},
        std::pair{std::string("text_backbone.encoder.layer.0.output.LayerNorm.weight"),
                  str("text_backbone.encoder.layer.", c.text.num_hidden_layers - 1, ".output.LayerNorm.weight")}})
    BLIP_CHECK(!theirs.count(first) || theirs.count(last), "checkpoint '", source.path(), "' has no '", last, "', but ",
               origin, " has that many layers: the config does not describe this checkpoint");
  for (const auto& [prefix, n] : {std::pair{std::string("vision_backbone.layers."), c.vision.num_layers},
                                  std::pair{std::string("text_backbone.encoder.layer."), c.text.num_hidden_layers}}) {
    const std::string beyond = prefix + std::to_string(n) + ".";
    for (const auto& [ours, key] : theirs)
      BLIP_CHECK(ours.compare(0, beyond.size(), beyond) != 0, "checkpoint '", source.path(), "' has more than ", n,
                 " layers under '", prefix, "' (key '", key, "'), but ", origin, " has ", n);
  }
}

inline text::BertTokenizer tokenizer_from_path(const std::string& path, const std::vector<std::string>& configs,
                                               int64_t max_length) {
  if (std::filesystem::path(path).extension() == ".json") return tokenizer_from_tokenizer_json(path, max_length);
  return tokenizer_from_vocab_txt(path, configs, max_length);
}

struct ResolvedTokenizer {
  text::BertTokenizer tokenizer;
  std::string source;
};

inline ResolvedTokenizer resolve_tokenizer(const ModelFiles& f, const std::map<std::string, std::string>& meta,
                                           const BlipConfig& c, const PretrainedOptions& o) {
  const auto fingerprint = meta.find(kVocabFingerprintKey);
  auto pick = [&]() -> ResolvedTokenizer {
    if (!o.vocab.empty()) return {tokenizer_from_path(o.vocab, {}, c.max_txt_len), str("'", o.vocab, "'")};
    if (!f.tokenizer_json.empty())
      return {tokenizer_from_tokenizer_json(f.tokenizer_json, c.max_txt_len), str("'", f.tokenizer_json, "'")};
    if (!f.vocab_txt.empty())
      return {tokenizer_from_vocab_txt(f.vocab_txt, f.tokenizer_configs, c.max_txt_len), str("'", f.vocab_txt, "'")};
    if (auto it = meta.find(kVocabKey); it != meta.end()) {
      text::BertTokenizer::Options opt;
      opt.max_length = c.max_txt_len;
      return {text::BertTokenizer(text::Vocab::from_text(it->second, str("'", f.weights, "' metadata ", kVocabKey)), opt),
              str("the vocabulary embedded in '", f.weights, "'")};
    }
    BLIP_CHECK(!o.default_vocab.empty(), "model '", f.weights, "' comes with no vocabulary (no tokenizer.json or "
               "vocab.txt beside it, none embedded); pass one with --vocab");
    text::BertTokenizer tok = tokenizer_from_vocab_txt(o.default_vocab, {}, c.max_txt_len);
    BLIP_CHECK(tok.vocab().size() == c.text.vocab_size, "model '", f.weights, "' has a vocabulary of ",
               c.text.vocab_size, " tokens and comes with none (no tokenizer.json or vocab.txt beside it, none "
               "embedded); the default '", o.default_vocab, "' has ", tok.vocab().size(),
               " with [DEC] and [ENC]: pass the model's own with --vocab");
    return {std::move(tok), str("'", o.default_vocab, "'")};
  };
  ResolvedTokenizer r = pick();
  BLIP_CHECK(r.tokenizer.vocab().size() == c.text.vocab_size, "the vocabulary ", r.source, " gives ",
             r.tokenizer.vocab().size(), " tokens (with its added tokens), but model '", f.weights, "' has ",
             c.text.vocab_size, "; pass the vocabulary it was trained with (--vocab)");
  if (fingerprint != meta.end()) {
    const std::string mine = vocab_fingerprint(r.tokenizer.vocab());
    BLIP_CHECK(mine == fingerprint->second, "the vocabulary ", r.source, " (", mine, ") is not the one '", f.weights,
               "' was trained with (", fingerprint->second, "); pass that one with --vocab");
  }
  for (const char* t : {"[CLS]", "[SEP]", "[PAD]", "[ENC]"})
    BLIP_CHECK(r.tokenizer.vocab().find(t) >= 0, "the vocabulary ", r.source, " has no token ", t,
               ", which BLIP's text encoder needs");
  return r;
}

// The config's token ids, as the tokenizer gives them.
inline void set_token_ids(BlipConfig& c, const text::BertTokenizer& tok) {
  c.tokens.pad = tok.token_id("[PAD]");
  c.tokens.cls = tok.token_id("[CLS]");
  c.tokens.sep = tok.token_id("[SEP]");
  c.tokens.enc = tok.token_id("[ENC]");
  if (tok.vocab().find("[DEC]") >= 0) c.tokens.dec = tok.token_id("[DEC]");
  c.text.pad_token_id = c.tokens.pad;
}

template <class Model>
struct Pretrained {
  std::unique_ptr<Model> model;
  std::optional<text::BertTokenizer> tokenizer;  // empty only when not needed and none found
  BlipConfig config;
  ModelFiles files;
  std::string config_source, tokenizer_source;
  io::LoadReport report;
};

template <class Model>
Pretrained<Model> load_pretrained(const std::string& path, const PretrainedOptions& o = {}) {
  Pretrained<Model> out;
  out.files = find_model_files(path);
  return io::with_checkpoint_file(out.files.weights, [&](const auto& source) {
    const auto meta = checkpoint_metadata(source);
    ResolvedConfig rc = resolve_config(out.files, source, o);
    out.config = rc.config;
    out.config_source = rc.source;
    check_config_fits(source, out.config, rc.source);
    if (o.adjust) o.adjust(out.config);
    try {
      ResolvedTokenizer t = resolve_tokenizer(out.files, meta, out.config, o);
      set_token_ids(out.config, t.tokenizer);
      out.tokenizer.emplace(std::move(t.tokenizer));
      out.tokenizer_source = t.source;
    } catch (const Error&) {
      if (o.need_tokenizer) throw;
    }
    out.model = std::make_unique<Model>(out.config);
    try {
      out.report = io::load_state_dict(*out.model, source);
    } catch (const Error& e) {
      fail(e.what(), "\n  (the model was built from ", rc.source, ")");
    }
    return std::move(out);
  });
}

}  // namespace blip::pretrained
