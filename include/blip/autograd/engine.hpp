// blip/autograd/engine.hpp — backward(): walks the recorded graph from a one-element result.
//
// Contract: gradients of leaves that require grad are accumulated (added) into their `grad()`;
// intermediate gradients live only during the call. Each node's backward runs once, after all
// gradients flowing into it are summed (reverse topological order), with grad mode off. The
// graph's saved tensors are released as it goes, so a second backward() through the same graph
// throws. A leaf's post_accumulate hook runs as soon as every node of this graph that feeds it
// has run (or was found to get no gradient), in an order that depends only on the graph. Sits
// above ops/ because summing gradients is an op.
#pragma once

#include <unordered_map>
#include <unordered_set>

#include "blip/ops/elementwise.hpp"

namespace blip {

namespace detail {

// into += g. In place where `into` alone holds its memory (no alias another input received, not
// the seed, not a grad() the caller kept), so a tensor used k times maps no fresh memory for its
// k - 1 sums: BLIP-base training sums two contributions into each text-encoder weight gradient and
// several dense [30524, 768] word-embedding ones, each of which otherwise took fresh pages the
// kernel had to zero (docs/performance.md). Else a new sum, as before.
template <Element T, Device D>
void accumulate(Tensor<T, D>& into, const Tensor<T, D>& g) {
  if (!into.defined()) {
    into = g;
    return;
  }
  if (into.storage().use_count() == 1 && into.is_contiguous() && into.shape() == g.shape()) {
    const Tensor<T, D> gc = contiguous(g);
    kernels<D>::binary(BinaryOp::add, into.shape(), into.data(), into.strides(), gc.data(), gc.strides(), into.data());
    return;
  }
  into = add(into, g);
}

}  // namespace detail

template <Element T, Device D>
void Tensor<T, D>::backward() const requires Differentiable<T> {
  BLIP_CHECK(numel() == 1, "backward: called on a tensor of shape ", shape_,
             "; it needs a one-element result (reduce it first)");
  BLIP_CHECK(requires_grad(), "backward: the tensor does not require grad (no recorded op led to it)");
  NoGradGuard no_grad;
  const Tensor seed = full<T, D>(shape_, T(1));
  if (!autograd_->grad_fn) {  // a leaf
    detail::accumulate(autograd_->grad, seed);
    if (autograd_->post_accumulate) autograd_->post_accumulate();
    return;
  }
  // Reverse post-order of an iterative depth-first walk = a topological order.
  using NodeT = Node<T, D>;
  std::vector<NodeT*> order;
  std::unordered_set<NodeT*> seen;
  std::vector<std::pair<NodeT*, size_t>> stack{{autograd_->grad_fn.get(), 0}};
  seen.insert(autograd_->grad_fn.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const auto& input = node->inputs[next++];
      if (input && input->grad_fn && seen.insert(input->grad_fn.get()).second)
        stack.emplace_back(input->grad_fn.get(), 0);
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  // Leaves with a post-accumulate hook: how many edges of this graph still lead into each.
  using Meta = AutogradMeta<T, D>;
  std::unordered_map<Meta*, int64_t> hooked;
  for (NodeT* node : order)
    for (const auto& input : node->inputs)
      if (input && !input->grad_fn && input->post_accumulate) ++hooked[input.get()];
  auto edges_done = [&](NodeT* node) {
    if (hooked.empty()) return;
    for (const auto& input : node->inputs) {
      if (!input || input->grad_fn || !input->post_accumulate) continue;
      if (--hooked[input.get()] == 0) input->post_accumulate();
    }
  };
  std::unordered_map<NodeT*, Tensor> grads;
  grads[autograd_->grad_fn.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    NodeT* node = *it;
    auto found = grads.find(node);
    if (found == grads.end()) {  // no gradient reached it
      edges_done(node);
      continue;
    }
    const Tensor grad_output = std::move(found->second);
    grads.erase(found);
    BLIP_CHECK(static_cast<bool>(node->backward), "backward: the graph through op '", node->op,
               "' was already used by an earlier backward()");
    std::vector<Tensor> input_grads = node->backward(grad_output);
    node->backward = nullptr;  // frees what the op saved
    BLIP_CHECK(input_grads.size() == node->inputs.size(), "backward: op '", node->op, "' returned ",
               input_grads.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const auto& input = node->inputs[i];
      Tensor& g = input_grads[i];
      if (!input || !g.defined()) continue;
      BLIP_CHECK(g.shape() == node->input_shapes[i], "backward: op '", node->op, "' gave input ", i,
                 " a gradient of shape ", g.shape(), ", expected ", node->input_shapes[i]);
      if (input->grad_fn) {
        detail::accumulate(grads[input->grad_fn.get()], g);
      } else if (input->requires_grad) {
        detail::accumulate(input->grad, contiguous(g));
      }
    }
    edges_done(node);
  }
}

}  // namespace blip
