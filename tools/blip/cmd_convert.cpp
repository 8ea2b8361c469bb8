// blip convert — rewrites a checkpoint (safetensors or PyTorch .pth; mmpretrain, Salesforce
// BLIP / LAVIS or transformers names) as safetensors in any of those namings and a chosen
// float dtype (include/blip/io/convert.hpp, docs/checkpoints.md).
#include <cstdio>
#include <memory>

#include <blip/io/convert.hpp>

#include "commands.hpp"

namespace {

struct ConvertCliOptions {
  std::string in, out, from = "auto", to = "mmpretrain", dtype;
};

void print_keys(const char* what, const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  std::fprintf(stderr, "blip convert: %zu %s:", keys.size(), what);
  for (size_t i = 0; i < keys.size() && i < 8; ++i) std::fprintf(stderr, " %s", keys[i].c_str());
  std::fprintf(stderr, "%s\n", keys.size() > 8 ? " ..." : "");
}

void run_convert(const ConvertCliOptions& o, const blip::cli::CommonOptions& common) {
  blip::io::ConvertOptions options;
  if (o.from != "auto") options.from = blip::io::parse_naming(o.from);
  options.to = blip::io::parse_naming(o.to);
  if (o.dtype == "f32") options.dtype = "F32";
  else if (o.dtype == "f16") options.dtype = "F16";
  else if (o.dtype == "bf16") options.dtype = "BF16";
  const blip::io::ConvertReport r = blip::io::convert_checkpoint(o.in, o.out, options);
  if (common.quiet) return;
  std::fprintf(stderr, "blip convert: %s (%s names%s%s) -> %s (%s names): %zu tensors\n", o.in.c_str(),
               blip::io::naming_name(r.from), r.prefix.empty() ? "" : ", under ", r.prefix.c_str(), o.out.c_str(),
               blip::io::naming_name(options.to), r.written.size());
  print_keys("keys the source naming does not define, left out", r.unknown);
  print_keys("keys the target naming has no place for, left out", r.dropped);
}

void add_convert(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a checkpoint between key namings and dtypes (writes safetensors)");
  cmd->add_option("in", o->in, "Checkpoint to read: .safetensors or PyTorch .pth/.bin")->required();
  cmd->add_option("out", o->out, "safetensors file to write (replaced atomically)")->required();
  cmd->add_option("--from-names", o->from, "Key naming of the input (auto: detect from its keys)")
      ->check(CLI::IsMember({"auto", "mmpretrain", "blip", "lavis", "hf"}))->capture_default_str();
  cmd->add_option("--to-names", o->to, "Key naming to write")
      ->check(CLI::IsMember({"mmpretrain", "blip", "lavis", "hf"}))->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "Store floating tensors as f32, f16 or bf16 (default: as in the input)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->callback([o, &common] { run_convert(*o, common); });
}

}  // namespace

BLIP_CLI_COMMAND(50, add_convert);
