// The tape's semantics: accumulation, no-grad, detach, graph release, independence.
#include <catch2/catch.hpp>

#include "blip/blip.hpp"

using namespace blip;
using Catch::Matchers::Contains;

TEST_CASE("gradients accumulate across backward calls and through shared inputs", "[autograd]") {
  auto x = Tensor<double>::from_vector({2}, {1.0, 2.0}).set_requires_grad(true);
  sum(mul(x, x)).backward();  // d/dx x^2 = 2x
  REQUIRE(x.grad().to_vector() == std::vector<double>{2, 4});
  sum(add(x, x)).backward();  // + 2
  REQUIRE(x.grad().to_vector() == std::vector<double>{4, 6});
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
  // A diamond: y = x*x used twice.
  auto y = mul(x, x);
  sum(add(y, scale(y, 3.0))).backward();
  REQUIRE(x.grad().to_vector() == std::vector<double>{8, 16});
}

TEST_CASE("gradients are summed in place only where nothing else holds them", "[autograd]") {
  const std::vector<float> c_values{0.5f, -1.0f, 2.0f};
  for (const bool add_first : {true, false}) {
    INFO("add first: " << add_first);
    // add() hands one gradient tensor to both its inputs, so a's first contribution may be the
    // very tensor that becomes b's gradient: summing a's second one into it must not change b's.
    auto a = Tensor<float>::from_vector({3}, {1.0f, 2.0f, 3.0f}).set_requires_grad(true);
    auto b = Tensor<float>::from_vector({3}, {4.0f, 5.0f, 6.0f}).set_requires_grad(true);
    const auto c = Tensor<float>::from_vector({3}, c_values);
    const Tensor<float> sum_ab = sum(add(a, b)), dot_ac = sum(mul(a, c));
    (add_first ? add(sum_ab, dot_ac) : add(dot_ac, sum_ab)).backward();
    CHECK(a.grad().to_vector() == std::vector<float>{1.5f, 0.0f, 3.0f});
    CHECK(b.grad().to_vector() == std::vector<float>{1.0f, 1.0f, 1.0f});
  }
  // A gradient nobody else holds is summed in place (no new memory); one the caller kept is not
  // changed by the next backward().
  auto x = Tensor<float>::from_vector({4}, {1.0f, 2.0f, 3.0f, 4.0f}).set_requires_grad(true);
  sum(mul(x, x)).backward();
  const float* first = x.grad().data();
  sum(scale(x, 3.0f)).backward();
  CHECK(x.grad().data() == first);
  CHECK(x.grad().to_vector() == std::vector<float>{5.0f, 7.0f, 9.0f, 11.0f});
  const Tensor<float> kept = x.grad();
  sum(x).backward();
  CHECK(kept.to_vector() == std::vector<float>{5.0f, 7.0f, 9.0f, 11.0f});
  CHECK(x.grad().to_vector() == std::vector<float>{6.0f, 8.0f, 10.0f, 12.0f});
}

TEST_CASE("NoGradGuard and detach() stop recording", "[autograd]") {
  auto x = Tensor<float>::from_vector({2}, {1.0f, 2.0f}).set_requires_grad(true);
  {
    NoGradGuard guard;
    auto y = mul(x, x);
    REQUIRE_FALSE(y.requires_grad());
  }
  auto z = mul(x.detach(), x);
  REQUIRE(z.requires_grad());
  sum(z).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{1.0f, 2.0f});  // only through the attached factor
  REQUIRE(GradMode::enabled());
}

TEST_CASE("a graph is released after backward; misuse is reported", "[autograd][errors]") {
  auto x = Tensor<double>::from_vector({3}, {1, 2, 3}).set_requires_grad(true);
  auto loss = sum(gelu(x));
  loss.backward();
  REQUIRE_THROWS_WITH(loss.backward(), Contains("already used"));
  REQUIRE_THROWS_WITH(gelu(x).backward(), Contains("shape [3]"));
  REQUIRE_THROWS_WITH(Tensor<double>::from_vector({1}, {1.0}).backward(), Contains("does not require grad"));
  auto y = mul(x, x);
  REQUIRE_THROWS_WITH(y.set_requires_grad(false), Contains("only leaves"));
}

TEST_CASE("two models in one process do not interfere", "[autograd]") {
  Generator gen(3);
  Linear<double> a(4, 2), b(4, 2);
  init_normal(a.weight, gen, 1.0);
  init_normal(b.weight, gen, 1.0);
  auto x = randn<double>({5, 4}, gen);
  auto loss_a = sum(a(x));
  auto loss_b = sum(mul(b(x), b(x)));
  loss_b.backward();
  REQUIRE_FALSE(a.weight.grad().defined());
  REQUIRE(b.weight.grad().defined());
  loss_a.backward();
  // a's gradient is the column sums of x for every output row.
  const auto g = a.weight.grad().to_vector();
  const auto colsum = sum(x, {0}).to_vector();
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 4; ++i) REQUIRE(g[static_cast<size_t>(o * 4 + i)] == Approx(colsum[static_cast<size_t>(i)]));
}

namespace {

struct Block {
  using value_type = float;
  using device_type = Cpu;
  Linear<float> fc{3, 2};
  LayerNorm<float> norm{2, 1e-6};
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    fc.visit_parameters(f, join_name(prefix, "fc"));
    norm.visit_parameters(f, join_name(prefix, "ln1"));
  }
};

}  // namespace

TEST_CASE("named parameters use dotted names", "[autograd][nn]") {
  Block block;
  auto named = named_parameters(block, "layers.0");
  REQUIRE(named.size() == 4);
  REQUIRE(named[0].first == "layers.0.fc.weight");
  REQUIRE(named[3].first == "layers.0.ln1.bias");
}
