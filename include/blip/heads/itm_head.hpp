// blip/heads/itm_head.hpp — ITMHead: image-text matching classifier on the multimodal CLS.
//
// Contract: logits = fc(pooler(cls)) with 2 classes (index 1 = "matched"); the pooler is
// the ItmHead template argument: NoPooler (BLIP retrieval: identity) or WithPooler
// (dense + tanh, names `pooler.dense.*`). loss() is the mean cross-entropy.
// Names: fc.{weight,bias} [, pooler.dense.{weight,bias}].
#pragma once

#include <optional>

#include "blip/nn/layers.hpp"
#include "blip/ops/loss.hpp"

namespace blip {

struct NoPooler {};
struct WithPooler {};

template <class Pooler = NoPooler, Differentiable T = float, Device D = Cpu>
class ItmHead {
  static_assert(std::same_as<Pooler, NoPooler> || std::same_as<Pooler, WithPooler>,
                "ItmHead<Pooler>: Pooler must be blip::NoPooler or blip::WithPooler");

 public:
  using value_type = T;
  using device_type = D;
  static constexpr bool with_pooler = std::same_as<Pooler, WithPooler>;

  explicit ItmHead(int64_t hidden_size, int64_t num_classes = 2) : fc(hidden_size, num_classes) {
    if constexpr (with_pooler) pooler.emplace(hidden_size, hidden_size);
  }

  Tensor<T, D> operator()(const Tensor<T, D>& cls, Branch branch = Branch::online) const {
    if constexpr (with_pooler) return fc(blip::tanh((*pooler)(cls, branch)), branch);
    else return fc(cls, branch);
  }

  Tensor<T, D> loss(const Tensor<T, D>& logits, const Tensor<int64_t, D>& labels) const {
    return cross_entropy(logits, labels);
  }

  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    if constexpr (with_pooler) pooler->visit_parameters(f, join_name(prefix, "pooler.dense"));
    fc.visit_parameters(f, join_name(prefix, "fc"));
  }

  void init_weights(Generator& gen) {
    visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
      if (name.ends_with(".bias")) init_constant(p, T(0));
      else init_trunc_normal(p, gen, 0.02);
    }, "");
  }

  std::optional<Linear<T, D>> pooler;
  Linear<T, D> fc;
};

}  // namespace blip
