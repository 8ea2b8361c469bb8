// blip convert — rewrites a checkpoint (safetensors or PyTorch .pth; mmpretrain, Salesforce
// BLIP / LAVIS or transformers names; a file or a model folder) as safetensors in any of those
// namings and a chosen float dtype (include/blip/io/convert.hpp, docs/checkpoints.md). The
// output describes itself: the model's config and vocabulary fingerprint go into its metadata,
// and with --to-names hf its folder gets the files transformers' from_pretrained reads.
#include <cstdio>
#include <memory>

#include <blip/io/convert.hpp>
#include <blip/pretrained/self_describing.hpp>

#include "commands.hpp"
#include "model_setup.hpp"

namespace {

struct ConvertCliOptions {
  std::string in, out, from = "auto", to = "mmpretrain", dtype, preset, config, vocab;
};

void print_keys(const char* what, const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  std::fprintf(stderr, "blip convert: %zu %s:", keys.size(), what);
  for (size_t i = 0; i < keys.size() && i < 8; ++i) std::fprintf(stderr, " %s", keys[i].c_str());
  std::fprintf(stderr, "%s\n", keys.size() > 8 ? " ..." : "");
}

void run_convert(const ConvertCliOptions& o, const blip::cli::CommonOptions& common) {
  namespace pretrained = blip::pretrained;
  blip::io::ConvertOptions options;
  if (o.from != "auto") options.from = blip::io::parse_naming(o.from);
  options.to = blip::io::parse_naming(o.to);
  if (o.dtype == "f32") options.dtype = "F32";
  else if (o.dtype == "f16") options.dtype = "F16";
  else if (o.dtype == "bf16") options.dtype = "BF16";
  const bool to_hf = options.to == blip::io::KeyNaming::hf;

  // The model's config and vocabulary, recorded in the output. A checkpoint whose sizes cannot
  // be told (and none given) is converted all the same, with a warning (and, for an HF folder,
  // without its config.json).
  const pretrained::ModelFiles files = pretrained::find_model_files(o.in);
  const pretrained::PretrainedOptions po = blip::cli::ModelChoice{o.in, o.preset, o.config, o.vocab}.options();
  std::optional<blip::BlipConfig> config;
  std::optional<blip::text::BertTokenizer> tokenizer;
  std::string why_not;
  blip::io::with_checkpoint_file(files.weights, [&](const auto& source) {
    try {
      const auto rc = pretrained::resolve_config(files, source, po);
      pretrained::check_config_fits(source, rc.config, rc.source);
      config = rc.config;
      auto t = pretrained::resolve_tokenizer(files, pretrained::checkpoint_metadata(source), *config, po);
      pretrained::set_token_ids(*config, t.tokenizer);
      tokenizer.emplace(std::move(t.tokenizer));
    } catch (const blip::Error& e) {
      why_not = e.what();
    }
    return 0;
  });
  if (config) {
    options.metadata = pretrained::model_metadata(*config, tokenizer ? &tokenizer->vocab() : nullptr);
  } else if (!common.quiet) {
    std::fprintf(stderr, "blip convert: warning: the output will not describe itself%s (%s)\n",
                 to_hf ? " and no config.json is written; give the sizes with --config or --preset" : "",
                 why_not.c_str());
  }
  if (to_hf && config && !tokenizer && !common.quiet)
    std::fprintf(stderr, "blip convert: warning: no tokenizer files are written; give the vocabulary with --vocab (%s)\n",
                 why_not.c_str());

  if (const auto parent = std::filesystem::path(o.out).parent_path(); !parent.empty())
    std::filesystem::create_directories(parent);
  const blip::io::ConvertReport r = blip::io::convert_checkpoint(files.weights, o.out, options);
  if (to_hf && config) {
    const std::string folder = std::filesystem::path(o.out).parent_path().string();
    pretrained::write_hf_folder_files(folder, *config, tokenizer ? &tokenizer->vocab() : nullptr);
    if (std::filesystem::path(o.out).filename() != "model.safetensors" && !common.quiet)
      std::fprintf(stderr, "blip convert: warning: transformers' from_pretrained looks for model.safetensors, not %s\n",
                   std::filesystem::path(o.out).filename().c_str());
  }
  if (common.quiet) return;
  std::fprintf(stderr, "blip convert: %s (%s names%s%s) -> %s (%s names): %zu tensors%s\n", files.weights.c_str(),
               blip::io::naming_name(r.from), r.prefix.empty() ? "" : ", under ", r.prefix.c_str(), o.out.c_str(),
               blip::io::naming_name(options.to), r.written.size(),
               !to_hf || !config ? ""
               : tokenizer      ? "; with config.json, preprocessor_config.json, vocab.txt, tokenizer_config.json"
                                : "; with config.json, preprocessor_config.json");
  print_keys("keys the source naming does not define, left out", r.unknown);
  print_keys("keys the target naming has no place for, left out", r.dropped);
}

void add_convert(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a checkpoint between key namings and dtypes (writes safetensors)");
  cmd->add_option("in", o->in, "Checkpoint to read (.safetensors, .pth, .bin) or a model folder")->required();
  cmd->add_option("out", o->out, "safetensors file to write (replaced atomically)")->required();
  cmd->add_option("--from-names", o->from, "Key naming of the input (auto: detect from its keys)")
      ->check(CLI::IsMember({"auto", "mmpretrain", "blip", "lavis", "hf"}))->capture_default_str();
  cmd->add_option("--to-names", o->to, "Key naming to write (hf: also the files of a transformers folder)")
      ->check(CLI::IsMember({"mmpretrain", "blip", "lavis", "hf"}))->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "Store floating tensors as f32, f16 or bf16 (default: as in the input)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  auto* preset = cmd->add_option("--preset", o->preset, "Sizes of an input that records none: base, large, tiny")
                     ->check(CLI::IsMember(blip::cli::preset_names()));
  cmd->add_option("--config", o->config, "Sizes as a JSON file (blip's config.json or transformers' BlipConfig)")
      ->excludes(preset);
  cmd->add_option("--vocab", o->vocab, "The model's vocabulary (vocab.txt or tokenizer.json), recorded in the output");
  cmd->callback([o, &common] { run_convert(*o, common); });
}

}  // namespace

BLIP_CLI_COMMAND(50, add_convert);
