// blip/io/model_state.hpp — loading a BlipRetrieval's state from any TensorSource (a
// safetensors file, a PyTorch checkpoint, a StateDict) in any supported key naming.
//
// Contract: load_state_dict(model, source, options)
// - naming: given, or detected from the keys (io/key_maps.hpp), with the wrapper prefix the
//   model's keys sit under ("model." in BLIP's .pth files); keys outside that prefix are not
//   looked at.
// - Every trainable parameter but `temp` must be present with its exact shape; a shape mismatch
//   is an error naming the key and both shapes. `temp` may appear as `temp` and/or `head.temp`
//   (one parameter; both present must be equal).
// - Optional (unless options.complete, as a training-state resume asks): `temp` (absent: the
//   model's value stays), momentum copies `*_m.*` (absent: copied from the online weights, as
//   the reference's copy_params), queues and `queue_ptr` (absent: the model's own, which a fresh
//   model initialises randomly as the reference does); absent ones are listed in
//   report.defaulted. `embeddings.position_ids` buffers may be absent (not reported); present,
//   they must be arange [1, max_position_embeddings].
// - A ViT `pos_embed` for another patch grid ([1, 1 + g*g, D], g != the model's) is resized as
//   BLIP's interpolate_pos_embed (bicubic, align_corners=False, no antialias, CLS row kept:
//   nn/vision_transformer.hpp's resize_pos_embed, the same math) and listed in
//   report.interpolated; options.interpolate_pos_embed = false makes it a shape error.
// - report.missing / report.unexpected name keys as the source spells them (prefix included);
//   report.defaulted uses the model's (mmpretrain) names. strict (default): any missing or
//   unexpected key is an error listing them; otherwise they are only reported.
// - Every check runs before the first assignment: an error leaves the model unchanged.
#pragma once

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "blip/io/key_maps.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/tensor_source.hpp"
#include "blip/models/blip_retrieval.hpp"

namespace blip::io {

struct LoadOptions {
  std::optional<KeyNaming> naming = std::nullopt;  // nullopt: detect from the keys
  bool strict = true;
  bool complete = false;  // also require temp, momentum copies and queues
  bool interpolate_pos_embed = true;
};

struct LoadReport {
  KeyNaming naming = KeyNaming::mmpretrain;
  std::string prefix;
  std::vector<std::string> missing, unexpected, defaulted, interpolated;
};

namespace detail {

inline std::string list_keys(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 10; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 10) s += str(", ... (", names.size(), " in all)");
  return s;
}

}  // namespace detail

template <class Model, TensorSource S>
LoadReport load_state_dict(Model& model, const S& source, const LoadOptions& options = {}) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  NoGradGuard no_grad;
  LoadReport report;
  const std::vector<std::string> keys = source.keys();
  const std::string where = source.path();
  if (options.naming) {
    report.naming = *options.naming;
    try {
      const DetectedNaming d = detect_naming(keys, where);
      if (d.naming == *options.naming) report.prefix = d.prefix;
    } catch (const Error&) {
    }
  } else {
    const DetectedNaming d = detect_naming(keys, where);
    report.naming = d.naming;
    report.prefix = d.prefix;
  }
  const std::string& prefix = report.prefix;

  // our name -> the source's key
  std::map<std::string, std::string> source_key;
  for (const std::string& key : keys) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const auto ours = from_naming(key.substr(prefix.size()), report.naming);
    if (!ours) {
      report.unexpected.push_back(key);
      continue;
    }
    auto [it, inserted] = source_key.emplace(*ours, key);
    BLIP_CHECK(inserted, "load_state_dict: '", where, "' keys '", it->second, "' and '", key, "' are both ", *ours);
  }
  auto their_name = [&](const std::string& ours) {
    const auto theirs = to_naming(ours, report.naming);
    return theirs ? prefix + *theirs : ours;
  };

  // Two passes over the model: the first only checks (names, shapes, values of the small
  // buffers) and throws before anything changes; the second assigns.
  auto run = [&](bool apply, LoadReport& r) {
    std::set<std::string> used;
    // The parameters' copies are gathered and run in batches of up to 256 MiB (one parallel pass
    // each, instead of ~1,000 single-threaded copies), bounding what converted sources hold.
    std::vector<std::pair<Tensor<T, D>, Tensor<T, D>>> pending;
    int64_t pending_bytes = 0;
    auto flush = [&] {
      copy_into_streaming(std::span<const std::pair<Tensor<T, D>, Tensor<T, D>>>(pending));
      pending.clear();
      pending_bytes = 0;
    };
    auto copy_later = [&](const Tensor<T, D>& dst, const Tensor<T, D>& src) {
      pending.emplace_back(dst, src);
      pending_bytes += src.numel() * static_cast<int64_t>(sizeof(T));
      if (pending_bytes >= (int64_t{256} << 20)) flush();
    };
    auto take = [&](const std::string& name, const Shape& expected) -> std::optional<Tensor<T, D>> {
      auto it = source_key.find(name);
      if (it == source_key.end()) return std::nullopt;
      const std::string& key = it->second;
      used.insert(key);
      const Shape shape = source.shape(key);
      const bool is_pos_embed = name == "vision_backbone.pos_embed" || name == "vision_backbone_m.pos_embed";
      if (shape != expected && is_pos_embed && options.interpolate_pos_embed && shape.size() == 3 &&
          expected.size() == 3 && shape[0] == 1 && shape[2] == expected[2] && shape[1] > 1) {
        const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(shape[1] - 1))));
        const auto G = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(expected[1] - 1))));
        BLIP_CHECK(g * g == shape[1] - 1 && G * G == expected[1] - 1, "load_state_dict: '", where, "' key '", key,
                   "' has shape ", shape, ", which is not 1 + a square grid of positions (the model expects ",
                   expected, ")");
        r.interpolated.push_back(name);
        if (!apply) return Tensor<T, D>();
        return to<D>(resize_pos_embed(source.template load<T>(key), g, G, G));
      }
      BLIP_CHECK(shape == expected, "load_state_dict: '", where, "' key '", key, "' has shape ", shape,
                 ", the model expects ", expected);
      if (!apply) return Tensor<T, D>();
      return to<D>(source.template load<T>(key));
    };
    auto absent = [&](const std::string& name) {
      if (options.complete) r.missing.push_back(their_name(name));
      else r.defaulted.push_back(name);
    };

    model.visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
      if (name == "temp") {
        auto a = take("temp", p.shape());
        auto b = take("head.temp", p.shape());
        if (a && b && !apply) {
          const T ta = source.template load<T>(source_key.at("temp")).item();
          const T tb = source.template load<T>(source_key.at("head.temp")).item();
          BLIP_CHECK(ta == tb, "load_state_dict: '", where, "' holds temp ", ta, " and head.temp ", tb,
                     ", which must be one parameter");
        }
        if (a || b) {
          if (apply) copy_later(p.value(), a ? *a : *b);
        } else {
          absent(name);
        }
        return;
      }
      if (auto v = take(name, p.shape())) {
        if (apply) copy_later(p.value(), *v);  // shapes were checked in the first pass
      } else {
        r.missing.push_back(their_name(name));
      }
    });
    flush();  // before the momentum copies, which copy_params() takes from the loaded values
    model.visit_momentum_parameters([&](const std::string& name_m, const std::string&, Parameter<T, D>& p) {
      if (auto v = take(name_m, p.shape())) {
        if (apply) {
          if (!p.has_momentum() || p.momentum_aliased()) p.copy_params();
          copy_later(p.momentum(), *v);
        }
      } else {
        if (apply) p.copy_params();
        absent(name_m);
      }
    });
    flush();
    model.head.visit_buffers([&](const std::string& name, Tensor<T, D>& buffer) {
      if (auto v = take(name, buffer.shape())) {
        if (apply) copy_into(buffer, *v);
      } else {
        absent(name);
      }
    }, "head");
    model.head.visit_index_buffers([&](const std::string& name, Tensor<int64_t, D>& buffer) {
      auto it = source_key.find(name);
      if (it == source_key.end()) return absent(name);
      used.insert(it->second);
      BLIP_CHECK(source.shape(it->second) == buffer.shape(), "load_state_dict: '", where, "' key '", it->second,
                 "' has shape ", source.shape(it->second), ", the model expects ", buffer.shape());
      const Tensor<int64_t> loaded = source.template load<int64_t>(it->second);
      if (name == "head.queue_ptr") {  // the enqueue trusts it on the device
        const int64_t ptr = loaded.to_vector().at(0), Q = model.head.queue_size();
        BLIP_CHECK(ptr >= 0 && ptr < Q, "load_state_dict: '", where, "' key '", it->second, "' is ", ptr,
                   ", outside the queue [0, ", Q, ")");
      }
      if (apply) copy_into(buffer, to<D>(loaded));
    }, "head");
    const int64_t max_pos = model.config().text.max_position_embeddings;
    for (const std::string module : {"text_backbone", "text_backbone_m", "multimodal_backbone"}) {
      auto it = source_key.find(module + ".embeddings.position_ids");
      if (it == source_key.end()) continue;
      const std::string& key = it->second;
      used.insert(key);
      if (apply) continue;
      BLIP_CHECK(source.shape(key) == Shape({1, max_pos}), "load_state_dict: '", where, "' key '", key,
                 "' has shape ", source.shape(key), ", the model expects ", Shape({1, max_pos}));
      const std::vector<int64_t> ids = source.template load<int64_t>(key).to_vector();
      for (size_t i = 0; i < ids.size(); ++i)
        BLIP_CHECK(ids[i] == static_cast<int64_t>(i), "load_state_dict: '", where, "' key '", key,
                   "' is not arange (entry ", i, " is ", ids[i], ")");
    }
    for (const auto& [ours, key] : source_key)
      if (!used.count(key)) r.unexpected.push_back(key);
  };

  run(false, report);
  if (options.strict) {
    BLIP_CHECK(report.missing.empty(), "load_state_dict: '", where, "' (", naming_name(report.naming), " names) lacks ",
               report.missing.size(), " key(s): ", detail::list_keys(report.missing));
    BLIP_CHECK(report.unexpected.empty(), "load_state_dict: '", where, "' (", naming_name(report.naming), " names) has ",
               report.unexpected.size(), " unexpected key(s): ", detail::list_keys(report.unexpected));
  }
  LoadReport scratch;
  run(true, scratch);
  return report;
}

// The earlier signature: strict or not, naming detected.
template <class Model, TensorSource S>
LoadReport load_state_dict(Model& model, const S& source, bool strict) {
  LoadOptions options;
  options.strict = strict;
  return load_state_dict(model, source, options);
}

}  // namespace blip::io
