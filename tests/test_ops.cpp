// Forward values of the ops against direct computations.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>

#include "blip/blip.hpp"

using namespace blip;

namespace {

std::vector<double> naive_matmul(const std::vector<double>& a, const std::vector<double>& b, int m, int k, int n) {
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) c[static_cast<size_t>(i * n + j)] += a[static_cast<size_t>(i * k + p)] * b[static_cast<size_t>(p * n + j)];
  return c;
}

void require_close(const std::vector<double>& a, const std::vector<double>& b, double tol = 1e-10) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= tol * (1 + std::abs(b[i])));
}

}  // namespace

TEST_CASE("matmul matches a triple loop for every transpose combination", "[ops]") {
  Generator gen(1);
  const int m = 7, k = 5, n = 6;
  auto a = randn<double>({m, k}, gen), b = randn<double>({k, n}, gen);
  const auto expected = naive_matmul(a.to_vector(), b.to_vector(), m, k, n);
  const auto at = contiguous(transpose(a, 0, 1)), bt = contiguous(transpose(b, 0, 1));
  require_close(matmul(a, b).to_vector(), expected);
  require_close(matmul(transpose(at, 0, 1), b).to_vector(), expected);
  require_close(matmul(a, transpose(bt, 0, 1)).to_vector(), expected);
  require_close(matmul(transpose(at, 0, 1), transpose(bt, 0, 1)).to_vector(), expected);
  // Batched with a broadcast 2-D right operand, and with a sliced (strided-row) left operand.
  auto a3 = randn<double>({3, m, k}, gen);
  auto y = matmul(a3, b).to_vector();
  for (int i = 0; i < 3; ++i) {
    auto yi = naive_matmul(select(a3, 0, i).to_vector(), b.to_vector(), m, k, n);
    require_close(std::vector<double>(y.begin() + i * m * n, y.begin() + (i + 1) * m * n), yi);
  }
  auto wide = randn<double>({m, 2 * k}, gen);
  require_close(matmul(slice(wide, 1, 0, k), b).to_vector(),
                naive_matmul(contiguous(slice(wide, 1, 0, k)).to_vector(), b.to_vector(), m, k, n));
  REQUIRE(matmul(zeros<double>({0, 3}), zeros<double>({3, 2})).shape() == Shape{0, 2});
  REQUIRE(matmul(ones<double>({2, 0}), ones<double>({0, 2})).to_vector() == std::vector<double>(4, 0.0));
}

TEST_CASE("linear, layer_norm, softmax, gelu, l2_normalize match their formulas", "[ops]") {
  Generator gen(2);
  auto x = randn<double>({4, 6}, gen), w = randn<double>({3, 6}, gen), b = randn<double>({3}, gen);
  auto y = linear(x, w, b).to_vector();
  auto ref = naive_matmul(x.to_vector(), contiguous(transpose(w, 0, 1)).to_vector(), 4, 6, 3);
  for (size_t i = 0; i < ref.size(); ++i) ref[i] += b.to_vector()[i % 3];
  require_close(y, ref);

  auto g = randn<double>({6}, gen), beta = randn<double>({6}, gen);
  auto ln = layer_norm(x, g, beta, 1e-5).to_vector();
  auto sm = softmax(x).to_vector();
  auto lsm = log_softmax(x).to_vector();
  auto nrm = l2_normalize(x).to_vector();
  const auto xv = x.to_vector();
  for (int r = 0; r < 4; ++r) {
    double mu = 0, var = 0, mx = -1e300, z = 0, sq = 0;
    for (int c = 0; c < 6; ++c) mu += xv[static_cast<size_t>(r * 6 + c)] / 6;
    for (int c = 0; c < 6; ++c) var += std::pow(xv[static_cast<size_t>(r * 6 + c)] - mu, 2) / 6;
    for (int c = 0; c < 6; ++c) mx = std::max(mx, xv[static_cast<size_t>(r * 6 + c)]);
    for (int c = 0; c < 6; ++c) z += std::exp(xv[static_cast<size_t>(r * 6 + c)] - mx);
    for (int c = 0; c < 6; ++c) sq += std::pow(xv[static_cast<size_t>(r * 6 + c)], 2);
    for (int c = 0; c < 6; ++c) {
      const size_t i = static_cast<size_t>(r * 6 + c);
      REQUIRE(ln[i] == Approx((xv[i] - mu) / std::sqrt(var + 1e-5) * g.to_vector()[c] + beta.to_vector()[c]).epsilon(1e-12));
      REQUIRE(sm[i] == Approx(std::exp(xv[i] - mx) / z).epsilon(1e-12));
      REQUIRE(lsm[i] == Approx(xv[i] - mx - std::log(z)).epsilon(1e-12));
      REQUIRE(nrm[i] == Approx(xv[i] / std::sqrt(sq)).epsilon(1e-12));
    }
  }
  auto gv = gelu(x).to_vector();
  for (size_t i = 0; i < xv.size(); ++i) REQUIRE(gv[i] == Approx(0.5 * xv[i] * (1 + std::erf(xv[i] / std::sqrt(2.0)))).epsilon(1e-12));
  // float32 GELU uses Eigen's vectorised erf: within a few ulps of std::erf.
  auto xf = randn<float>({4096}, gen, 0.0, 3.0);
  auto gf = gelu(xf).to_vector();
  const auto xfv = xf.to_vector();
  for (size_t i = 0; i < xfv.size(); ++i) {
    const double exact = 0.5 * xfv[i] * (1 + std::erf(xfv[i] / std::sqrt(2.0)));
    REQUIRE(std::abs(gf[i] - exact) <= 2e-6 * (1 + std::abs(exact)));
  }
  REQUIRE(l2_normalize(zeros<double>({1, 3})).to_vector() == std::vector<double>(3, 0.0));
}

TEST_CASE("fused attention equals the composed formula, with and without a mask", "[ops]") {
  Generator gen(3);
  auto q = randn<float>({2, 3, 70, 8}, gen), k = randn<float>({2, 3, 9, 8}, gen), v = randn<float>({2, 3, 9, 5}, gen);
  std::vector<float> mask_values(2 * 9, 0.0f);
  mask_values[3] = -10000.0f;
  mask_values[9 + 8] = -10000.0f;
  auto mask = Tensor<float>::from_vector({2, 1, 1, 9}, mask_values);
  auto fused = scaled_dot_product_attention(q, k, v, mask).to_vector();
  auto scores = add(scale(matmul(q, transpose(k, -1, -2)), 1.0f / std::sqrt(8.0f)), mask);
  auto composed = matmul(softmax(scores), v).to_vector();
  REQUIRE(fused.size() == composed.size());
  for (size_t i = 0; i < fused.size(); ++i) REQUIRE(std::abs(fused[i] - composed[i]) < 1e-5f);
}

TEST_CASE("attention over shared keys/values equals one pass per query row", "[ops]") {
  // Texts 0-2 share key/value row 1 and 3-4 share row 0: each run's query rows are processed as
  // one block sequence that crosses text boundaries (30 rows per text, 64-row blocks).
  Generator gen(4);
  const int64_t B = 5, H = 2, Sq = 30, d = 8;
  const auto x = randn<float>({B, Sq, H * d}, gen);  // q as heads split from a projection
  const auto q = permute(reshape(x, {B, Sq, H, d}), {0, 2, 1, 3});
  const auto k = randn<float>({2, H, 11, d}, gen), v = randn<float>({2, H, 11, 6}, gen);
  const std::vector<int64_t> kv_index{1, 1, 1, 0, 0};
  const auto shared =
      scaled_dot_product_attention(q, k, v, Tensor<float>(), 0.0, Tensor<int64_t>::from_vector({B}, kv_index));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = kv_index[static_cast<size_t>(b)];
    const auto one = scaled_dot_product_attention(narrow(q, 0, b, 1), narrow(k, 0, r, 1), narrow(v, 0, r, 1)).to_vector();
    const auto got = narrow(shared, 0, b, 1).to_vector();
    REQUIRE(got.size() == one.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(one[i]).margin(1e-6));
  }
}

TEST_CASE("upload to the CPU is the tensor itself; to a device it is to<D> without a host wait", "[ops]") {
  const Tensor<float> x = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor<float> y = upload<Cpu>(x);
  CHECK(y.data() == x.data());  // nothing copied on the CPU
  const Tensor<float> xt = transpose(x, 0, 1);
  CHECK(upload<Cpu>(xt).data() == xt.data());
}

TEST_CASE("conv2d with stride = kernel equals a direct convolution", "[ops]") {
  Generator gen(4);
  auto x = randn<double>({2, 3, 4, 6}, gen), w = randn<double>({5, 3, 2, 3}, gen), b = randn<double>({5}, gen);
  auto y = conv2d(x, w, b, {2, 3});
  REQUIRE(y.shape() == Shape{2, 5, 2, 2});
  const auto yv = y.to_vector(), xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector();
  for (int n = 0; n < 2; ++n)
    for (int o = 0; o < 5; ++o)
      for (int gy = 0; gy < 2; ++gy)
        for (int gx = 0; gx < 2; ++gx) {
          double acc = bv[static_cast<size_t>(o)];
          for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 2; ++i)
              for (int j = 0; j < 3; ++j)
                acc += xv[static_cast<size_t>(((n * 3 + c) * 4 + gy * 2 + i) * 6 + gx * 3 + j)] *
                       wv[static_cast<size_t>(((o * 3 + c) * 2 + i) * 3 + j)];
          REQUIRE(yv[static_cast<size_t>(((n * 5 + o) * 2 + gy) * 2 + gx)] == Approx(acc).epsilon(1e-12));
        }
}

TEST_CASE("topk follows PyTorch's CPU tie order", "[ops][topk]") {
  // Many equal -100 entries: which columns come back is decided by the algorithm, not the data.
  std::vector<float> row(20, -100.0f);
  row[7] = 3.0f;
  row[2] = 1.0f;
  auto r = topk(Tensor<float>::from_vector({1, 20}, row), 5);
  const auto idx = r.indices.to_vector();
  REQUIRE(idx[0] == 7);
  REQUIRE(idx[1] == 2);
  // Reproduce the reference algorithm directly (nth_element + sort of the first k-1).
  std::vector<std::pair<float, int64_t>> pairs;
  for (int64_t j = 0; j < 20; ++j) pairs.emplace_back(row[static_cast<size_t>(j)], j);
  auto cmp = [](const auto& a, const auto& b) { return a.first > b.first; };
  std::nth_element(pairs.begin(), pairs.begin() + 4, pairs.end(), cmp);
  std::sort(pairs.begin(), pairs.begin() + 4, cmp);
  for (int j = 0; j < 5; ++j) REQUIRE(idx[static_cast<size_t>(j)] == pairs[static_cast<size_t>(j)].second);
  // NaN ranks first; values are sorted descending.
  auto n = topk(Tensor<float>::from_vector({4}, {1.0f, std::nanf(""), 3.0f, 2.0f}), 2);
  REQUIRE(n.indices.to_vector() == std::vector<int64_t>{1, 2});
  auto big = topk(arange<float>(300), 3);  // partial_sort branch
  REQUIRE(big.indices.to_vector() == std::vector<int64_t>{299, 298, 297});
}

TEST_CASE("cross_entropy, masked_fill, index_select, concat values", "[ops]") {
  auto logits = Tensor<double>::from_vector({2, 3}, {1, 2, 3, 0, 0, 0});
  auto labels = Tensor<int64_t>::from_vector({2}, {2, 1});
  const double l0 = -(3 - std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)));
  const double l1 = std::log(3.0);
  REQUIRE(cross_entropy(logits, labels).item() == Approx((l0 + l1) / 2).epsilon(1e-12));
  auto filled = masked_fill(logits, Tensor<int64_t>::from_vector({2, 1}, {0, 1}), -5.0).to_vector();
  REQUIRE(filled == std::vector<double>{1, 2, 3, -5, -5, -5});
  auto sel = index_select(logits, 1, Tensor<int64_t>::from_vector({2}, {2, 2})).to_vector();
  REQUIRE(sel == std::vector<double>{3, 3, 0, 0});
  auto cat = concat(std::vector{logits, logits}, 0);
  REQUIRE(cat.shape() == Shape{4, 3});
  REQUIRE(stack(std::vector{logits, logits}, 2).shape() == Shape{2, 3, 2});
}

TEST_CASE("dropout: seeded, scaled, identity outside training", "[ops]") {
  auto x = ones<float>({1000});
  Generator a(1), b(1);
  auto y1 = dropout(x, 0.25, a).to_vector();
  REQUIRE(y1 == dropout(x, 0.25, b).to_vector());
  int zeros_count = 0;
  for (float v : y1) {
    REQUIRE((v == 0.0f || v == Approx(1.0f / 0.75f)));
    zeros_count += v == 0.0f;
  }
  REQUIRE(zeros_count > 200);
  REQUIRE(zeros_count < 300);
  REQUIRE(dropout(x, 0.25, a, false).shares_storage_with(x));
}

TEST_CASE("dropout: the Philox mask is the documented stream, p = 1 drops everything", "[ops]") {
  // Element i keeps its value when word i % 4 of Philox4x32-10(counter i / 4, key = the draw) is at
  // least p · 2^32 (backend/portable.hpp).
  auto x = ones<float>({9});
  Generator g(3), key_source(3);
  const uint64_t key = key_source.next_u64();
  const auto y = dropout(x, 0.5, g).to_vector();
  for (int64_t i = 0; i < 9; ++i) {
    const uint32_t word = backend::portable::philox4x32(static_cast<uint64_t>(i / 4), 0, key).w[i % 4];
    CHECK(y[static_cast<size_t>(i)] == (word >= (uint64_t{1} << 31) ? 2.0f : 0.0f));
  }
  for (float v : dropout(x, 1.0, g).to_vector()) CHECK(v == 0.0f);
  // The published known-answer vector of Philox4x32-10 (Random123 kat_vectors): counter and key 0.
  const auto zero = backend::portable::philox4x32(0, 0, 0);
  CHECK(zero.w[0] == 0x6627e8d5u);
  CHECK(zero.w[1] == 0xe169c58du);
  CHECK(zero.w[2] == 0xbc57ac4cu);
  CHECK(zero.w[3] == 0x9b00dbd8u);
  const auto ones_kat = backend::portable::philox4x32(~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0});
  CHECK(ones_kat.w[0] == 0x408f276du);
  CHECK(ones_kat.w[1] == 0x41c83b0eu);
  CHECK(ones_kat.w[2] == 0xa20bc7c6u);
  CHECK(ones_kat.w[3] == 0x6d5451fdu);
}

TEST_CASE("contrastive bookkeeping: same-id targets, hard-negative draws, the queue's enqueue", "[ops]") {
  const auto ids = [](std::vector<int64_t> v) { return Tensor<int64_t>::from_vector({int64_t(v.size())}, v); };
  // pos / pos.sum(1); a row without a match stays 0.
  const auto targets = match_ids<float>(ids({4, 9, 2}), ids({9, 4, 4, 1, 4}), true).to_vector();
  CHECK(targets == std::vector<float>{0, 1.f / 3, 1.f / 3, 0, 1.f / 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(match_ids<uint8_t>(ids({4}), ids({9, 4}), false).to_vector() == std::vector<uint8_t>{0, 1});

  // One positive weight: always drawn. Many: a draw's frequency follows its weight.
  const Tensor<float> one = Tensor<float>::from_vector({2, 4}, {0, 0, 0.5f, 0, 0, 0, 0, 2});
  CHECK(sample_negatives(one, ids({1, 2}), ids({1, 2, 3, 4}), 0, 99).to_vector() == std::vector<int64_t>{2, 3});
  const int64_t rows = 4000;
  std::vector<float> w;
  for (int64_t r = 0; r < rows; ++r) w.insert(w.end(), {0.1f, 0.0f, 0.3f, 0.6f});
  const auto picks = sample_negatives(Tensor<float>::from_vector({rows, 4}, w), ids(std::vector<int64_t>(rows, 7)),
                                      ids({1, 2, 3, 4}), 0, 5).to_vector();
  std::array<int, 4> counts{};
  for (int64_t p : picks) ++counts[static_cast<size_t>(p)];
  CHECK(counts[1] == 0);
  CHECK(std::abs(counts[0] - 400) < 80);
  CHECK(std::abs(counts[2] - 1200) < 120);
  CHECK(std::abs(counts[3] - 2400) < 140);
  // The same seed, the same draws; another seed, others.
  const auto again = sample_negatives(Tensor<float>::from_vector({rows, 4}, w), ids(std::vector<int64_t>(rows, 7)),
                                      ids({1, 2, 3, 4}), 0, 5).to_vector();
  CHECK(again == picks);

  // The enqueue equals the serial loop queue[:, (ptr + j) % Q] = src[j] (later rows win) and moves
  // ptr by B mod Q, with B below and above Q.
  Generator gen(8);
  const int64_t E = 3, Q = 5;
  Tensor<float> queue = randn<float>({E, Q}, gen);
  std::vector<float> want = queue.to_vector();
  int64_t ptr = 3;
  const Tensor<int64_t> device_ptr = ids({ptr});
  for (int64_t B : {4, 7, 2}) {
    const Tensor<float> src = randn<float>({B, E}, gen);
    const std::vector<float> s = src.to_vector();
    for (int64_t j = 0; j < B; ++j)
      for (int64_t e = 0; e < E; ++e) want[static_cast<size_t>(e * Q + (ptr + j) % Q)] = s[static_cast<size_t>(j * E + e)];
    ptr = (ptr + B) % Q;
    enqueue_columns(queue, src, device_ptr);
    enqueue_advance(device_ptr, B, Q);
    CHECK(queue.to_vector() == want);
    CHECK(device_ptr.item() == ptr);
  }
}
