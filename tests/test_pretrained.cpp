// Models as people have them (include/blip/pretrained/): HuggingFace folders against
// transformers' own outputs, blip's self-describing checkpoints, configs read off tensor
// shapes, and the errors a wrong folder, config or vocabulary gives.
//
// The HF fixtures (tests/data/hf/<case>/, made by tests/data/hf/make_hf_fixtures.py with
// transformers' BlipForImageTextRetrieval): model/ as save_pretrained writes it, images/*.png,
// captions.txt, expected.safetensors. Every case folder found is checked (BLIP_HF_FIXTURES
// names another root).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "blip/io/convert.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/safetensors_writer.hpp"
#include "blip/io/state_dict.hpp"
#include "blip/models/presets.hpp"
#include "blip/pretrained/model_folder.hpp"
#include "blip/pretrained/self_describing.hpp"
#include "blip/retriever.hpp"
#include "blip/search/gallery.hpp"
#include "blip/vision/decode.hpp"
#include "golden_dirs.hpp"

using namespace blip;
namespace fs = std::filesystem;
using Model = StandardBlip<float, Cpu>;

namespace {

fs::path hf_root() {
  if (const char* env = std::getenv("BLIP_HF_FIXTURES")) return env;
  return fs::path(BLIP_SOURCE_DIR) / "tests" / "data" / "hf";
}

std::vector<fs::path> hf_cases() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(hf_root()))
    if (e.is_directory() && fs::exists(e.path() / "expected.safetensors")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("blip_test_pretrained_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

BlipConfig small_config() {
  BlipConfig c = presets::tiny();
  c.vision.embed_dims = 64;
  c.vision.num_heads = 1;
  c.vision.feedforward_channels = 96;
  c.vision.img_size = 48;
  c.vision.patch_size = 16;
  c.vision.num_layers = 3;
  c.text.hidden_size = 64;
  c.text.num_attention_heads = 1;
  c.text.intermediate_size = 80;
  c.text.encoder_width = 64;
  c.text.num_hidden_layers = 2;
  c.text.max_position_embeddings = 20;
  c.embed_dim = 12;
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("HuggingFace folders load with their sizes and match transformers' features and ITM logits") {
  const auto cases = hf_cases();
  REQUIRE(cases.size() >= 2);
  for (const fs::path& dir : cases) {
    INFO("case " << dir.string());
    pretrained::PretrainedOptions o;  // no preset, no vocabulary: the folder says it all
    const auto p = pretrained::load_pretrained<Model>((dir / "model").string(), o);
    CHECK(p.config_source.find("config.json") != std::string::npos);
    REQUIRE(p.tokenizer.has_value());
    const nlohmann::json hf = io::read_json_file((dir / "model" / "config.json").string(), "config");
    CHECK(p.config.vision.layer_norm_eps == hf["vision_config"]["layer_norm_eps"].get<double>());
    CHECK(p.config.text.encoder_width == hf["vision_config"]["hidden_size"].get<int64_t>());
    const nlohmann::json info = io::read_json_file((dir / "case.json").string(), "case");
    CHECK(p.config.tokens.enc == info["enc_token_id"].get<int64_t>());

    const io::SafeTensorsFile expected((dir / "expected.safetensors").string());
    // Pixels: the folder's preprocessor (size, mean, std, bicubic) as transformers applies it.
    std::vector<Tensor<float, Cpu>> images;
    for (const auto& name : info["images"])
      images.push_back(vision::load_and_preprocess((dir / "images" / name.get<std::string>()).string(),
                                                   search::test_pipeline(*p.model)));
    const Tensor<float, Cpu> pixels = stack(images, 0);
    CHECK(max_abs_diff(pixels.to_vector(), expected.load<float>("pixel_values").to_vector()) < 1e-4f);

    // Token ids: HF pads to the longest caption, blip to max_txt_len; the columns beyond are padding.
    const std::vector<std::string> captions = read_lines(dir / "captions.txt");
    const auto enc = p.tokenizer->encode_batch<Cpu>(captions);
    const Tensor<int64_t, Cpu> want_ids = expected.load<int64_t>("input_ids");
    const Tensor<int64_t, Cpu> want_mask = expected.load<int64_t>("attention_mask");
    const int64_t T = want_ids.size(0), L = want_ids.size(1), ML = enc.input_ids.size(1);
    REQUIRE(enc.input_ids.size(0) == T);
    REQUIRE(ML >= L);
    const auto got_ids = enc.input_ids.to_vector(), got_mask = enc.attention_mask.to_vector();
    const auto exp_ids = want_ids.to_vector(), exp_mask = want_mask.to_vector();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t l = 0; l < ML; ++l) {
        const size_t g = size_t(t * ML + l);
        CHECK(got_ids[g] == (l < L ? exp_ids[size_t(t * L + l)] : p.config.tokens.pad));
        CHECK(got_mask[g] == (l < L ? exp_mask[size_t(t * L + l)] : 0));
      }

    NoGradGuard no_grad;
    const TextBatch<float, Cpu> texts{enc.input_ids, enc.attention_mask};
    const Features<float, Cpu> f = p.model->extract_feat(&pixels, &texts, true);
    CHECK(max_abs_diff(f.image_feat.to_vector(), expected.load<float>("image_feat").to_vector()) < 1e-4f);
    CHECK(max_abs_diff(f.text_feat.to_vector(), expected.load<float>("text_feat").to_vector()) < 1e-4f);
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int64_t i = 0; i < pixels.size(0); ++i)
      for (int64_t t = 0; t < T; ++t) pairs.emplace_back(i, t);
    const std::vector<float> logits =
        p.model->itm_logits(pairs, f.image_embeds, p.model->encoder_ids(enc.input_ids), enc.attention_mask);
    CHECK(max_abs_diff(logits, expected.load<float>("itm_logits").to_vector()) < 1e-3f);
  }
}

TEST_CASE("the HF folder's tokenizer.json and vocab.txt give the same tokenizer") {
  const fs::path dir = hf_root() / "small" / "model";
  REQUIRE(fs::exists(dir / "tokenizer.json"));
  const auto from_json = pretrained::tokenizer_from_tokenizer_json((dir / "tokenizer.json").string(), 16);
  const fs::path work = scratch("vocab_txt");
  pretrained::write_text_file((work / "vocab.txt").string(), from_json.vocab().text());
  const auto from_txt = pretrained::tokenizer_from_vocab_txt((work / "vocab.txt").string(), {}, 16);
  CHECK(from_json.vocab().size() == 128);
  CHECK(pretrained::vocab_fingerprint(from_json.vocab()) == pretrained::vocab_fingerprint(from_txt.vocab()));
  for (const std::string s : {"a dog on the beach", "The CATS [ENC] in grass!", "zzz [DEC]umbrella"})
    CHECK(from_json.encode(s) == from_txt.encode(s));
  CHECK(from_json.encode("a [ENC] dog").first[2] == 127);  // added tokens stay special
}

TEST_CASE("tokenizer.json that blip cannot honour is refused by name") {
  const fs::path work = scratch("bad_tokenizer");
  const std::string good = [] {
    std::ifstream in(hf_root() / "small" / "model" / "tokenizer.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    pretrained::write_text_file((work / "tokenizer.json").string(), s);
    return error_of([&] { pretrained::tokenizer_from_tokenizer_json((work / "tokenizer.json").string(), 16); });
  };
  CHECK_THAT(with("\"type\": \"WordPiece\",\n    \"unk_token\"", "\"type\": \"BPE\",\n    \"unk_token\""),
             Catch::Contains("model.type is 'BPE'"));
  CHECK_THAT(with("\"lowercase\": true", "\"lowercase\": false"), Catch::Contains("lowercase"));
  CHECK_THAT(with("\"BertPreTokenizer\"", "\"Whitespace\""), Catch::Contains("pre_tokenizer"));
  CHECK_THAT(with("\"[UNK]\": 100", "\"[UNK]\": 7"), Catch::Contains("each once"));
  CHECK_THAT(with("\"id\": 127", "\"id\": 129"), Catch::Contains("consecutive"));
  pretrained::write_text_file((work / "tokenizer.json").string(), good.substr(0, good.size() / 2));
  CHECK_THAT(error_of([&] { pretrained::tokenizer_from_tokenizer_json((work / "tokenizer.json").string(), 16); }),
             Catch::Contains((work / "tokenizer.json").string()));
}

TEST_CASE("blip's config JSON round-trips and HF's config.json reads with transformers' defaults") {
  BlipConfig c = small_config();
  c.vision.layer_norm_eps = 1e-5;
  c.mean = {1, 2, 3};
  c.momentum_rule = MomentumRule::ema;
  const BlipConfig back = io::blip_config_from_json(io::blip_config_to_json(c));
  CHECK(io::config_differences(c, back).empty());
  CHECK(back.momentum_rule == MomentumRule::ema);
  CHECK(back.queue_size == c.queue_size);

  const BlipConfig hf = io::blip_config_from_hf(io::hf_config_json(c), nullptr);
  CHECK(hf.vision.embed_dims == 64);
  CHECK(hf.text.encoder_width == 64);
  CHECK(hf.vision.layer_norm_eps == 1e-5);
  // Absent fields take transformers' class defaults (BLIP-base's vision, 8 text heads).
  const BlipConfig d = io::blip_config_from_hf(nlohmann::json::parse(R"({"model_type": "blip"})"), nullptr);
  CHECK(d.vision.embed_dims == 768);
  CHECK(d.vision.layer_norm_eps == 1e-5);
  CHECK(d.text.num_attention_heads == 8);
  CHECK(d.text.encoder_width == 768);
  const auto pre = nlohmann::json::parse(R"({"resample": 2, "size": {"height": 384, "width": 384}})");
  CHECK_THAT(error_of([&] { io::blip_config_from_hf(io::hf_config_json(presets::blip_base()), &pre); }),
             Catch::Contains("resample is 2"));
  const auto wrong_size = nlohmann::json::parse(R"({"size": {"height": 224, "width": 224}})");
  CHECK_THAT(error_of([&] { io::blip_config_from_hf(io::hf_config_json(presets::blip_base()), &wrong_size); }),
             Catch::Contains("image_size is 384"));
  auto relu = io::hf_config_json(c);
  relu["text_config"]["hidden_act"] = "relu";
  CHECK_THAT(error_of([&] { io::blip_config_from_hf(relu, nullptr); }), Catch::Contains("hidden_act is 'relu'"));
}

TEST_CASE("a checkpoint without a config has its sizes read off its shapes, in every naming") {
  BlipConfig c = small_config();
  c.vision.num_heads = 1;  // 64 / 64
  c.text.num_attention_heads = 1;
  c.text.vocab_size = 128;
  c.tokens.dec = 126;
  c.tokens.enc = 127;
  Model model(c);
  const fs::path work = scratch("infer");
  const std::string mm = (work / "mm.safetensors").string();
  io::save_safetensors(mm, io::export_state_dict(model));
  for (const auto naming : {io::KeyNaming::mmpretrain, io::KeyNaming::blip, io::KeyNaming::lavis, io::KeyNaming::hf}) {
    INFO(io::naming_name(naming));
    const std::string path = (work / (std::string(io::naming_name(naming)) + ".safetensors")).string();
    io::ConvertOptions co;
    co.to = naming;
    io::convert_checkpoint(mm, path, co);
    const BlipConfig got = io::with_checkpoint_file(path, [](const auto& s) { return pretrained::infer_blip_config(s); });
    BlipConfig want = c;
    want.vision.layer_norm_eps = naming == io::KeyNaming::hf ? 1e-5 : 1e-6;
    CHECK(io::config_differences(want, got).empty());
    if (naming != io::KeyNaming::hf) CHECK(got.queue_size == c.queue_size);
  }
  // A width that is not a multiple of 64 leaves the heads unknown: said, not guessed.
  Model odd(presets::tiny());
  const std::string odd_path = (work / "odd.safetensors").string();
  io::save_safetensors(odd_path, io::export_state_dict(odd));
  CHECK_THAT(error_of([&] {
               io::with_checkpoint_file(odd_path, [](const auto& s) { return pretrained::infer_blip_config(s); });
             }),
             Catch::Contains("not a multiple of 64"));
}

TEST_CASE("a self-describing checkpoint loads from its path alone; a preset that disagrees is named") {
  const BlipConfig c = presets::tiny();
  Model model(c);
  const fs::path work = scratch("self");
  const auto vocab_lines = [] {
    std::string s;
    for (int i = 0; i < 126; ++i) s += (i == 0 ? "[PAD]" : i == 100 ? "[UNK]" : i == 101 ? "[CLS]" : i == 102 ? "[SEP]"
                                        : i == 103 ? "[MASK]" : "w" + std::to_string(i)) + std::string("\n");
    return s;
  }();
  text::BertTokenizer::Options to;
  to.max_length = c.max_txt_len;
  const text::BertTokenizer tok(text::Vocab::from_text(vocab_lines, "test vocab"), to);
  REQUIRE(tok.vocab().size() == 128);
  const std::string path = (work / "model.safetensors").string();
  io::save_safetensors(path, io::export_state_dict(model), pretrained::model_metadata(c, &tok.vocab()));
  CHECK(pretrained::write_config_beside(path, c));

  // The file alone, moved away from its config.json: metadata config and embedded vocabulary.
  const fs::path alone = scratch("alone") / "weights.safetensors";
  fs::copy_file(path, alone);
  const auto p = pretrained::load_pretrained<Model>(alone.string());
  CHECK(io::config_differences(c, p.config).empty());
  CHECK(p.tokenizer_source.find("embedded") != std::string::npos);
  CHECK(p.tokenizer->encode("w105 w7") == tok.encode("w105 w7"));
  NoGradGuard no_grad;
  const Tensor<float, Cpu> x = randn<float, Cpu>({1, 3, 32, 32}, *std::make_unique<Generator>(3));
  CHECK(max_abs_diff(p.model->image_feat(p.model->image_embeds(x)).to_vector(),
                     model.image_feat(model.image_embeds(x)).to_vector()) == 0.0f);

  // The folder: same config (from the metadata, the config.json beside it agrees).
  const auto q = pretrained::load_pretrained<Model>(work.string());
  CHECK(io::config_differences(c, q.config).empty());

  pretrained::PretrainedOptions o;
  o.config = presets::blip_base();
  o.config_name = "preset 'base'";
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>(path, o); }),
             Catch::Contains("preset 'base' does not match") && Catch::Contains("vision.embed_dims: 768 vs 32"));
  o.config = c;  // the same sizes: accepted as an override
  CHECK_NOTHROW(pretrained::load_pretrained<Model>(path, o));

  // Another vocabulary than the recorded one (same size) is named by its fingerprint.
  std::string other = vocab_lines;
  other.replace(other.find("w104"), 4, "x104");
  pretrained::write_text_file((work / "other.txt").string(), other);
  pretrained::PretrainedOptions v;
  v.vocab = (work / "other.txt").string();
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>(path, v); }), Catch::Contains("is not the one"));
}

TEST_CASE("model folders that cannot be used say why") {
  const fs::path empty = scratch("empty");
  CHECK_THAT(error_of([&] { pretrained::find_model_files(empty.string()); }), Catch::Contains("holds no weights"));
  const fs::path two = scratch("two");
  pretrained::write_text_file((two / "a.pth").string(), "x");
  pretrained::write_text_file((two / "b.safetensors").string(), "x");
  CHECK_THAT(error_of([&] { pretrained::find_model_files(two.string()); }), Catch::Contains("2 weight files"));
  const fs::path sharded = scratch("sharded");
  pretrained::write_text_file((sharded / "model.safetensors.index.json").string(), "{}");
  CHECK_THAT(error_of([&] { pretrained::find_model_files(sharded.string()); }), Catch::Contains("sharded"));
  CHECK_THAT(error_of([&] { pretrained::find_model_files((empty / "nope").string()); }), Catch::Contains("not found"));

  // A model whose vocabulary is nowhere: the message says to pass one.
  Model model(presets::tiny());
  const fs::path bare = scratch("bare");
  io::save_safetensors((bare / "m.safetensors").string(), io::export_state_dict(model));
  pretrained::PretrainedOptions o;
  o.config = presets::tiny();
  o.config_name = "preset 'tiny'";
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>((bare / "m.safetensors").string(), o); }),
             Catch::Contains("--vocab"));
  o.need_tokenizer = false;  // embedding images needs none
  CHECK_NOTHROW(pretrained::load_pretrained<Model>((bare / "m.safetensors").string(), o));

  // A config with more layers than the file, or sizes no model has, fails before the model is built.
  o.config->vision.num_layers = 5;
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>((bare / "m.safetensors").string(), o); }),
             Catch::Contains("has no 'vision_backbone.layers.4.ln1.weight'"));
  o.config = presets::tiny();
  o.config->text.num_hidden_layers = 1 << 20;
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>((bare / "m.safetensors").string(), o); }),
             Catch::Contains("text.num_hidden_layers is 1048576, outside [1, 256]"));
  o.config = presets::tiny();
  o.config->vision.num_heads = 5;
  CHECK_THAT(error_of([&] { pretrained::load_pretrained<Model>((bare / "m.safetensors").string(), o); }),
             Catch::Contains("not a multiple of its number of heads"));
}

TEST_CASE("golden model case sets load as folders with their config.json") {
  for (const fs::path& dir : model_case_sets()) {
    INFO(dir.string());
    const BlipConfig want = io::load_blip_config((dir / "config.json").string());
    pretrained::PretrainedOptions o;
    o.need_tokenizer = false;
    // The weights file, as a user names it: the config.json beside it is found.
    const pretrained::ModelFiles files = pretrained::find_model_files((dir / "weights.safetensors").string());
    CHECK(files.config == (dir / "config.json").string());
    const auto got = io::with_checkpoint_file(files.weights, [&](const auto& s) {
      return pretrained::resolve_config(files, s, o);
    });
    CHECK(io::config_differences(want, got.config).empty());
  }
}

TEST_CASE("blip::Retriever loads a folder and embeds, scores and searches as the model does") {
  const fs::path dir = hf_root() / "small";
  const auto r = Retriever<>::load((dir / "model").string());
  const io::SafeTensorsFile expected((dir / "expected.safetensors").string());
  std::vector<std::string> paths;
  for (const char* name : {"img0.png", "img1.png", "img2.png"}) paths.push_back((dir / "images" / name).string());
  const std::vector<std::string> captions = read_lines(dir / "captions.txt");

  const Tensor<float, Cpu> image_feat = r.embed_images(paths);
  CHECK(max_abs_diff(image_feat.to_vector(), expected.load<float>("image_feat").to_vector()) < 1e-4f);
  std::vector<vision::Image> decoded;
  for (const auto& p : paths) decoded.push_back(vision::load_image(p));
  CHECK(max_abs_diff(r.embed_images(decoded).to_vector(), image_feat.to_vector()) == 0.0f);
  const Tensor<float, Cpu> text_feat = r.embed_texts(captions);
  CHECK(max_abs_diff(text_feat.to_vector(), expected.load<float>("text_feat").to_vector()) < 1e-4f);

  const std::vector<float> sim = r.similarity(image_feat, text_feat).to_vector();
  const std::vector<float> fi = expected.load<float>("image_feat").to_vector(), ft = expected.load<float>("text_feat").to_vector();
  const int64_t E = r.config().embed_dim;
  for (size_t i = 0; i < 3; ++i)
    for (size_t t = 0; t < 4; ++t) {
      float dot = 0;
      for (int64_t e = 0; e < E; ++e) dot += fi[i * size_t(E) + size_t(e)] * ft[t * size_t(E) + size_t(e)];
      CHECK(std::abs(sim[i * 4 + t] - dot) < 1e-4f);
    }
  const std::vector<float> itm = r.itm_score(paths, captions).to_vector();
  const std::vector<float> logits = expected.load<float>("itm_logits").to_vector();
  for (size_t k = 0; k < itm.size(); ++k)
    CHECK(std::abs(itm[k] - 1.0f / (1.0f + std::exp(logits[2 * k] - logits[2 * k + 1]))) < 1e-3f);
  CHECK(max_abs_diff(r.itm_score(decoded, captions).to_vector(), itm) < 1e-6f);

  const fs::path work = scratch("retriever");
  search::IndexBuildOptions b;
  b.model_name = "hf-small";
  search::build_image_index(r.model(), paths, (work / "g.idx").string(), b);
  const auto index = search::FeatureIndex::read((work / "g.idx").string());
  const auto hits = r.search(index, captions[1], 3);
  REQUIRE(hits.size() == 3);
  size_t best = 0;
  for (size_t i = 1; i < 3; ++i) best = sim[i * 4 + 1] > sim[best * 4 + 1] ? i : best;
  CHECK(hits[0].entry == int64_t(best));
  CHECK_THROWS_WITH(r.similarity(image_feat, transpose(text_feat, 0, 1)), Catch::Contains("needs [N, E] and [T, E]"));
}

TEST_CASE("blip::Retriever in bf16, int8 and fp16: features close to fp32, weights converted once per Retriever") {
  const fs::path dir = hf_root() / "small";
  const io::SafeTensorsFile expected((dir / "expected.safetensors").string());
  const std::vector<std::string> captions = read_lines(dir / "captions.txt");
  const std::vector<float> want = expected.load<float>("text_feat").to_vector();
  for (Precision precision : {Precision::bf16, Precision::int8, Precision::fp16}) {
    INFO(precision_name(precision));
    Retriever<>::Options options;
    options.precision = precision;
    const auto r = Retriever<>::load((dir / "model").string(), options);
    const Tensor<float, Cpu> text_feat = r.embed_texts(captions);
    const std::vector<float> got = text_feat.to_vector();
    const int64_t E = r.config().embed_dim;
    for (size_t t = 0; t < captions.size(); ++t) {
      double dot = 0;  // both rows are L2-normalised: the dot product is the cosine
      for (int64_t e = 0; e < E; ++e) dot += double(got[t * size_t(E) + size_t(e)]) * want[t * size_t(E) + size_t(e)];
      CHECK(dot > 0.99);
    }
    // A second call (the converted weights come from the Retriever's cache: the sharing itself is
    // tested in test_backend_ops) gives the same features bit for bit.
    CHECK(max_abs_diff(r.embed_texts(captions).to_vector(), got) == 0.0f);
  }
  const auto cache = std::make_shared<PrecisionScope::WeightCache>(Precision::bf16);
  CHECK_THROWS_WITH(PrecisionScope(Precision::int8, PrecisionScope::Weights::fixed, cache),
                    Catch::Contains("int8 scope was given the weight cache of bf16"));
}
