// blip/io/convert.hpp — converting a checkpoint between key namings and dtypes into a
// safetensors file.
//
// Contract: convert_state(source, out_path, options) renames every key of the source's naming
// (given, or detected with its wrapper prefix; keys outside the prefix are not the model's and
// are left out) into options.to through our (mmpretrain) names, streaming one tensor at a time
// into an atomically written safetensors file. Keys the source naming does not define are left
// out and listed in report.unknown; keys the target naming cannot hold (momentum copies, queues
// and temp for hf; `head.temp`, which is `temp`, for blip/lavis/hf) in report.dropped. Writing
// mmpretrain names adds `head.temp` = `temp`, as mmpretrain's state_dict() holds both; writing
// mmpretrain or blip/lavis names adds the `embeddings.position_ids` buffers (arange over the
// position table) their state dicts hold. Two source keys naming one tensor, or no key of the
// source naming at all, is an error.
// options.dtype ("F32", "F16", "BF16", "F64") converts floating tensors; integer and BOOL
// tensors keep theirs. The source's safetensors `__metadata__` is kept, options.metadata is
// set over it (the tool records the model's config there); "format": "pt" (what transformers
// expects) and "blip.naming" are set.
// convert_checkpoint(in, out, options) opens `in` as a PyTorch checkpoint (zip "PK" or legacy
// pickle magic; io/torch_checkpoint.hpp unwraps 'state_dict' / 'model') or else as safetensors.
#pragma once

#include <cstdio>
#include <map>
#include <optional>

#include "blip/io/checkpoint_file.hpp"
#include "blip/io/key_maps.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/safetensors_writer.hpp"
#include "blip/io/state_dict.hpp"
#include "blip/io/tensor_source.hpp"
#include "blip/io/torch_checkpoint.hpp"
#include "blip/ops/creation.hpp"

namespace blip::io {

struct ConvertOptions {
  std::optional<KeyNaming> from = std::nullopt;  // nullopt: detect
  KeyNaming to = KeyNaming::mmpretrain;
  std::optional<std::string> dtype = std::nullopt;  // floating tensors: "F32", "F16", "BF16" or "F64"
  std::map<std::string, std::string> metadata = {}; // set in the output's __metadata__ (blip.config, ...)
};

struct ConvertReport {
  KeyNaming from = KeyNaming::mmpretrain;
  std::string prefix;
  std::vector<std::string> written;  // output keys, in order
  std::vector<std::string> unknown;  // source keys the source naming does not define
  std::vector<std::string> dropped;  // source keys the target naming cannot hold
};

template <TensorSource S>
ConvertReport convert_state(const S& source, const std::string& out_path, const ConvertOptions& options = {}) {
  BLIP_CHECK(!options.dtype || is_floating_dtype(*options.dtype), "convert: dtype '", options.dtype.value_or(""),
             "' is not one of F32, F16, BF16, F64");
  ConvertReport report;
  const std::vector<std::string> keys = source.keys();
  if (options.from) {
    report.from = *options.from;
    try {
      const DetectedNaming d = detect_naming(keys, source.path());
      if (d.naming == *options.from) report.prefix = d.prefix;
    } catch (const Error&) {
    }
  } else {
    const DetectedNaming d = detect_naming(keys, source.path());
    report.from = d.naming;
    report.prefix = d.prefix;
  }
  const std::string& prefix = report.prefix;

  std::vector<TensorToWrite> entries;
  std::map<std::string, std::string> target_source;  // output key -> source key
  auto add = [&](const std::string& out_key, const std::string& key) {
    auto [it, inserted] = target_source.emplace(out_key, key);
    BLIP_CHECK(inserted, "convert: '", source.path(), "' keys '", it->second, "' and '", key, "' both become '", out_key,
               "'");
    const std::string dtype = source.dtype(key);
    const std::string stored = options.dtype && is_floating_dtype(dtype) ? *options.dtype : dtype;
    entries.push_back({out_key, stored, source.shape(key), [&source, key] { return load_any(source, key); }});
    report.written.push_back(out_key);
  };
  std::map<std::string, std::string> ours_to_key;
  for (const std::string& key : keys) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const auto ours = from_naming(key.substr(prefix.size()), report.from);
    if (!ours) {
      report.unknown.push_back(key);
      continue;
    }
    ours_to_key.emplace(*ours, key);
    const auto out_key = to_naming(*ours, options.to);
    if (!out_key) {
      report.dropped.push_back(key);
      continue;
    }
    add(*out_key, key);
  }
  BLIP_CHECK(!ours_to_key.empty(), "convert: '", source.path(), "' has no key of the ", naming_name(report.from),
             " naming", prefix.empty() ? std::string() : " under '" + prefix + "'", " (", keys.size(), " keys, e.g. '",
             keys.empty() ? std::string() : keys.front(), "')");
  if (options.to == KeyNaming::mmpretrain && ours_to_key.count("temp") && !target_source.count("head.temp"))
    add("head.temp", ours_to_key.at("temp"));

  // position_ids buffers (I64 arange [1, max_pos]) that the target's state dict holds.
  if (options.to != KeyNaming::hf) {
    for (const std::string module : {"text_backbone", "text_backbone_m", "multimodal_backbone"}) {
      const auto table = ours_to_key.find(module + ".embeddings.position_embeddings.weight");
      const auto ids_key = to_naming(module + ".embeddings.position_ids", options.to);
      if (table == ours_to_key.end() || !ids_key || target_source.count(*ids_key)) continue;
      const Shape table_shape = source.shape(table->second);
      BLIP_CHECK(table_shape.size() == 2, "convert: '", source.path(), "' key '", table->second, "' has shape ",
                 table_shape, ", not [positions, width]");
      const int64_t max_pos = table_shape[0];
      target_source.emplace(*ids_key, "");
      entries.push_back({*ids_key, "I64", Shape{1, max_pos},
                         [max_pos] { return AnyTensor(reshape(arange<int64_t>(max_pos), {1, max_pos})); }});
      report.written.push_back(*ids_key);
    }
  }

  std::map<std::string, std::string> metadata;
  if constexpr (requires { source.metadata(); }) {
    for (const auto& [k, v] : source.metadata()) metadata[k] = v;
  }
  for (const auto& [k, v] : options.metadata) metadata[k] = v;
  if (!metadata.count("format")) metadata["format"] = "pt";
  metadata["blip.naming"] = naming_name(options.to);
  write_safetensors(out_path, entries, metadata);
  return report;
}

inline ConvertReport convert_checkpoint(const std::string& in_path, const std::string& out_path,
                                        const ConvertOptions& options = {}) {
  return with_checkpoint_file(in_path, [&](const auto& source) { return convert_state(source, out_path, options); });
}

}  // namespace blip::io
