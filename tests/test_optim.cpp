// Parameter momentum copies, AdamW against hand-computed steps, the cosine schedule.
#include <catch2/catch.hpp>

#include <cmath>

#include "blip/blip.hpp"

using namespace blip;

TEST_CASE("momentum copy: copy, EMA in float32, alias follows the online value", "[optim][momentum]") {
  Parameter<float> p(Tensor<float>::from_vector({3}, {1.0f, 2.0f, 3.0f}));
  p.copy_params();
  REQUIRE(p.momentum().to_vector() == p.value().to_vector());
  REQUIRE_FALSE(p.momentum().shares_storage_with(p.value()));
  p.assign(Tensor<float>::from_vector({3}, {2.0f, 4.0f, 6.0f}));
  p.momentum_update(0.995);
  const float keep = 0.995f, take = static_cast<float>(1.0 - 0.995);
  const auto m = p.momentum().to_vector();
  REQUIRE(m[0] == 1.0f * keep + 2.0f * take);
  REQUIRE(m[2] == 3.0f * keep + 6.0f * take);
  p.alias_momentum();
  REQUIRE(p.momentum_aliased());
  p.momentum_update(0.5);  // no effect on an alias
  REQUIRE(p.momentum().to_vector() == p.value().to_vector());
  // An optimiser step on the online value shows through the alias.
  sum(mul(p.value(), p.value())).backward();
  AdamW<float> opt({{"w", &p}}, {.lr = 0.1, .weight_decay = 0.0});
  opt.step();
  REQUIRE(p.momentum().to_vector() == p.value().to_vector());
  REQUIRE(p.value().to_vector()[0] == Approx(2.0f - 0.1f).epsilon(1e-6));
  p.copy_params();  // ends the alias
  REQUIRE_FALSE(p.momentum_aliased());
}

TEST_CASE("AdamW equals torch's formula step by step", "[optim][adamw]") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.04;
  Parameter<double> p(Tensor<double>::from_vector({2}, {0.5, -1.5}));
  Parameter<double> unused(Tensor<double>::from_vector({1}, {7.0}));
  AdamW<double> opt({{"p", &p}, {"unused", &unused}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
  std::vector<double> ref{0.5, -1.5}, m(2, 0), v(2, 0);
  for (int t = 1; t <= 4; ++t) {
    opt.zero_grad();
    // loss = sum(x^3): g = 3 x^2, varying per step
    sum(mul(mul(p.value(), p.value()), p.value())).backward();
    opt.step();
    for (size_t i = 0; i < 2; ++i) {
      const double g = 3 * ref[i] * ref[i];
      ref[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
      ref[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
    }
    const auto got = p.value().to_vector();
    REQUIRE(got[0] == Approx(ref[0]).epsilon(1e-14));
    REQUIRE(got[1] == Approx(ref[1]).epsilon(1e-14));
  }
  REQUIRE(opt.state().at("p").step == 4);
  REQUIRE(opt.state().count("unused") == 0);   // never had a gradient: skipped
  REQUIRE(unused.value().item() == 7.0);
}

TEST_CASE("AdamW first step is lr * sign(g) plus decay", "[optim][adamw]") {
  Parameter<float> p(Tensor<float>::from_vector({3}, {1.0f, 1.0f, 1.0f}));
  sum(mul(p.value(), Tensor<float>::from_vector({3}, {2.0f, -0.5f, 1e-3f}))).backward();
  AdamW<float> opt({{"p", &p}}, {.lr = 1e-3, .weight_decay = 0.04});
  opt.step();
  const auto got = p.value().to_vector();
  REQUIRE(got[0] == Approx(1.0 * (1 - 4e-5) - 1e-3).epsilon(1e-6));
  REQUIRE(got[1] == Approx(1.0 * (1 - 4e-5) + 1e-3).epsilon(1e-6));
}

TEST_CASE("cosine schedule with linear warm-up", "[optim][schedule]") {
  CosineSchedule s{.base_lr = 1e-3, .total_steps = 110, .warmup_steps = 10, .warmup_start_factor = 0.1, .eta_min = 1e-5};
  REQUIRE(s.lr_at(0) == Approx(1e-4));
  REQUIRE(s.lr_at(5) == Approx(1e-3 * (0.1 + 0.9 * 0.5)));
  REQUIRE(s.lr_at(10) == Approx(1e-3));
  REQUIRE(s.lr_at(60) == Approx(1e-5 + (1e-3 - 1e-5) * 0.5));
  REQUIRE(s.lr_at(110) == Approx(1e-5));
  REQUIRE(s.lr_at(500) == Approx(1e-5));
  for (int64_t t = 11; t <= 110; ++t) REQUIRE(s.lr_at(t) <= s.lr_at(t - 1));
}
