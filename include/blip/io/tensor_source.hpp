// blip/io/tensor_source.hpp — TensorSource: what loading and converting need from a set of
// named tensors (a safetensors file, a PyTorch checkpoint, an in-memory StateDict).
//
// Contract: path() names the source in errors; keys() lists every tensor once; shape(name)
// and dtype(name) (a safetensors dtype name: "F32", "F16", "BF16", "F64", "I64", "I32", "U8",
// "BOOL") describe a tensor without reading it; load<T>(name) reads it converted to T. Unknown
// names throw blip::Error naming the source and the key.
// PrefixedSource views the keys of a source that start with a prefix, with the prefix removed
// (the parts of a training-state file).
#pragma once

#include <concepts>
#include <string>
#include <vector>

#include "blip/core/tensor.hpp"

namespace blip::io {

template <class S>
concept TensorSource = requires(const S& s, const std::string& name) {
  { s.path() } -> std::convertible_to<std::string>;
  { s.keys() } -> std::convertible_to<std::vector<std::string>>;
  { s.contains(name) } -> std::convertible_to<bool>;
  { s.shape(name) } -> std::convertible_to<Shape>;
  { s.dtype(name) } -> std::convertible_to<std::string>;
  { s.template load<float>(name) } -> std::same_as<Tensor<float, Cpu>>;
  { s.template load<int64_t>(name) } -> std::same_as<Tensor<int64_t, Cpu>>;
};

template <TensorSource S>
class PrefixedSource {
 public:
  PrefixedSource(const S& source, std::string prefix) : source_(source), prefix_(std::move(prefix)) {}

  std::string path() const { return str(source_.path(), " (", prefix_, "*)"); }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const std::string& key : source_.keys())
      if (key.size() > prefix_.size() && key.compare(0, prefix_.size(), prefix_) == 0) out.push_back(key.substr(prefix_.size()));
    return out;
  }
  bool contains(const std::string& name) const { return source_.contains(prefix_ + name); }
  Shape shape(const std::string& name) const { return source_.shape(prefix_ + name); }
  std::string dtype(const std::string& name) const { return source_.dtype(prefix_ + name); }
  template <Element T>
  Tensor<T, Cpu> load(const std::string& name) const {
    return source_.template load<T>(prefix_ + name);
  }

 private:
  const S& source_;
  std::string prefix_;
};

}  // namespace blip::io
