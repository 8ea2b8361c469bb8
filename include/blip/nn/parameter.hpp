// blip/nn/parameter.hpp — Parameter: a trainable value, its gradient and an optional momentum
// (EMA) copy; named visiting of a module's parameters.
//
// Contract:
// - value() requires grad; grad() is what backward() accumulated (undefined before).
// - The momentum copy is what BLIP's momentum encoders use: copy_params() sets it to the
//   value; momentum_update(m) applies m_copy = m_copy * m + value * (1 - m) in the element
//   type (m as float, 1 - m computed in double then rounded, as mmpretrain); alias_momentum()
//   makes the copy share the value's memory, so it follows every later in-place optimiser
//   update (mmpretrain's `param_m.data = param.data`), and EMA updates leave it alone.
// - momentum_update(params, m) does the same for a list of parameters as one multi-tensor update
//   (few launches on a device, whatever the number of parameters).
// - Modules expose `visit_parameters(fn, prefix)` calling fn(dotted_name, Parameter&) with
//   mmpretrain's state_dict names; named_parameters() collects them.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "blip/autograd/engine.hpp"

namespace blip {

// Which weights a forward pass reads: the trained ones, or their momentum (EMA) copies.
enum class Branch { online, momentum };

template <Differentiable T, Device D>
class Parameter;
template <Differentiable T, Device D>
void momentum_update(const std::vector<Parameter<T, D>*>& params, double momentum);

template <Differentiable T = float, Device D = Cpu>
class Parameter {
 public:
  using value_type = T;
  using device_type = D;

  Parameter() = default;
  explicit Parameter(Tensor<T, D> initial) : value_(std::move(initial)) { value_.set_requires_grad(true); }

  const Tensor<T, D>& value() const { return value_; }
  // The tensor a forward pass on `branch` uses (momentum copies never require grad).
  const Tensor<T, D>& get(Branch branch) const {
    if (branch == Branch::online) return value_;
    BLIP_CHECK(has_momentum(), "Parameter: a momentum forward needs a momentum copy (call copy_params first)");
    return momentum_;
  }
  const Shape& shape() const { return value_.shape(); }
  Tensor<T, D> grad() const { return value_.grad(); }
  void zero_grad() { value_.zero_grad(); }
  bool defined() const { return value_.defined(); }

  // Overwrites the value in place (a checkpoint load); shapes must match.
  void assign(const Tensor<T, D>& values, const std::string& name = "parameter") {
    BLIP_CHECK(values.shape() == value_.shape(), name, ": shape ", values.shape(), " does not match ", value_.shape());
    copy_into(value_, values.detach());
  }

  bool has_momentum() const { return momentum_.defined(); }
  bool momentum_aliased() const { return aliased_; }
  const Tensor<T, D>& momentum() const { return momentum_; }

  // momentum <- value (a separate copy; ends aliasing).
  void copy_params() {
    momentum_ = clone(value_.detach());
    aliased_ = false;
  }
  void alias_momentum() {
    momentum_ = value_.detach();
    aliased_ = true;
  }
  void assign_momentum(const Tensor<T, D>& values, const std::string& name = "momentum") {
    if (!has_momentum() || aliased_) copy_params();
    BLIP_CHECK(values.shape() == momentum_.shape(), name, ": shape ", values.shape(), " does not match ",
               momentum_.shape());
    copy_into(momentum_, values.detach());
  }
  void momentum_update(double momentum) { blip::momentum_update(std::vector<Parameter*>{this}, momentum); }

 private:
  Tensor<T, D> value_;
  Tensor<T, D> momentum_;
  bool aliased_ = false;
};

template <Differentiable T, Device D>
void momentum_update(const std::vector<Parameter<T, D>*>& params, double momentum) {
  std::vector<backend::EmaTensor<T>> terms;
  for (Parameter<T, D>* p : params) {
    BLIP_CHECK(p->has_momentum(), "Parameter::momentum_update: no momentum copy (call copy_params first)");
    if (!p->momentum_aliased()) terms.push_back({p->momentum().data(), p->value().data(), p->momentum().numel()});
  }
  kernels<D>::ema(terms.data(), terms.size(), static_cast<T>(momentum), static_cast<T>(1.0 - momentum));
}

template <Differentiable T, Device D>
using NamedParameter = std::pair<std::string, Parameter<T, D>*>;

template <class M>
std::vector<NamedParameter<typename M::value_type, typename M::device_type>> named_parameters(
    M& module, const std::string& prefix = "") {
  std::vector<NamedParameter<typename M::value_type, typename M::device_type>> out;
  module.visit_parameters([&](const std::string& name, auto& p) { out.emplace_back(name, &p); }, prefix);
  return out;
}

inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace blip
