// blip/optim/adamw.hpp — AdamW equal to torch.optim.AdamW (PyTorch 1.13, single-tensor path).
//
// Contract: for each parameter with a gradient, at its own step t:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// in the element type, with the scalars formed in double and rounded once (as torch's
// Python-scalar arguments). Parameters without a gradient are skipped (their t does not move).
// State (m, v, t) is addressable by parameter name for checkpoints.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>

#include "blip/nn/parameter.hpp"

namespace blip {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

template <Differentiable T = float, Device D = Cpu>
class AdamW {
 public:
  struct State {
    Tensor<T, D> exp_avg, exp_avg_sq;
    int64_t step = 0;
  };

  AdamW(std::vector<NamedParameter<T, D>> params, AdamWOptions options)
      : params_(std::move(params)), options_(options) {
    BLIP_CHECK(options.lr >= 0 && options.eps >= 0 && options.beta1 >= 0 && options.beta1 < 1 &&
                   options.beta2 >= 0 && options.beta2 < 1 && options.weight_decay >= 0,
               "AdamW: invalid options (lr ", options.lr, ", betas ", options.beta1, "/", options.beta2, ", eps ",
               options.eps, ", weight_decay ", options.weight_decay, ")");
  }

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  std::map<std::string, State>& state() { return state_; }
  const std::vector<NamedParameter<T, D>>& params() const { return params_; }
  // Restores one parameter's moments and step (a training-state resume); shapes must match.
  void set_state(const std::string& name, State s) {
    auto it = std::find_if(params_.begin(), params_.end(), [&](const auto& np) { return np.first == name; });
    BLIP_CHECK(it != params_.end(), "AdamW::set_state: no parameter '", name, "'");
    BLIP_CHECK(s.exp_avg.shape() == it->second->shape() && s.exp_avg_sq.shape() == it->second->shape() && s.step >= 0,
               "AdamW::set_state: '", name, "' moments ", s.exp_avg.shape(), " / ", s.exp_avg_sq.shape(), " (step ",
               s.step, ") do not fit the parameter ", it->second->shape());
    state_[name] = std::move(s);
  }

  void zero_grad() {
    for (auto& [name, p] : params_) p->zero_grad();
  }

  // One multi-tensor update per distinct step count (one, unless some parameters skipped steps
  // without a gradient): a few launches on CUDA instead of one per parameter.
  void step() {
    NoGradGuard no_grad;
    std::map<int64_t, std::vector<backend::AdamWTensor<T>>> by_step;
    std::vector<Tensor<T, D>> grads;  // keeps contiguous copies alive until the update
    for (auto& [name, p] : params_) {
      const Tensor<T, D> g = p->grad();
      if (!g.defined()) continue;
      BLIP_CHECK(g.shape() == p->shape(), "AdamW: gradient of ", name, " has shape ", g.shape(), ", parameter ",
                 p->shape());
      State& s = state_[name];
      if (!s.exp_avg.defined()) {
        s.exp_avg = Tensor<T, D>::zeros(p->shape());
        s.exp_avg_sq = Tensor<T, D>::zeros(p->shape());
      }
      ++s.step;
      grads.push_back(contiguous(g));
      by_step[s.step].push_back({p->value().data(), s.exp_avg.data(), s.exp_avg_sq.data(), grads.back().data(),
                                 p->value().numel()});
    }
    for (const auto& [step, tensors] : by_step) kernels<D>::adamw(tensors.data(), tensors.size(), coefficients(step));
  }

 private:
  backend::AdamWCoefficients<T> coefficients(int64_t step) const {
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step));
    return backend::AdamWCoefficients<T>{
        .decay = static_cast<T>(1.0 - options_.lr * options_.weight_decay),
        .beta1 = static_cast<T>(options_.beta1),
        .one_minus_beta1 = static_cast<T>(1.0 - options_.beta1),
        .beta2 = static_cast<T>(options_.beta2),
        .one_minus_beta2 = static_cast<T>(1.0 - options_.beta2),
        .neg_step_size = static_cast<T>(-(options_.lr / bias_correction1)),
        .bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2)),
        .eps = static_cast<T>(options_.eps)};
  }

  std::vector<NamedParameter<T, D>> params_;
  AdamWOptions options_;
  std::map<std::string, State> state_;
};

}  // namespace blip
