// blip/autograd/graph.hpp — what the autograd tape records: nodes, grad mode, no-grad guard.
//
// Contract:
// - Every differentiable op whose inputs require grad (while grad mode is on) gives its result
//   an AutogradMeta holding a Node: the op's name, the inputs' autograd slots, the output shape
//   and a backward function mapping the output gradient to one gradient per input (an
//   undefined tensor where an input gets none). Saved tensors are captured detached, so a
//   graph never owns itself; releasing the last result handle releases its graph.
// - Grad mode is per thread (NoGradGuard); nothing else is global, so two models in one
//   process never see each other's graphs or gradients.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "blip/core/tensor.hpp"

namespace blip {

template <Element T, Device D>
struct Node;

template <Element T, Device D>
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Node<T, D>> grad_fn;  // null for leaves
  Tensor<T, D> grad;                    // accumulated gradient (leaves only)
  // Leaves only: called by backward() once this call has added everything it will to `grad`
  // (DDP's post-accumulate hook: the gradient bucket can start its all-reduce).
  std::function<void()> post_accumulate;
};

template <Element T, Device D>
using BackwardFn = std::function<std::vector<Tensor<T, D>>(const Tensor<T, D>& grad_output)>;

template <Element T, Device D>
struct Node {
  const char* op = "";
  Shape output_shape;
  std::vector<std::shared_ptr<AutogradMeta<T, D>>> inputs;  // null where no grad flows
  std::vector<Shape> input_shapes;                          // what each input's gradient must be
  BackwardFn<T, D> backward;                                // released after use
};

class GradMode {
 public:
  static bool enabled() { return flag(); }
  static void set_enabled(bool on) { flag() = on; }

 private:
  static bool& flag() {
    thread_local bool on = true;
    return on;
  }
};

// Disables recording for its lifetime (inference, momentum encoders, optimiser updates).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

template <Element T, Device D>
bool Tensor<T, D>::requires_grad() const {
  return autograd_ && autograd_->requires_grad;
}

template <Element T, Device D>
Tensor<T, D>& Tensor<T, D>::set_requires_grad(bool value) requires Differentiable<T> {
  BLIP_CHECK(!(autograd_ && autograd_->grad_fn), "set_requires_grad: tensor of shape ", shape_,
             " is the result of op '", autograd_ ? autograd_->grad_fn->op : "",
             "'; only leaves can change requires_grad (use detach())");
  if (!autograd_) autograd_ = std::make_shared<AutogradMeta<T, D>>();
  autograd_->requires_grad = value;
  return *this;
}

template <Element T, Device D>
Tensor<T, D> Tensor<T, D>::grad() const {
  return autograd_ ? autograd_->grad : Tensor<T, D>();
}

template <Element T, Device D>
void Tensor<T, D>::zero_grad() {
  if (autograd_) autograd_->grad = Tensor<T, D>();
}

// True when an op on these inputs must be recorded.
template <Element T, Device D>
bool grad_needed(const std::vector<const Tensor<T, D>*>& inputs) {
  if constexpr (!Differentiable<T>) {
    return false;
  } else {
    if (!GradMode::enabled()) return false;
    for (const Tensor<T, D>* t : inputs)
      if (t && t->defined() && t->requires_grad()) return true;
    return false;
  }
}
template <Element T, Device D, class... Rest>
bool grad_needed(const Tensor<T, D>& first, const Rest&... rest) {
  return grad_needed<T, D>(std::vector<const Tensor<T, D>*>{&first, &rest...});
}

// Attaches a node to `out`. Inputs that do not require grad get a null slot.
template <Element T, Device D>
void record(Tensor<T, D>& out, const char* op, const std::vector<const Tensor<T, D>*>& inputs,
            std::type_identity_t<BackwardFn<T, D>> backward) {
  auto node = std::make_shared<Node<T, D>>();
  node->op = op;
  node->output_shape = out.shape();
  for (const Tensor<T, D>* t : inputs) {
    node->inputs.push_back(t && t->defined() && t->requires_grad() ? t->autograd() : nullptr);
    node->input_shapes.push_back(t && t->defined() ? t->shape() : Shape{});
  }
  node->backward = std::move(backward);
  auto meta = std::make_shared<AutogradMeta<T, D>>();
  meta->requires_grad = true;
  meta->grad_fn = std::move(node);
  out.set_autograd(std::move(meta));
}

template <Element T, Device D>
void record(Tensor<T, D>& out, const char* op, std::initializer_list<const Tensor<T, D>*> inputs,
            std::type_identity_t<BackwardFn<T, D>> backward) {
  record(out, op, std::vector<const Tensor<T, D>*>(inputs), std::move(backward));
}

}  // namespace blip
