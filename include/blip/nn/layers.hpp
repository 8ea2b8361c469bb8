// blip/nn/layers.hpp — the basic parameterised layers: Linear, LayerNorm, Embedding.
//
// Contract: parameter names and layouts are PyTorch's (Linear weight [out, in] + bias [out];
// LayerNorm weight/bias [dim]; Embedding weight [vocab, dim]), so state dicts map one to one.
// Initialisation is explicit (init_* functions with a Generator); constructors make zeros
// (LayerNorm: ones/zeros, as torch).
#pragma once

#include "blip/nn/parameter.hpp"
#include "blip/ops/creation.hpp"
#include "blip/ops/index.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/norm.hpp"

namespace blip {

template <Differentiable T = float, Device D = Cpu>
struct Linear {
  using value_type = T;
  using device_type = D;
  Parameter<T, D> weight, bias;

  Linear() = default;
  Linear(int64_t in_features, int64_t out_features, bool with_bias = true)
      : weight(Tensor<T, D>::zeros({out_features, in_features})) {
    if (with_bias) bias = Parameter<T, D>(Tensor<T, D>::zeros({out_features}));
  }
  int64_t in_features() const { return weight.shape()[1]; }
  int64_t out_features() const { return weight.shape()[0]; }

  Tensor<T, D> operator()(const Tensor<T, D>& x, Branch branch = Branch::online) const {
    return linear(x, weight.get(branch), bias.defined() ? bias.get(branch) : Tensor<T, D>());
  }
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    f(join_name(prefix, "weight"), weight);
    if (bias.defined()) f(join_name(prefix, "bias"), bias);
  }
};

template <Differentiable T = float, Device D = Cpu>
struct LayerNorm {
  using value_type = T;
  using device_type = D;
  Parameter<T, D> weight, bias;
  double eps = 1e-5;

  LayerNorm() = default;
  LayerNorm(int64_t dim, double eps_)
      : weight(full<T, D>({dim}, T(1))), bias(Tensor<T, D>::zeros({dim})), eps(eps_) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x, Branch branch = Branch::online) const {
    return layer_norm(x, weight.get(branch), bias.get(branch), eps);
  }
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    f(join_name(prefix, "weight"), weight);
    f(join_name(prefix, "bias"), bias);
  }
};

template <Differentiable T = float, Device D = Cpu>
struct Embedding {
  using value_type = T;
  using device_type = D;
  Parameter<T, D> weight;
  int64_t padding_idx = -1;

  Embedding() = default;
  Embedding(int64_t vocab, int64_t dim, int64_t padding_idx_ = -1)
      : weight(Tensor<T, D>::zeros({vocab, dim})), padding_idx(padding_idx_) {}

  Tensor<T, D> operator()(const Tensor<int64_t, D>& ids, Branch branch = Branch::online) const {
    return embedding(ids, weight.get(branch), padding_idx);
  }
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    f(join_name(prefix, "weight"), weight);
  }
};

// Fills a parameter in place from a normal / truncated normal / constant (no autograd).
template <Differentiable T, Device D>
void init_normal(Parameter<T, D>& p, Generator& gen, double std) {
  p.assign(randn<T, D>(p.shape(), gen, 0.0, std));
}
template <Differentiable T, Device D>
void init_trunc_normal(Parameter<T, D>& p, Generator& gen, double std, double lo = -2.0, double hi = 2.0) {
  p.assign(trunc_normal<T, D>(p.shape(), gen, 0.0, std, lo, hi));
}
template <Differentiable T, Device D>
void init_constant(Parameter<T, D>& p, T value) {
  p.assign(full<T, D>(p.shape(), value));
}

}  // namespace blip
