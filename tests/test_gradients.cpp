// Every differentiable op against central finite differences in float64.
#include <catch2/catch.hpp>

#include "blip/blip.hpp"
#include "blip/testing/gradcheck.hpp"

using namespace blip;
using blip::testing::gradcheck;
using T = Tensor<double>;
using Inputs = std::vector<T>;

namespace {

T random(const Shape& shape, uint64_t seed, double std = 1.0) {
  Generator gen(seed);
  return randn<double>(shape, gen, 0.0, std);
}

void require_grad_ok(const blip::testing::DoubleFn& f, const Inputs& inputs) {
  const auto result = gradcheck(f, inputs);
  INFO(result.message << " (worst ratio " << result.worst_ratio << ")");
  REQUIRE(result.ok);
}

}  // namespace

TEST_CASE("gradient: matmul, batched, with transposed views", "[grad]") {
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1]); }, {random({3, 4}, 1), random({4, 5}, 2)});
  require_grad_ok([](const Inputs& x) { return matmul(transpose(x[0], 0, 1), transpose(x[1], 0, 1)); },
                  {random({4, 3}, 3), random({5, 4}, 4)});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], transpose(x[1], -1, -2)); },
                  {random({2, 3, 3, 4}, 5), random({2, 3, 5, 4}, 6)});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1]); }, {random({2, 3, 4}, 7), random({4, 2}, 8)});
  require_grad_ok([](const Inputs& x) { return matmul(x[0], x[1]); }, {random({3, 4}, 9), random({2, 4, 2}, 10)});
}

TEST_CASE("gradient: linear with and without bias", "[grad]") {
  require_grad_ok([](const Inputs& x) { return linear(x[0], x[1], x[2]); },
                  {random({2, 3, 4}, 11), random({5, 4}, 12), random({5}, 13)});
  require_grad_ok([](const Inputs& x) { return linear(x[0], x[1]); }, {random({3, 4}, 14), random({2, 4}, 15)});
}

TEST_CASE("gradient: broadcasting add/sub/mul/div and scale", "[grad]") {
  const Inputs ab{random({2, 3, 4}, 16), random({3, 1}, 17)};
  require_grad_ok([](const Inputs& x) { return add(x[0], x[1]); }, ab);
  require_grad_ok([](const Inputs& x) { return sub(x[0], x[1]); }, ab);
  require_grad_ok([](const Inputs& x) { return mul(x[0], x[1]); }, ab);
  T away_from_zero = add(random({3, 1}, 18, 0.1), full<double>({3, 1}, 2.0));
  require_grad_ok([](const Inputs& x) { return div(x[0], x[1]); }, {random({2, 3, 4}, 19), away_from_zero});
  require_grad_ok([](const Inputs& x) { return div(x[0], x[1]); }, {away_from_zero, add(random({4}, 20, 0.1), full<double>({4}, 3.0))});
  require_grad_ok([](const Inputs& x) { return scale(x[0], -2.5); }, {random({3, 2}, 21)});
  require_grad_ok([](const Inputs& x) { return mul(x[0], x[1]); }, {random({}, 22), random({2, 2}, 23)});
}

TEST_CASE("gradient: sum and mean over axes", "[grad]") {
  const Inputs x{random({2, 3, 4}, 24)};
  require_grad_ok([](const Inputs& v) { return sum(v[0], {1}); }, x);
  require_grad_ok([](const Inputs& v) { return sum(v[0], {0, 2}, true); }, x);
  require_grad_ok([](const Inputs& v) { return sum(v[0]); }, x);
  require_grad_ok([](const Inputs& v) { return mean(v[0], {-1}); }, x);
  require_grad_ok([](const Inputs& v) { return mean(v[0]); }, x);
}

TEST_CASE("gradient: layer_norm, softmax, log_softmax, l2_normalize", "[grad]") {
  require_grad_ok([](const Inputs& x) { return layer_norm(x[0], x[1], x[2], 1e-6); },
                  {random({3, 5}, 25), random({5}, 26), random({5}, 27)});
  require_grad_ok([](const Inputs& x) { return softmax(x[0]); }, {random({2, 3, 6}, 28)});
  require_grad_ok([](const Inputs& x) { return log_softmax(x[0]); }, {random({4, 6}, 29)});
  require_grad_ok([](const Inputs& x) { return l2_normalize(x[0]); }, {random({3, 5}, 30)});
  // Rows below eps follow the linear branch x / eps.
  require_grad_ok([](const Inputs& x) { return l2_normalize(x[0], 10.0); }, {random({2, 3}, 31)});
}

TEST_CASE("gradient: gelu (erf), tanh, exp, log", "[grad]") {
  require_grad_ok([](const Inputs& x) { return gelu(x[0]); }, {random({4, 5}, 32, 2.0)});
  require_grad_ok([](const Inputs& x) { return blip::tanh(x[0]); }, {random({4, 5}, 33)});
  require_grad_ok([](const Inputs& x) { return blip::exp(x[0]); }, {random({3}, 34)});
  require_grad_ok([](const Inputs& x) { return blip::log(x[0]); }, {add(random({3}, 35, 0.1), full<double>({3}, 2.0))});
}

TEST_CASE("gradient: embedding gives the padding row zero gradient", "[grad]") {
  const Tensor<int64_t> ids = Tensor<int64_t>::from_vector({2, 3}, {1, 0, 3, 3, 2, 0});
  // Without padding_idx the lookup is differentiable everywhere; with it, the padding row's
  // gradient is defined to be zero (torch.nn.Embedding), which finite differences cannot see.
  require_grad_ok([&](const Inputs& x) { return embedding(ids, x[0]); }, {random({4, 5}, 36)});
  T w = random({4, 5}, 37).set_requires_grad(true);
  sum(embedding(ids, w, 0)).backward();
  const auto g = w.grad().to_vector();
  for (int j = 0; j < 5; ++j) REQUIRE(g[static_cast<size_t>(j)] == 0.0);      // row 0 = padding_idx
  for (int j = 0; j < 5; ++j) REQUIRE(g[static_cast<size_t>(15 + j)] == 2.0);  // id 3 used twice
}

TEST_CASE("gradient: concat, stack, index_select, masked_fill", "[grad]") {
  require_grad_ok([](const Inputs& x) { return concat(std::vector{x[0], x[1]}, 1); }, {random({2, 3}, 38), random({2, 2}, 39)});
  require_grad_ok([](const Inputs& x) { return stack(std::vector{x[0], x[1]}, 0); }, {random({2, 3}, 40), random({2, 3}, 41)});
  const Tensor<int64_t> idx = Tensor<int64_t>::from_vector({4}, {2, 0, 2, 1});
  require_grad_ok([&](const Inputs& x) { return index_select(x[0], 0, idx); }, {random({3, 4}, 42)});
  require_grad_ok([&](const Inputs& x) { return index_select(x[0], 1, idx); }, {random({2, 3, 2}, 43)});
  const Tensor<uint8_t> mask = Tensor<uint8_t>::from_vector({1, 3}, {1, 0, 1});
  require_grad_ok([&](const Inputs& x) { return masked_fill(x[0], mask, -1e4); }, {random({2, 3}, 44)});
}

TEST_CASE("gradient: views (reshape, permute, slice, select, expand, unsqueeze)", "[grad]") {
  const Inputs x{random({2, 3, 4}, 45)};
  require_grad_ok([](const Inputs& v) { return reshape(v[0], {4, -1}); }, x);
  require_grad_ok([](const Inputs& v) { return contiguous(permute(v[0], {2, 0, 1})); }, x);
  require_grad_ok([](const Inputs& v) { return slice(v[0], 2, 1, 4, 2); }, x);
  require_grad_ok([](const Inputs& v) { return select(v[0], 1, -1); }, x);
  require_grad_ok([](const Inputs& v) { return expand(unsqueeze(v[0], 1), {2, 5, 3, 4}); }, x);
  require_grad_ok([](const Inputs& v) { return narrow(v[0], 0, 1, 1); }, x);
}

TEST_CASE("gradient: cross_entropy", "[grad]") {
  const Tensor<int64_t> labels = Tensor<int64_t>::from_vector({3}, {1, 0, 2});
  require_grad_ok([&](const Inputs& x) { return cross_entropy(x[0], labels); }, {random({3, 4}, 46)});
}

TEST_CASE("gradient: scaled dot-product attention with an additive mask", "[grad]") {
  const Tensor<double> key_mask = Tensor<double>::from_vector({2, 1, 1, 4}, {0, 0, -1e4, 0, 0, 0, 0, -1e4});
  require_grad_ok([&](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], key_mask); },
                  {random({2, 2, 3, 4}, 47), random({2, 2, 4, 4}, 48), random({2, 2, 4, 3}, 49)});
  require_grad_ok([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                  {random({1, 3, 5, 2}, 50), random({1, 3, 2, 2}, 51), random({1, 3, 2, 4}, 52)});
}

TEST_CASE("gradient: attention with shared keys/values (kv_index)", "[grad]") {
  // Four query rows over two key/value rows: gradients of shared rows are summed.
  require_grad_ok([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor<double>(), 0.0, Tensor<int64_t>::from_vector({4}, {1, 0, 1, 1})); },
                  {random({4, 2, 3, 4}, 58), random({2, 2, 5, 4}, 59), random({2, 2, 5, 3}, 60)});
}

TEST_CASE("gradient: attention across query blocks, strided inputs, an unused key/value row", "[grad]") {
  // 70 query rows span two of the fused kernels' 64-row blocks; q is a transposed view.
  require_grad_ok([](const Inputs& x) { return scaled_dot_product_attention(transpose(x[0], 1, 2), x[1], x[2]); },
                  {random({1, 70, 2, 3}, 66), random({1, 2, 6, 3}, 67), random({1, 2, 6, 2}, 68)});
  // Key/value row 1 serves no query: its gradients are zero.
  require_grad_ok([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor<double>(), 0.0, Tensor<int64_t>::from_vector({2}, {0, 0})); },
                  {random({2, 1, 3, 2}, 69), random({2, 1, 4, 2}, 70), random({2, 1, 4, 2}, 71)});
}

TEST_CASE("gradient: fused feed-forward (linear, GELU, linear) equals the composition", "[grad]") {
  const Inputs in{random({2, 3, 4}, 61), random({6, 4}, 62), random({6}, 63), random({4, 6}, 64), random({4}, 65)};
  require_grad_ok([](const Inputs& x) { return feed_forward_gelu(x[0], x[1], x[2], x[3], x[4]); }, in);
  const auto fused = feed_forward_gelu(in[0], in[1], in[2], in[3], in[4]).to_vector();
  const auto composed = linear(gelu(linear(in[0], in[1], in[2])), in[3], in[4]).to_vector();
  for (size_t i = 0; i < fused.size(); ++i) REQUIRE(fused[i] == Approx(composed[i]).epsilon(1e-14));
}

TEST_CASE("gradient: conv2d with stride = kernel", "[grad]") {
  require_grad_ok([](const Inputs& x) { return conv2d(x[0], x[1], x[2], {2, 3}); },
                  {random({2, 3, 4, 6}, 53), random({4, 3, 2, 3}, 54), random({4}, 55)});
}

TEST_CASE("gradient: dropout with a fixed seed, topk values", "[grad]") {
  require_grad_ok([](const Inputs& x) {
    Generator gen(99);  // same mask on every evaluation
    return dropout(x[0], 0.3, gen);
  }, {random({4, 6}, 56)});
  require_grad_ok([](const Inputs& x) { return topk(x[0], 3).values; }, {random({3, 7}, 57)});
}
