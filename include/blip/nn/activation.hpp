// blip/nn/activation.hpp — activation policies for the feed-forward blocks.
//
// Contract: each policy is a type with `static Tensor apply(const Tensor&)`; the block's
// template argument picks one at compile time. GeluErf is BLIP's (exact erf GELU, both the ViT
// and BERT); GeluTanh (the tanh approximation) and Relu are there for custom configurations.
#pragma once

#include <cmath>
#include <numbers>

#include "blip/ops/elementwise.hpp"
#include "blip/ops/index.hpp"

namespace blip {

struct GeluErf {
  template <Element T, Device D>
  static Tensor<T, D> apply(const Tensor<T, D>& x) {
    return gelu(x);
  }
};

struct GeluTanh {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  template <Element T, Device D>
  static Tensor<T, D> apply(const Tensor<T, D>& x) {
    const T c = static_cast<T>(std::sqrt(2.0 / std::numbers::pi));
    const Tensor<T, D> inner = scale(add(x, scale(mul(mul(x, x), x), T(0.044715))), c);
    return scale(mul(x, add(blip::tanh(inner), full<T, D>({}, T(1)))), T(0.5));
  }
};

struct Relu {
  template <Element T, Device D>
  static Tensor<T, D> apply(const Tensor<T, D>& x) {
    const std::vector<T> v = x.to_vector();
    std::vector<uint8_t> negative(v.size());
    for (size_t i = 0; i < v.size(); ++i) negative[i] = v[i] < T(0);
    return masked_fill(x, Tensor<uint8_t, D>::from_vector(x.shape(), negative), T(0));
  }
};

template <class A>
concept Activation = requires(const Tensor<float, Cpu>& x) {
  { A::apply(x) } -> std::same_as<Tensor<float, Cpu>>;
};

}  // namespace blip
