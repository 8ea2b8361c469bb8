// blip/testing/gradcheck.hpp — central finite-difference gradient checks in float64.
//
// Contract: gradcheck(f, inputs) evaluates L = sum(f(inputs) * R) for a fixed random R,
// back-propagates it, and compares every input's gradient with (L(x + h) - L(x - h)) / 2h
// element by element. It reports the worst |analytic - numeric| relative to
// atol + rtol * |numeric| and where it occurred. Layered above ops/ (it composes them).
#pragma once

#include <cmath>
#include <functional>
#include <string>

#include "blip/autograd/engine.hpp"
#include "blip/ops/creation.hpp"

namespace blip::testing {

struct GradCheckResult {
  bool ok = true;
  double worst_ratio = 0.0;  // max |a - n| / (atol + rtol |n|); <= 1 passes
  std::string message;
};

using DoubleFn = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

inline GradCheckResult gradcheck(const DoubleFn& f, const std::vector<Tensor<double>>& inputs, double h = 1e-6,
                                 double atol = 1e-7, double rtol = 1e-5, uint64_t seed = 7) {
  std::vector<Tensor<double>> leaves;
  for (const auto& x : inputs) leaves.push_back(clone(x.detach()).set_requires_grad(true));
  Tensor<double> out = f(leaves);
  Generator gen(seed);
  const Tensor<double> weights = randn<double>(out.shape(), gen);
  sum(mul(out, weights)).backward();

  auto loss_at = [&](const std::vector<Tensor<double>>& xs) {
    NoGradGuard no_grad;
    return sum(mul(f(xs), weights)).item();
  };
  GradCheckResult result;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Tensor<double> g = leaves[i].grad();
    const std::vector<double> analytic =
        g.defined() ? contiguous(g).to_vector() : std::vector<double>(static_cast<size_t>(leaves[i].numel()), 0.0);
    std::vector<Tensor<double>> probe;
    for (const auto& x : leaves) probe.push_back(clone(x.detach()));
    double* data = probe[i].data();
    for (int64_t j = 0; j < probe[i].numel(); ++j) {
      const double saved = data[j];
      data[j] = saved + h;
      const double up = loss_at(probe);
      data[j] = saved - h;
      const double down = loss_at(probe);
      data[j] = saved;
      const double numeric = (up - down) / (2 * h);
      const double ratio = std::abs(analytic[static_cast<size_t>(j)] - numeric) / (atol + rtol * std::abs(numeric));
      if (ratio > result.worst_ratio) {
        result.worst_ratio = ratio;
        result.message = str("input ", i, " element ", j, ": analytic ", analytic[static_cast<size_t>(j)],
                             " numeric ", numeric);
      }
    }
  }
  result.ok = result.worst_ratio <= 1.0;
  return result;
}

}  // namespace blip::testing
