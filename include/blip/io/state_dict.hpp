// blip/io/state_dict.hpp — StateDict: an in-memory, insertion-ordered name -> tensor map (a
// TensorSource), and export_state_dict(model): a BlipRetrieval's state with mmpretrain's names.
//
// Contract:
// - AnyTensor holds a CPU tensor of any storage type; dtype_of() gives its safetensors dtype
//   name. load_any(source, name) reads a tensor in its stored type ("BOOL" reads as U8).
// - StateDict::insert rejects a duplicate name; load<T>(name) converts with blip::cast (16-bit
//   floats through float), as SafeTensorsFile::load does.
// - export_state_dict(model) lists what mmpretrain's model.state_dict() holds, in this order:
//   the trainable parameters (visit_parameters), `head.temp` (the same tensor as `temp`), the
//   momentum copies `*_m.*` (an aliased copy exports the online value it aliases), the head's
//   queues and pointer, and the `embeddings.position_ids` buffers of the text backbones: 950
//   keys at BLIP-base. The tensors share the model's memory on the CPU (clone for a snapshot).
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "blip/io/tensor_source.hpp"
#include "blip/nn/parameter.hpp"
#include "blip/ops/copy.hpp"

namespace blip::io {

using AnyTensor = std::variant<Tensor<float, Cpu>, Tensor<double, Cpu>, Tensor<fp16, Cpu>, Tensor<bf16, Cpu>,
                               Tensor<int64_t, Cpu>, Tensor<int32_t, Cpu>, Tensor<uint8_t, Cpu>>;

template <Element T>
constexpr const char* safetensors_dtype() {
  if constexpr (std::same_as<T, float>) return "F32";
  else if constexpr (std::same_as<T, double>) return "F64";
  else if constexpr (std::same_as<T, fp16>) return "F16";
  else if constexpr (std::same_as<T, bf16>) return "BF16";
  else if constexpr (std::same_as<T, int64_t>) return "I64";
  else if constexpr (std::same_as<T, int32_t>) return "I32";
  else if constexpr (std::same_as<T, int8_t>) return "I8";
  else return "U8";
}

inline std::string dtype_of(const AnyTensor& t) {
  return std::visit([](const auto& x) -> std::string { return safetensors_dtype<typename std::decay_t<decltype(x)>::value_type>(); }, t);
}
inline const Shape& shape_of(const AnyTensor& t) {
  return std::visit([](const auto& x) -> const Shape& { return x.shape(); }, t);
}
inline bool is_floating_dtype(const std::string& dtype) {
  return dtype == "F32" || dtype == "F64" || dtype == "F16" || dtype == "BF16";
}

template <TensorSource S>
AnyTensor load_any(const S& source, const std::string& name) {
  const std::string dtype = source.dtype(name);
  if (dtype == "F32") return source.template load<float>(name);
  if (dtype == "F64") return source.template load<double>(name);
  if (dtype == "F16") return source.template load<fp16>(name);
  if (dtype == "BF16") return source.template load<bf16>(name);
  if (dtype == "I64") return source.template load<int64_t>(name);
  if (dtype == "I32") return source.template load<int32_t>(name);
  if (dtype == "U8" || dtype == "BOOL") return source.template load<uint8_t>(name);
  fail("load: '", source.path(), "' tensor '", name, "' has dtype ", dtype, ", which blip does not read");
}

class StateDict {
 public:
  explicit StateDict(std::string name = "<state dict>") : name_(std::move(name)) {}

  const std::string& path() const { return name_; }
  const std::vector<std::string>& keys() const { return order_; }
  size_t size() const { return order_.size(); }
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  const AnyTensor& at(const std::string& name) const {
    auto it = tensors_.find(name);
    BLIP_CHECK(it != tensors_.end(), "StateDict: '", name_, "' has no tensor '", name, "'");
    return it->second;
  }
  Shape shape(const std::string& name) const { return shape_of(at(name)); }
  std::string dtype(const std::string& name) const { return dtype_of(at(name)); }

  template <Element T>
  Tensor<T, Cpu> load(const std::string& name) const {
    return std::visit([](const auto& x) -> Tensor<T, Cpu> {
      using S = typename std::decay_t<decltype(x)>::value_type;
      if constexpr (std::same_as<S, T>) return x;
      else return cast<T>(x);
    }, at(name));
  }

  template <Element T, Device D>
  void insert(const std::string& name, const Tensor<T, D>& tensor) {
    insert_any(name, AnyTensor(to<Cpu>(tensor.detach())));
  }
  void insert_any(const std::string& name, AnyTensor tensor) {
    BLIP_CHECK(!contains(name), "StateDict: '", name_, "' already holds '", name, "'");
    order_.push_back(name);
    tensors_.emplace(name, std::move(tensor));
  }

 private:
  std::string name_;
  std::vector<std::string> order_;
  std::map<std::string, AnyTensor> tensors_;
};

// The model's state with mmpretrain's names (see the contract above).
template <class Model>
StateDict export_state_dict(Model& model) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  StateDict out("<model state>");
  model.visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
    out.insert(name, p.value());
    if (name == "temp") out.insert("head.temp", p.value());
  });
  model.visit_momentum_parameters([&](const std::string& name_m, const std::string&, Parameter<T, D>& p) {
    out.insert(name_m, p.has_momentum() ? p.momentum() : p.value());
  });
  model.head.visit_buffers([&](const std::string& name, Tensor<T, D>& b) { out.insert(name, b); }, "head");
  model.head.visit_index_buffers([&](const std::string& name, Tensor<int64_t, D>& b) { out.insert(name, b); }, "head");
  out.insert("text_backbone.embeddings.position_ids", model.text_backbone.position_ids);
  out.insert("text_backbone_m.embeddings.position_ids", model.text_backbone.position_ids);
  if constexpr (Model::separate_multimodal)
    out.insert("multimodal_backbone.embeddings.position_ids", model.multimodal_backbone->position_ids);
  return out;
}

}  // namespace blip::io
