// blip/io/model_state.hpp — loading a BlipRetrieval's state from a safetensors file with
// mmpretrain's state-dict names.
//
// Contract: every trainable parameter must be present (strict) with its exact shape; `temp`
// may appear as `temp` and/or `head.temp` (one parameter; if both are present they must be
// equal). Momentum copies (`*_m.*`), queues (`head.*_queue`, `head.queue_ptr`) and
// `position_ids` buffers are optional: absent momentum copies start equal to the online
// weights, absent queues keep their random initialisation. Unknown keys are an error in
// strict mode. Every error names the file and the keys.
#pragma once

#include <set>

#include "blip/io/safetensors.hpp"
#include "blip/models/blip_retrieval.hpp"

namespace blip::io {

struct LoadReport {
  std::vector<std::string> missing, unexpected, defaulted;  // defaulted: optional keys not in the file
};

template <class Model>
LoadReport load_state_dict(Model& model, const SafeTensorsFile& file, bool strict = true) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  NoGradGuard no_grad;
  LoadReport report;
  std::set<std::string> used;
  auto take = [&](const std::string& name, const Shape& expected) -> std::optional<Tensor<T, D>> {
    if (!file.contains(name)) return std::nullopt;
    used.insert(name);
    const SafeTensorsEntry& e = file.entry(name);
    BLIP_CHECK(e.shape == expected, "load_state_dict: '", file.path(), "' key '", name, "' has shape ", e.shape,
               ", the model expects ", expected);
    return to<D>(file.load<T>(name));
  };
  model.visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
    if (name == "temp") {
      auto a = take("temp", p.shape());
      auto b = take("head.temp", p.shape());
      if (a && b)
        BLIP_CHECK(a->item() == b->item(), "load_state_dict: '", file.path(), "' holds temp ", a->item(),
                   " and head.temp ", b->item(), ", which must be one parameter");
      if (a || b) p.assign(a ? *a : *b, name);
      else report.missing.push_back(name);
      return;
    }
    if (auto v = take(name, p.shape())) p.assign(*v, name);
    else report.missing.push_back(name);
  });
  model.visit_momentum_parameters([&](const std::string& name_m, const std::string&, Parameter<T, D>& p) {
    if (auto v = take(name_m, p.shape())) p.assign_momentum(*v, name_m);
    else {
      p.copy_params();
      report.defaulted.push_back(name_m);
    }
  });
  model.head.visit_buffers([&](const std::string& name, Tensor<T, D>& buffer) {
    if (auto v = take(name, buffer.shape())) copy_into(buffer, *v);
    else report.defaulted.push_back(name);
  }, "head");
  model.head.visit_index_buffers([&](const std::string& name, Tensor<int64_t, D>& buffer) {
    if (!file.contains(name)) {
      report.defaulted.push_back(name);
      return;
    }
    used.insert(name);
    BLIP_CHECK(file.entry(name).shape == buffer.shape(), "load_state_dict: '", file.path(), "' key '", name,
               "' has shape ", file.entry(name).shape, ", the model expects ", buffer.shape());
    buffer = to<D>(file.load<int64_t>(name));
  }, "head");
  for (const std::string prefix : {"text_backbone", "text_backbone_m", "multimodal_backbone"}) {
    const std::string name = prefix + ".embeddings.position_ids";
    if (file.contains(name)) {
      used.insert(name);
      const std::vector<int64_t> ids = file.load<int64_t>(name).to_vector();
      for (size_t i = 0; i < ids.size(); ++i)
        BLIP_CHECK(ids[i] == static_cast<int64_t>(i), "load_state_dict: '", file.path(), "' key '", name,
                   "' is not arange (entry ", i, " is ", ids[i], ")");
    }
  }
  for (const auto& [name, entry] : file.entries())
    if (!used.count(name)) report.unexpected.push_back(name);
  if (strict) {
    auto list = [](const std::vector<std::string>& names) {
      std::string s;
      for (size_t i = 0; i < names.size() && i < 10; ++i) s += (i ? ", " : "") + names[i];
      if (names.size() > 10) s += str(", ... (", names.size(), " in all)");
      return s;
    };
    BLIP_CHECK(report.missing.empty(), "load_state_dict: '", file.path(), "' lacks ", report.missing.size(),
               " parameter(s): ", list(report.missing));
    BLIP_CHECK(report.unexpected.empty(), "load_state_dict: '", file.path(), "' has ", report.unexpected.size(),
               " unexpected key(s): ", list(report.unexpected));
  }
  return report;
}

}  // namespace blip::io
