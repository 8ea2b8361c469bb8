// tests/test_cuda.cpp — the blip::cuda component against CPU references computed here in plain
// loops. Its own main: without a CUDA device it prints why and exits 77, which ctest reports
// as skipped (SKIP_RETURN_CODE 77).

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/cuda/runtime.hpp"
#include "blip/core/tensor.hpp"
#include "blip/backend/kernels.hpp"
#include "blip/autograd/engine.hpp"
#include "blip/ops/index.hpp"
#include "blip/ops/reduce.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/topk.hpp"

using blip::Cuda;
using blip::Shape;
using blip::Strides;
template <class T>
using DTensor = blip::Tensor<T, Cuda>;

namespace {

template <class T>
std::vector<T> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

std::vector<blip::bf16> bf16_values(const std::vector<float>& x) {
  std::vector<blip::bf16> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = blip::bf16(x[i]);
  return y;
}

// Strides of a contiguous tensor of `in` read as `out` (its broadcast shape): leading axes
// added by broadcasting and extent-1 axes get stride 0.
Strides broadcast_strides(const Shape& in, const Shape& out) {
  const Strides own = blip::contiguous_strides(in);
  Strides s(out.size(), 0);
  const size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[lead + i] = in[i] == 1 ? 0 : own[i];
  return s;
}

template <class T>
T apply(blip::cuda::BinaryOp op, T x, T y) {
  switch (op) {
    case blip::cuda::BinaryOp::add: return x + y;
    case blip::cuda::BinaryOp::sub: return x - y;
    case blip::cuda::BinaryOp::mul: return x * y;
    case blip::cuda::BinaryOp::div: return x / y;
  }
  return T(0);
}

}  // namespace

TEST_CASE("cuda: device memory round trip through host, device copy and zero fill") {
  using Mem = blip::DeviceMemory<Cuda>;
  const std::vector<double> host = random_values<double>(1000, 1);
  const size_t bytes = host.size() * sizeof(double);
  void* a = Mem::allocate(bytes);
  void* b = Mem::allocate(bytes);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  REQUIRE(a != b);
  Mem::copy_from_host(a, host.data(), bytes);
  Mem::copy_within(b, a, bytes);
  std::vector<double> back(host.size(), -7.0);
  Mem::copy_to_host(back.data(), b, bytes);
  CHECK(back == host);

  Mem::fill_zero(a, bytes / 2);
  Mem::copy_to_host(back.data(), a, bytes);
  for (size_t i = 0; i < host.size(); ++i) CHECK(back[i] == (i < host.size() / 2 ? 0.0 : host[i]));

  CHECK(Mem::allocate(0) == nullptr);
  Mem::release(nullptr, 0);  // no-op
  Mem::release(a, bytes);
  Mem::release(b, bytes);
}

TEST_CASE("cuda: caching allocator reuses released blocks and empties on request") {
  using Mem = blip::DeviceMemory<Cuda>;
  blip::cuda::empty_cache();
  const auto start = blip::cuda::cache_stats();
  CHECK(start.bytes_cached == 0);

  void* p = Mem::allocate(1000);
  const auto held = blip::cuda::cache_stats();
  CHECK(held.bytes_in_use >= start.bytes_in_use + 1000);
  CHECK(held.bytes_cached == 0);

  Mem::release(p, 1000);
  const auto released = blip::cuda::cache_stats();
  CHECK(released.bytes_in_use == start.bytes_in_use);
  CHECK(released.bytes_cached == held.bytes_in_use - start.bytes_in_use);

  // A nearby size rounds to the same block size and gets the cached block back.
  void* q = Mem::allocate(1001);
  CHECK(q == p);
  CHECK(blip::cuda::cache_stats().bytes_cached == 0);
  Mem::release(q, 1001);

  // Sizes above 1 MiB are bucketed too.
  void* big = Mem::allocate((3u << 20) + 5);
  Mem::release(big, (3u << 20) + 5);
  void* big2 = Mem::allocate((3u << 20) + 17);
  CHECK(big2 == big);
  Mem::release(big2, (3u << 20) + 17);

  blip::cuda::empty_cache();
  const auto emptied = blip::cuda::cache_stats();
  CHECK(emptied.bytes_cached == 0);
  CHECK(emptied.bytes_in_use == start.bytes_in_use);
}

TEST_CASE("cuda: an impossible allocation throws blip::Error naming the byte count") {
  const size_t huge = size_t{1} << 50;  // 1 PiB
  try {
    blip::DeviceMemory<Cuda>::allocate(huge);
    FAIL("allocation of 1 PiB succeeded");
  } catch (const blip::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(huge)));
  }
  // The failure leaves the runtime usable.
  auto t = DTensor<float>::from_vector({3}, {1.f, 2.f, 3.f});
  CHECK(t.to_vector() == std::vector<float>{1.f, 2.f, 3.f});
}

TEST_CASE("cuda: Tensor<float, Cuda> from_vector / to_vector / zeros / item") {
  const std::vector<float> values = random_values<float>(2 * 3 * 4, 2);
  const auto t = DTensor<float>::from_vector({2, 3, 4}, values);
  CHECK(t.shape() == Shape{2, 3, 4});
  CHECK(t.to_vector() == values);

  const auto z = DTensor<double>::zeros({5, 7});
  CHECK(z.to_vector() == std::vector<double>(35, 0.0));
  CHECK(DTensor<int64_t>::scalar(42).item() == 42);
  CHECK(DTensor<float>::empty({0, 3}).to_vector().empty());

  // A transposed view of device memory cannot be read back without a copy kernel.
  const DTensor<float> view(t.storage(), t.storage_numel(), 0, {4, 3}, {1, 4});
  CHECK_THROWS_AS(view.to_vector(), blip::Error);
}

TEMPLATE_TEST_CASE("cuda: copy_strided materialises transposed and broadcast layouts", "", float,
                   double, int64_t) {
  // 3 x 5 row-major source, read as its 5 x 3 transpose.
  std::vector<TestType> src(15);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<TestType>(i * 3 + 1);
  const auto d_src = DTensor<TestType>::from_vector({3, 5}, src);
  auto d_dst = DTensor<TestType>::empty({5, 3});
  blip::cuda::copy_strided<TestType>({5, 3}, d_src.data(), {1, 5}, d_dst.data());
  std::vector<TestType> expected(15);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j) expected[static_cast<size_t>(i * 3 + j)] = src[static_cast<size_t>(j * 5 + i)];
  CHECK(d_dst.to_vector() == expected);

  // Rank 4: a permutation with an offset, a stride-0 (broadcast) axis and a stepped axis.
  const Shape shape{2, 3, 2, 2};
  const Strides strides{1, 0, 6, 3};  // elements of src at offset 2
  auto d_out = DTensor<TestType>::empty(shape);
  blip::cuda::copy_strided<TestType>(shape, d_src.data() + 2, strides, d_out.data());
  std::vector<TestType> ref;
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t d = 0; d < 2; ++d) ref.push_back(src[static_cast<size_t>(2 + a + 6 * c + 3 * d)]);
  CHECK(d_out.to_vector() == ref);

  // Rank 0: one element.
  auto d_scalar = DTensor<TestType>::empty({});
  blip::cuda::copy_strided<TestType>({}, d_src.data() + 4, {}, d_scalar.data());
  CHECK(d_scalar.item() == src[4]);
}

TEMPLATE_TEST_CASE("cuda: fill, including counts beyond one grid's reach", "", float, double,
                   int64_t) {
  for (const int64_t n : {int64_t{1}, int64_t{1000}, (int64_t{1} << 24) + 333}) {
    auto t = DTensor<TestType>::zeros({n});
    blip::cuda::fill<TestType>(t.data(), n, static_cast<TestType>(3));
    const std::vector<TestType> back = t.to_vector();
    CHECK(std::count(back.begin(), back.end(), static_cast<TestType>(3)) == n);
  }
  blip::cuda::fill<TestType>(nullptr, 0, TestType(1));  // nothing to do
  CHECK_THROWS_AS(blip::cuda::fill<TestType>(nullptr, -1, TestType(1)), blip::Error);
}

TEMPLATE_TEST_CASE("cuda: binary ops with broadcasting match a CPU loop", "", float, double) {
  using blip::cuda::BinaryOp;
  const Shape a_shape{4, 1, 5}, b_shape{3, 1};
  const Shape out_shape = blip::broadcast_shapes(a_shape, b_shape, "test");
  REQUIRE(out_shape == Shape{4, 3, 5});
  const auto a = random_values<TestType>(20, 3);
  auto b = random_values<TestType>(3, 4);
  for (auto& x : b) x += x < 0 ? TestType(-0.5) : TestType(0.5);  // keep division tame
  const auto d_a = DTensor<TestType>::from_vector(a_shape, a);
  const auto d_b = DTensor<TestType>::from_vector(b_shape, b);
  const Strides a_str = broadcast_strides(a_shape, out_shape);
  const Strides b_str = broadcast_strides(b_shape, out_shape);
  CHECK(a_str == Strides{5, 0, 1});
  CHECK(b_str == Strides{0, 1, 0});

  for (const BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    auto d_out = DTensor<TestType>::empty(out_shape);
    blip::cuda::binary<TestType>(op, out_shape, d_a.data(), a_str, d_b.data(), b_str, d_out.data());
    const std::vector<TestType> got = d_out.to_vector();
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t k = 0; k < 5; ++k) {
          const TestType want = apply(op, a[static_cast<size_t>(i * 5 + k)], b[static_cast<size_t>(j)]);
          CHECK(got[static_cast<size_t>((i * 3 + j) * 5 + k)] == Approx(want).epsilon(1e-6));
        }
  }

  // Both operands read through a transpose, no broadcasting: out = a^T * a^T.
  const auto d_m = DTensor<TestType>::from_vector({4, 5}, a);
  auto d_t = DTensor<TestType>::empty({5, 4});
  blip::cuda::binary<TestType>(BinaryOp::mul, {5, 4}, d_m.data(), {1, 5}, d_m.data(), {1, 5},
                               d_t.data());
  const std::vector<TestType> t = d_t.to_vector();
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      const TestType x = a[static_cast<size_t>(j * 5 + i)];
      CHECK(t[static_cast<size_t>(i * 4 + j)] == Approx(x * x).epsilon(1e-6));
    }

  // Contract violations are reported before any launch.
  const Shape rank9(9, 1);
  const Strides strides9(9, 0);
  CHECK_THROWS_AS(blip::cuda::binary<TestType>(BinaryOp::add, rank9, d_a.data(), strides9,
                                               d_b.data(), strides9, d_t.data()),
                  blip::Error);
  CHECK_THROWS_AS(blip::cuda::binary<TestType>(BinaryOp::add, out_shape, d_a.data(), {5, 1},
                                               d_b.data(), b_str, d_t.data()),
                  blip::Error);
}

namespace {

// Naive row-major reference with the same argument meaning as blip::cuda::gemm.
template <class T>
void gemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                    int64_t lda, int64_t sa, const T* b, int64_t ldb, int64_t sb, T beta, T* c,
                    int64_t ldc, int64_t sc, int64_t batch) {
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t l = 0; l < k; ++l) {
          const T av = ta ? a[p * sa + l * lda + i] : a[p * sa + i * lda + l];
          const T bv = tb ? b[p * sb + j * ldb + l] : b[p * sb + l * ldb + j];
          acc += static_cast<double>(av) * static_cast<double>(bv);
        }
        T& cv = c[p * sc + i * ldc + j];
        cv = static_cast<T>(alpha * acc + (beta == T(0) ? 0.0 : beta * static_cast<double>(cv)));
      }
}

template <class T>
void check_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch, T alpha, T beta,
                double tolerance) {
  // Padded leading dimensions and batch strides, so a mix-up of any of them shows.
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t lda = a_cols + 2, ldb = b_cols + 3, ldc = n + 1;
  const int64_t sa = a_rows * lda + 5, sb = b_rows * ldb + 7, sc = m * ldc + 4;
  const auto a = random_values<T>(static_cast<size_t>(sa * batch), 10);
  const auto b = random_values<T>(static_cast<size_t>(sb * batch), 11);
  auto c = random_values<T>(static_cast<size_t>(sc * batch), 12);
  const auto d_a = DTensor<T>::from_vector({sa * batch}, a);
  const auto d_b = DTensor<T>::from_vector({sb * batch}, b);
  const auto d_c = DTensor<T>::from_vector({sc * batch}, c);

  blip::cuda::gemm<T>(ta, tb, m, n, k, alpha, d_a.data(), lda, sa, d_b.data(), ldb, sb, beta,
                      d_c.data(), ldc, sc, batch);
  gemm_reference<T>(ta, tb, m, n, k, alpha, a.data(), lda, sa, b.data(), ldb, sb, beta, c.data(),
                    ldc, sc, batch);
  const std::vector<T> got = d_c.to_vector();
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("trans_a=" << ta << " trans_b=" << tb << " index " << i);
    // Padding between rows and batches is outside C's matrices and must be left alone.
    CHECK(got[i] == Approx(c[i]).margin(tolerance));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("cuda: batched gemm, all transpose combinations, matches a triple loop", "",
                   float, double) {
  const double tolerance = std::is_same_v<TestType, float> ? 1e-4 : 1e-12;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      check_gemm<TestType>(ta, tb, 7, 5, 9, 3, TestType(1), TestType(0), tolerance);
      check_gemm<TestType>(ta, tb, 7, 5, 9, 3, TestType(0.5), TestType(-2), tolerance);
      check_gemm<TestType>(ta, tb, 33, 17, 65, 2, TestType(1.5), TestType(0.25), tolerance * 4);
    }
  // k == 0 leaves beta * C.
  check_gemm<TestType>(false, false, 4, 3, 0, 2, TestType(1), TestType(3), tolerance);
  check_gemm<TestType>(true, true, 4, 3, 0, 2, TestType(1), TestType(0), tolerance);
}

TEST_CASE("cuda: gemm with beta = 0 ignores NaN in C; bad leading dimensions throw") {
  const int64_t m = 2, n = 3, k = 4;
  const auto d_a = DTensor<float>::from_vector({m * k}, std::vector<float>(m * k, 1.f));
  const auto d_b = DTensor<float>::from_vector({k * n}, std::vector<float>(k * n, 2.f));
  const auto d_c = DTensor<float>::from_vector(
      {m * n}, std::vector<float>(m * n, std::numeric_limits<float>::quiet_NaN()));
  blip::cuda::gemm<float>(false, false, m, n, k, 1.f, d_a.data(), k, 0, d_b.data(), n, 0, 0.f,
                          d_c.data(), n, 0, 1);
  CHECK(d_c.to_vector() == std::vector<float>(m * n, 8.f));

  CHECK_THROWS_AS(blip::cuda::gemm<float>(false, false, m, n, k, 1.f, d_a.data(), k - 1, 0,
                                          d_b.data(), n, 0, 0.f, d_c.data(), n, 0, 1),
                  blip::Error);
  CHECK_THROWS_AS(blip::cuda::gemm<float>(false, true, m, n, k, 1.f, d_a.data(), k, 0,
                                          d_b.data(), n, 0, 0.f, d_c.data(), n, 0, 1),
                  blip::Error);  // B^T is stored n x k: ldb must be >= k
  CHECK_THROWS_AS(blip::cuda::gemm<float>(false, false, m, n, k, 1.f, d_a.data(), k, 0,
                                          d_b.data(), n, 0, 0.f, d_c.data(), n - 1, 0, 1),
                  blip::Error);
}

TEST_CASE("cuda: StreamGuard makes a stream current for this thread only") {
  REQUIRE(blip::cuda::current_stream() == nullptr);
  blip::cuda::Stream s1, s2;
  REQUIRE(s1.native() != nullptr);
  REQUIRE(s1.native() != s2.native());
  {
    blip::cuda::StreamGuard g1(s1);
    CHECK(blip::cuda::current_stream() == s1.native());
    void* other_thread_stream = reinterpret_cast<void*>(1);
    std::thread([&] { other_thread_stream = blip::cuda::current_stream(); }).join();
    CHECK(other_thread_stream == nullptr);
    {
      blip::cuda::StreamGuard g2(s2);
      CHECK(blip::cuda::current_stream() == s2.native());
      CHECK(blip::cuda::cublas_handle() != nullptr);
    }
    CHECK(blip::cuda::current_stream() == s1.native());

    // Work queued on the guarded stream: allocation, fill, gemm and read-back stay ordered.
    auto a = DTensor<float>::empty({64, 32});
    auto b = DTensor<float>::empty({32, 16});
    auto c = DTensor<float>::empty({64, 16});
    blip::cuda::fill<float>(a.data(), a.numel(), 1.f);
    blip::cuda::fill<float>(b.data(), b.numel(), 0.5f);
    blip::cuda::gemm<float>(false, false, 64, 16, 32, 1.f, a.data(), 32, 0, b.data(), 16, 0, 0.f,
                            c.data(), 16, 0, 1);
    CHECK(c.to_vector() == std::vector<float>(64 * 16, 16.f));
    s1.synchronize();
  }
  CHECK(blip::cuda::current_stream() == nullptr);
  blip::cuda::synchronize();
}

TEST_CASE("cuda: cached blocks are reused only on the stream they were allocated on") {
  using Mem = blip::DeviceMemory<Cuda>;
  blip::cuda::empty_cache();
  blip::cuda::Stream s;
  void* on_stream = nullptr;
  {
    blip::cuda::StreamGuard guard(s);
    on_stream = Mem::allocate(4096);
    Mem::release(on_stream, 4096);
  }
  void* on_default = Mem::allocate(4096);
  CHECK(on_default != on_stream);  // the stream's block stays cached, so this is a new one
  Mem::release(on_default, 4096);
  {
    blip::cuda::StreamGuard guard(s);
    void* again = Mem::allocate(4096);
    CHECK(again == on_stream);
    Mem::release(again, 4096);
  }
  blip::cuda::empty_cache();
  CHECK(blip::cuda::cache_stats().bytes_cached == 0);
}

// Op-level parity (ggml test-backend-ops style): the same op on Cpu and Cuda tensors.
TEST_CASE("cuda: ops matmul (batched, transposed views), linear, add/mul with broadcasting match the CPU") {
  blip::Generator gen(11);
  auto a = blip::randn<float>({3, 17, 9}, gen), b = blip::randn<float>({3, 12, 9}, gen);
  auto w = blip::randn<float>({5, 9}, gen), bias = blip::randn<float>({5}, gen), row = blip::randn<float>({9}, gen);
  auto close = [](const std::vector<float>& x, const std::vector<float>& y) {
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(std::abs(x[i] - y[i]) <= 1e-4f * (1 + std::abs(y[i])));
  };
  auto on_gpu = [](const blip::Tensor<float>& t) { return blip::to<blip::Cuda>(t); };
  close(blip::matmul(on_gpu(a), blip::transpose(on_gpu(b), -1, -2)).to_vector(),
        blip::matmul(a, blip::transpose(b, -1, -2)).to_vector());
  close(blip::linear(on_gpu(a), on_gpu(w), on_gpu(bias)).to_vector(), blip::linear(a, w, bias).to_vector());
  close(blip::add(on_gpu(a), on_gpu(row)).to_vector(), blip::add(a, row).to_vector());
  close(blip::mul(on_gpu(a), on_gpu(row)).to_vector(), blip::mul(a, row).to_vector());
  auto back = blip::to<blip::Cpu>(blip::matmul(on_gpu(a), on_gpu(blip::transpose(w, 0, 1))));
  close(back.to_vector(), blip::matmul(a, blip::transpose(w, 0, 1)).to_vector());
}

// Kernel-level parity: each kernel of Kernels<Cuda> against Kernels<Cpu> on the same data
// (row tails, repeated and skipped indices, a zero row; bf16 rounding bit for bit).
TEST_CASE("cuda: the rowwise, pointwise, index and loss kernels match the CPU kernels") {
  using Gpu = blip::backend::Kernels<Cuda>;
  using Host = blip::backend::Kernels<blip::Cpu>;
  const int64_t rows = 7, cols = 300;  // > 256 threads per row, with a tail
  const std::vector<float> x = random_values<float>(rows * cols, 21), g = random_values<float>(rows * cols, 22);
  const std::vector<float> w = random_values<float>(cols, 23), b = random_values<float>(cols, 24);
  const auto dev = [](const std::vector<float>& v) { return DTensor<float>::from_vector({int64_t(v.size())}, v); };
  const auto near = [](const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    INFO(what);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 2e-5f * (1 + std::abs(want[i])));
  };
  const DTensor<float> dx = dev(x), dg = dev(g), dw = dev(w), db = dev(b);
  const int64_t n = rows * cols;
  std::vector<float> want(n), want2(n);
  DTensor<float> out = DTensor<float>::empty({n}), out2 = DTensor<float>::empty({n});

  for (auto op : {blip::backend::UnaryOp::gelu, blip::backend::UnaryOp::tanh, blip::backend::UnaryOp::exp}) {
    Gpu::unary(op, dx.data(), out.data(), n);
    Host::unary(op, x.data(), want.data(), n);
    near(out.to_vector(), want, "unary");
  }
  Gpu::gelu_backward(dx.data(), dg.data(), out.data(), n);
  Host::gelu_backward(x.data(), g.data(), want.data(), n);
  near(out.to_vector(), want, "gelu_backward");

  Gpu::softmax(dx.data(), out.data(), rows, cols);
  Host::softmax(x.data(), want.data(), rows, cols);
  near(out.to_vector(), want, "softmax");
  Gpu::softmax_backward(out.data(), dg.data(), out2.data(), rows, cols);
  Host::softmax_backward(want.data(), g.data(), want2.data(), rows, cols);
  near(out2.to_vector(), want2, "softmax_backward");
  Gpu::log_softmax(dx.data(), out.data(), rows, cols);
  Host::log_softmax(x.data(), want.data(), rows, cols);
  near(out.to_vector(), want, "log_softmax");
  Gpu::log_softmax_backward(out.data(), dg.data(), out2.data(), rows, cols);
  Host::log_softmax_backward(want.data(), g.data(), want2.data(), rows, cols);
  near(out2.to_vector(), want2, "log_softmax_backward");

  DTensor<float> mean = DTensor<float>::empty({rows}), rstd = DTensor<float>::empty({rows});
  std::vector<float> hmean(rows), hrstd(rows);
  Gpu::layer_norm(dx.data(), dw.data(), db.data(), out.data(), mean.data(), rstd.data(), rows, cols, 1e-6);
  Host::layer_norm(x.data(), w.data(), b.data(), want.data(), hmean.data(), hrstd.data(), rows, cols, 1e-6);
  near(out.to_vector(), want, "layer_norm");
  near(rstd.to_vector(), hrstd, "layer_norm rstd");
  // gweight and gbias are accumulated into, not overwritten: start them non-zero on both.
  const std::vector<float> gw0 = random_values<float>(cols, 25);
  DTensor<float> gw = dev(gw0), gb = dev(gw0);
  std::vector<float> hgw = gw0, hgb = gw0;
  Gpu::layer_norm_backward(dx.data(), dw.data(), mean.data(), rstd.data(), dg.data(), out.data(), gw.data(), gb.data(),
                           rows, cols);
  Host::layer_norm_backward(x.data(), w.data(), hmean.data(), hrstd.data(), g.data(), want.data(), hgw.data(),
                            hgb.data(), rows, cols);
  near(out.to_vector(), want, "layer_norm_backward gx");
  near(gw.to_vector(), hgw, "layer_norm_backward gweight");
  near(gb.to_vector(), hgb, "layer_norm_backward gbias");

  std::vector<float> xz = x;
  std::fill_n(xz.begin() + cols, cols, 0.0f);  // a zero row: the eps clamp
  const DTensor<float> dxz = dev(xz);
  DTensor<float> norms = DTensor<float>::empty({rows});
  std::vector<float> hnorms(rows);
  Gpu::l2_normalize(dxz.data(), out.data(), norms.data(), rows, cols, 1e-12);
  Host::l2_normalize(xz.data(), want.data(), hnorms.data(), rows, cols, 1e-12);
  near(out.to_vector(), want, "l2_normalize");
  Gpu::l2_normalize_backward(out.data(), norms.data(), dg.data(), out2.data(), rows, cols, 1e-12);
  Host::l2_normalize_backward(want.data(), hnorms.data(), g.data(), want2.data(), rows, cols, 1e-12);
  near(out2.to_vector(), want2, "l2_normalize_backward");

  for (auto [outer, r, inner] : {std::array<int64_t, 3>{1, n, 1}, {rows, cols, 1}, {rows, 3, 100}, {1, rows, cols}}) {
    DTensor<float> s = DTensor<float>::empty({outer * inner});
    std::vector<float> hs(static_cast<size_t>(outer * inner));
    Gpu::sum_middle(dx.data(), outer, r, inner, s.data());
    Host::sum_middle(x.data(), outer, r, inner, hs.data());
    INFO("sum_middle " << outer << "x" << r << "x" << inner);
    for (size_t i = 0; i < hs.size(); ++i) REQUIRE(std::abs(s.to_vector()[i] - hs[i]) <= 1e-4f * (1 + std::abs(hs[i])));
  }

  std::vector<uint8_t> mask(n);
  for (int64_t i = 0; i < n; ++i) mask[i] = static_cast<uint8_t>(i % 3 == 0);
  const auto dmask = DTensor<uint8_t>::from_vector({n}, mask);
  Gpu::masked_fill(dx.data(), dmask.data(), -2.5f, out.data(), n);
  Host::masked_fill(x.data(), mask.data(), -2.5f, want.data(), n);
  CHECK(out.to_vector() == want);

  std::vector<float> special = x;
  special[0] = std::numeric_limits<float>::quiet_NaN();
  special[1] = std::numeric_limits<float>::infinity();
  special[2] = 1.00390625f;  // exactly halfway between two bf16 values: rounds to even
  const DTensor<float> dspecial = dev(special);
  DTensor<blip::bf16> h16 = DTensor<blip::bf16>::empty({n});
  std::vector<blip::bf16> want16(n);
  Gpu::to_bf16(dspecial.data(), h16.data(), n);
  Host::to_bf16(special.data(), want16.data(), n);
  const std::vector<blip::bf16> got16 = h16.to_vector();
  for (int64_t i = 0; i < n; ++i) REQUIRE(got16[i].bits == want16[i].bits);

  // The multi-tensor updates over ~500 slices of one buffer (several launches' lists, an empty
  // slice among them), against the CPU on the same slices.
  std::vector<int64_t> bounds{0};
  for (int i = 0; bounds.back() < n; ++i) bounds.push_back(std::min<int64_t>(n, bounds.back() + (i == 5 ? 0 : 1 + i % 7)));
  const auto slices = [&](auto* m_, const float* v_) {
    std::vector<blip::backend::EmaTensor<float>> out;
    for (size_t i = 0; i + 1 < bounds.size(); ++i) out.push_back({m_ + bounds[i], v_ + bounds[i], bounds[i + 1] - bounds[i]});
    return out;
  };
  REQUIRE(bounds.size() > 130);
  DTensor<float> m = dev(x);
  std::vector<float> hm = x;
  const auto gpu_terms = slices(m.data(), dg.data()), host_terms = slices(hm.data(), g.data());
  Gpu::ema(gpu_terms.data(), gpu_terms.size(), 0.995f, 0.005f);
  Host::ema(host_terms.data(), host_terms.size(), 0.995f, 0.005f);
  near(m.to_vector(), hm, "ema");
  const blip::backend::AdamWCoefficients<float> c{0.99f, 0.9f, 0.1f, 0.999f, 0.001f, -1e-3f, 0.03f, 1e-8f};
  DTensor<float> p = dev(x), mm = DTensor<float>::zeros({n}), vv = DTensor<float>::zeros({n});
  std::vector<float> hp = x, hmm(n, 0.0f), hvv(n, 0.0f);
  const auto adam_slices = [&](float* p_, float* m_, float* v_, const float* g_) {
    std::vector<blip::backend::AdamWTensor<float>> out;
    for (size_t i = 0; i + 1 < bounds.size(); ++i)
      out.push_back({p_ + bounds[i], m_ + bounds[i], v_ + bounds[i], g_ + bounds[i], bounds[i + 1] - bounds[i]});
    return out;
  };
  const auto gpu_adam = adam_slices(p.data(), mm.data(), vv.data(), dg.data());
  const auto host_adam = adam_slices(hp.data(), hmm.data(), hvv.data(), g.data());
  for (int step = 0; step < 2; ++step) {
    Gpu::adamw(gpu_adam.data(), gpu_adam.size(), c);
    Host::adamw(host_adam.data(), host_adam.size(), c);
  }
  near(p.to_vector(), hp, "adamw p");
  near(vv.to_vector(), hvv, "adamw v");

  const std::vector<int64_t> index{3, 0, 3, 6, 1};  // 3 repeats; 6 is skipped by the scatter
  const auto didx = DTensor<int64_t>::from_vector({5}, index);
  DTensor<float> gathered = DTensor<float>::empty({5 * cols});
  std::vector<float> hgathered(5 * cols);
  Gpu::gather(dx.data(), rows, gathered.data(), didx.data(), 5, 1, cols);
  Host::gather(x.data(), rows, hgathered.data(), index.data(), 5, 1, cols);
  CHECK(gathered.to_vector() == hgathered);
  DTensor<float> scattered = DTensor<float>::zeros({n});
  std::vector<float> hscattered(n, 0.0f);
  Gpu::scatter_add(gathered.data(), scattered.data(), rows, didx.data(), 5, 1, cols, 6);
  Host::scatter_add(hgathered.data(), hscattered.data(), rows, index.data(), 5, 1, cols, 6);
  CHECK(scattered.to_vector() == hscattered);

  const std::vector<int64_t> labels{0, 299, 5, 17, 100, 3, 250};
  const auto dlabels = DTensor<int64_t>::from_vector({rows}, labels);
  Gpu::log_softmax(dx.data(), out.data(), rows, cols);
  Host::log_softmax(x.data(), want.data(), rows, cols);
  DTensor<float> loss = DTensor<float>::empty({1});
  float hloss = 0;
  Gpu::nll_mean(out.data(), dlabels.data(), rows, cols, loss.data());
  Host::nll_mean(want.data(), labels.data(), rows, cols, &hloss);
  CHECK(std::abs(loss.to_vector()[0] - hloss) <= 1e-5f * (1 + std::abs(hloss)));
  const float gy = 0.7f;
  const DTensor<float> dgy = DTensor<float>::from_vector({1}, {gy});
  Gpu::nll_mean_backward(out.data(), dlabels.data(), rows, cols, dgy.data(), out2.data());
  Host::nll_mean_backward(want.data(), labels.data(), rows, cols, &gy, want2.data());
  near(out2.to_vector(), want2, "nll_mean_backward");
}

// Attention against the CPU kernel: a key mask, kv_index sharing, a strided q, bf16 inputs.
static void attention_matches_cpu(int64_t B, int64_t Bkv, int64_t H, int64_t Sq, int64_t Sk, int64_t d, int64_t dv,
                           const std::vector<int64_t>& kv_index) {
  using Gpu = blip::backend::Kernels<Cuda>;
  using Host = blip::backend::Kernels<blip::Cpu>;
  // q is [B, Sq, H, d] read as [B, H, Sq, d] (heads split from a projection): strided rows.
  const std::vector<float> q = random_values<float>(B * Sq * H * d, 31), k = random_values<float>(Bkv * H * Sk * d, 32);
  const std::vector<float> v = random_values<float>(Bkv * H * Sk * dv, 33), gout = random_values<float>(B * H * Sq * dv, 34);
  std::vector<float> mask(B * Sk, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = Sk - 40 * (b + 1); j < Sk; ++j) mask[b * Sk + j] = -10000.0f;  // padded keys
  const auto dev = [](const std::vector<float>& x) { return DTensor<float>::from_vector({int64_t(x.size())}, x); };
  const DTensor<float> dq = dev(q), dk = dev(k), dvv = dev(v), dmask = dev(mask), dgout = dev(gout);
  const auto args = [&](const float* qp, const float* kp, const float* vp, const float* mp, float* out) {
    blip::backend::AttentionArgs<float> a;
    a.q = qp;
    a.q_stride = {Sq * H * d, d, H * d};
    a.k = kp;
    a.k_stride = {H * Sk * d, Sk * d, d};
    a.v = vp;
    a.v_stride = {H * Sk * dv, Sk * dv, dv};
    a.mask = mp;
    a.mask_stride = {Sk, 0, 0, 1};
    a.out = out;
    a.out_stride = {H * Sq * dv, Sq * dv, dv};
    a.B = B, a.H = H, a.Sq = Sq, a.Sk = Sk, a.d = d, a.dv = dv, a.Bkv = Bkv;
    a.scale = 0.25f;
    a.kv_index = kv_index.data();
    return a;
  };
  const auto near = [](const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    INFO(what);
    REQUIRE(got.size() == want.size());
    float scale = 1e-3f;
    for (float w : want) scale = std::max(scale, std::abs(w));
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-4f * scale);
  };
  DTensor<float> out = DTensor<float>::empty({B * H * Sq * dv});
  std::vector<float> want(B * H * Sq * dv);
  // kv_index lives where the kernel runs (backend/args.hpp).
  const auto dkv = DTensor<int64_t>::from_vector({B}, kv_index);
  const auto on_device = [&](auto a) {
    a.kv_index = dkv.data();
    return a;
  };
  Gpu::attention(on_device(args(dq.data(), dk.data(), dvv.data(), dmask.data(), out.data())));
  Host::attention(args(q.data(), k.data(), v.data(), mask.data(), want.data()));
  near(out.to_vector(), want, "forward");

  blip::backend::AttentionBackwardArgs<float> g, hg;
  DTensor<float> gq = DTensor<float>::empty({B * H * Sq * d}), gk = DTensor<float>::zeros({Bkv * H * Sk * d}),
                 gv = DTensor<float>::zeros({Bkv * H * Sk * dv});
  std::vector<float> hgq(B * H * Sq * d), hgk(Bkv * H * Sk * d, 0.0f), hgv(Bkv * H * Sk * dv, 0.0f);
  g.forward = on_device(args(dq.data(), dk.data(), dvv.data(), dmask.data(), nullptr));
  g.grad_out = dgout.data();
  g.grad_out_stride = {H * Sq * dv, Sq * dv, dv};
  g.grad_q = gq.data(), g.grad_k = gk.data(), g.grad_v = gv.data();
  hg.forward = args(q.data(), k.data(), v.data(), mask.data(), nullptr);
  hg.grad_out = gout.data();
  hg.grad_out_stride = g.grad_out_stride;
  hg.grad_q = hgq.data(), hg.grad_k = hgk.data(), hg.grad_v = hgv.data();
  Gpu::attention_backward(g);
  Host::attention_backward(hg);
  near(gq.to_vector(), hgq, "grad_q");
  near(gk.to_vector(), hgk, "grad_k");
  near(gv.to_vector(), hgv, "grad_v");

  // bf16 q, k, v: the device widens them on load; within bf16 tolerance of the CPU's bf16 path.
  const std::vector<blip::bf16> q16 = bf16_values(q), k16 = bf16_values(k), v16 = bf16_values(v);
  const auto dq16 = DTensor<blip::bf16>::from_vector({int64_t(q16.size())}, q16);
  const auto dk16 = DTensor<blip::bf16>::from_vector({int64_t(k16.size())}, k16);
  const auto dv16 = DTensor<blip::bf16>::from_vector({int64_t(v16.size())}, v16);
  const auto args16 = [&](const blip::bf16* qp, const blip::bf16* kp, const blip::bf16* vp, const float* mp, float* o) {
    const auto f = args(nullptr, nullptr, nullptr, mp, o);
    blip::backend::AttentionArgs<float, blip::bf16> a;
    a.q = qp, a.k = kp, a.v = vp, a.mask = f.mask, a.out = f.out;
    a.q_stride = f.q_stride, a.k_stride = f.k_stride, a.v_stride = f.v_stride, a.mask_stride = f.mask_stride;
    a.out_stride = f.out_stride;
    a.B = B, a.H = H, a.Sq = Sq, a.Sk = Sk, a.d = d, a.dv = dv, a.Bkv = Bkv, a.scale = f.scale, a.kv_index = f.kv_index;
    return a;
  };
  Gpu::attention_bf16(on_device(args16(dq16.data(), dk16.data(), dv16.data(), dmask.data(), out.data())));
  Host::attention_bf16(args16(q16.data(), k16.data(), v16.data(), mask.data(), want.data()));
  const std::vector<float> got = out.to_vector();
  float worst = 0, scale = 1e-3f;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  CHECK(worst <= 1e-2f * scale);  // the CPU rounds the probabilities to bf16 as well

  // The bf16 forward's backward (autocast training), its output read for D: the tensor-core kernels
  // (d, dv multiples of 16) or the widened float ones, against the CPU's float backward of the
  // widened inputs; q_scale scales grad_q only.
  const auto within = [](const std::vector<float>& got, const std::vector<float>& ref, const char* what) {
    INFO(what);
    REQUIRE(got.size() == ref.size());
    float err = 0, scale = 1e-3f;
    for (size_t i = 0; i < got.size(); ++i) {
      err = std::max(err, std::abs(got[i] - ref[i]));
      scale = std::max(scale, std::abs(ref[i]));
    }
    CHECK(err <= 2e-2f * scale);
  };
  blip::backend::AttentionBackwardBf16Args g16, hg16;
  DTensor<float> gq16 = DTensor<float>::empty({B * H * Sq * d}), gk16 = DTensor<float>::zeros({Bkv * H * Sk * d}),
                 gv16 = DTensor<float>::zeros({Bkv * H * Sk * dv});
  std::vector<float> hgq16(B * H * Sq * d), hgk16(Bkv * H * Sk * d, 0.0f), hgv16(Bkv * H * Sk * dv, 0.0f);
  g16.forward = on_device(args16(dq16.data(), dk16.data(), dv16.data(), dmask.data(), out.data()));
  g16.grad_out = dgout.data(), g16.grad_out_stride = g.grad_out_stride;
  g16.grad_q = gq16.data(), g16.grad_k = gk16.data(), g16.grad_v = gv16.data(), g16.q_scale = 0.5f;
  hg16.forward = args16(q16.data(), k16.data(), v16.data(), mask.data(), want.data());
  hg16.grad_out = gout.data(), hg16.grad_out_stride = g.grad_out_stride;
  hg16.grad_q = hgq16.data(), hg16.grad_k = hgk16.data(), hg16.grad_v = hgv16.data(), hg16.q_scale = 0.5f;
  Gpu::attention_backward_bf16(g16);
  Host::attention_backward_bf16(hg16);
  within(gq16.to_vector(), hgq16, "bf16 grad_q");
  within(gk16.to_vector(), hgk16, "bf16 grad_k");
  within(gv16.to_vector(), hgv16, "bf16 grad_v");
}

// Every kernel family (cuda::AttentionKernel) on a small head and on BLIP's (64: the tensor-core
// forward and backward for bf16), ragged tiles both ways.
TEST_CASE("cuda: attention forward and backward match the CPU kernel") {
  const blip::cuda::AttentionKernel before = blip::cuda::attention_kernel();
  for (blip::cuda::AttentionKernel kind :
       {blip::cuda::AttentionKernel::direct, blip::cuda::AttentionKernel::tiled, blip::cuda::AttentionKernel::tensor_core}) {
    INFO("attention kernel " << blip::cuda::attention_kernel_name(kind));
    blip::cuda::set_attention_kernel(kind);
    {
      INFO("d 16, dv 12");
      attention_matches_cpu(3, 2, 2, 37, 300, 16, 12, {1, 0, 1});
    }
    {
      INFO("d 64, dv 64: 35 text rows against 577 image rows");
      attention_matches_cpu(4, 2, 2, 35, 577, 64, 64, {0, 0, 1, 1});
    }
    {
      INFO("d 64, dv 64: self-attention, 130 rows");
      attention_matches_cpu(2, 2, 3, 130, 130, 64, 64, {0, 1});
    }
  }
  blip::cuda::set_attention_kernel(before);
}

// bf16 GEMMs (cuBLAS GemmEx, float accumulation) against the CPU's: every transpose combination
// with padded leading dimensions, linear with and without a bias, and k = 0.
TEST_CASE("cuda: bf16 gemm and linear match the CPU kernels") {
  using Gpu = blip::backend::Kernels<Cuda>;
  using Host = blip::backend::Kernels<blip::Cpu>;
  const auto near = [](const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-4f * (1 + std::abs(want[i])));
  };
  const int64_t m = 19, n = 23, k = 37, pad = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const int64_t a_rows = ta ? k : m, a_cols = (ta ? m : k) + pad, b_rows = tb ? n : k, b_cols = (tb ? k : n) + pad;
      const std::vector<blip::bf16> a = bf16_values(random_values<float>(a_rows * a_cols, 41));
      const std::vector<blip::bf16> b = bf16_values(random_values<float>(b_rows * b_cols, 42));
      const auto da = DTensor<blip::bf16>::from_vector({a_rows * a_cols}, a);
      const auto db = DTensor<blip::bf16>::from_vector({b_rows * b_cols}, b);
      DTensor<float> c = DTensor<float>::zeros({m * n});
      std::vector<float> want(m * n);
      Gpu::gemm_bf16(ta, tb, m, n, k, da.data(), a_cols, db.data(), b_cols, c.data(), n);
      Host::gemm_bf16(ta, tb, m, n, k, a.data(), a_cols, b.data(), b_cols, want.data(), n);
      near(c.to_vector(), want);
    }
  const std::vector<blip::bf16> x = bf16_values(random_values<float>(m * k, 43));
  const std::vector<blip::bf16> w = bf16_values(random_values<float>(n * k, 44));
  const std::vector<float> bias = random_values<float>(n, 45);
  const auto dx = DTensor<blip::bf16>::from_vector({m * k}, x), dw = DTensor<blip::bf16>::from_vector({n * k}, w);
  const auto dbias = DTensor<float>::from_vector({n}, bias);
  for (bool with_bias : {false, true}) {
    INFO("bias " << with_bias);
    DTensor<float> y = DTensor<float>::empty({m * n});
    std::vector<float> want(m * n);
    Gpu::linear_bf16(dx.data(), m, k, dw.data(), n, with_bias ? dbias.data() : nullptr, y.data());
    Host::linear_bf16(x.data(), m, k, w.data(), n, with_bias ? bias.data() : nullptr, want.data());
    near(y.to_vector(), want);
  }
  DTensor<float> c = DTensor<float>::from_vector({m * n}, std::vector<float>(m * n, 7.0f));
  Gpu::gemm_bf16(false, false, m, n, 0, dx.data(), 1, dw.data(), n, c.data(), n);
  CHECK(c.to_vector() == std::vector<float>(m * n, 0.0f));
}

// linear goes through cuBLASLt with the bias in the epilogue; a plan is chosen per shape and per
// operand alignment (a view one element in is 4- or 2-byte aligned, which the default 256-byte
// assumption of Lt's heuristic would not allow; a bias off 16 bytes takes the plain cuBLAS path).
// Values as the CPU kernel, with and without bias.
TEST_CASE("cuda: linear through cuBLASLt matches the CPU kernel, aligned or not") {
  using Gpu = blip::backend::Kernels<Cuda>;
  using Host = blip::backend::Kernels<blip::Cpu>;
  const int64_t rows = 37, in = 70, out = 45;
  const std::vector<float> x = random_values<float>(rows * in + 1, 61), w = random_values<float>(out * in + 1, 62);
  const std::vector<float> bias = random_values<float>(out + 1, 63);
  const auto dx = DTensor<float>::from_vector({rows * in + 1}, x), dw = DTensor<float>::from_vector({out * in + 1}, w);
  const auto dbias = DTensor<float>::from_vector({out + 1}, bias);
  const std::vector<blip::bf16> x16 = bf16_values(x), w16 = bf16_values(w);
  const auto dx16 = DTensor<blip::bf16>::from_vector({rows * in + 1}, x16);
  const auto dw16 = DTensor<blip::bf16>::from_vector({out * in + 1}, w16);
  const auto near = [](const std::vector<float>& got, const float* want, int64_t n) {
    for (int64_t i = 0; i < n; ++i) REQUIRE(std::abs(got[static_cast<size_t>(i)] - want[i]) <= 1e-4f * (1 + std::abs(want[i])));
  };
  for (int64_t offset : {0, 1})
    for (bool with_bias : {false, true}) {
      INFO("offset " << offset << " bias " << with_bias);
      DTensor<float> y = DTensor<float>::zeros({rows * out + 1});
      std::vector<float> want(rows * out + 1);
      Gpu::linear(dx.data() + offset, rows, in, dw.data() + offset, out, with_bias ? dbias.data() + offset : nullptr,
                  y.data() + offset);
      Host::linear(x.data() + offset, rows, in, w.data() + offset, out, with_bias ? bias.data() + offset : nullptr,
                   want.data() + offset);
      near(y.to_vector(), want.data(), rows * out + 1);
      DTensor<float> y16 = DTensor<float>::zeros({rows * out + 1});
      Gpu::linear_bf16(dx16.data() + offset, rows, in, dw16.data() + offset, out,
                       with_bias ? dbias.data() + offset : nullptr, y16.data() + offset);
      Host::linear_bf16(x16.data() + offset, rows, in, w16.data() + offset, out, with_bias ? bias.data() + offset : nullptr,
                        want.data() + offset);
      near(y16.to_vector(), want.data(), rows * out + 1);
    }
  CHECK(blip::cuda::cublas_lt_version() > 0);
  // TF32, asked for: the same products with 10-bit mantissas (a relative error near 1e-3), in
  // both the cuBLASLt linear and the cuBLAS GEMM; off again, exact to 1e-4 as above.
  const bool before = blip::cuda::tf32();
  blip::cuda::set_tf32(true);
  DTensor<float> y = DTensor<float>::zeros({rows * out + 1});
  std::vector<float> want(rows * out + 1);
  Gpu::linear(dx.data(), rows, in, dw.data(), out, dbias.data(), y.data());
  Host::linear(x.data(), rows, in, w.data(), out, bias.data(), want.data());
  const std::vector<float> got = y.to_vector();
  float worst = 0, scale = 1e-3f;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  CHECK(worst <= 1e-2f * scale);
  blip::cuda::set_tf32(before);
}

// Attention in double, without a mask or kv_index, with more query rows and features than a
// block has threads (the strided loops over rows and columns run several times).
TEST_CASE("cuda: attention in double without mask or kv_index matches the CPU kernel") {
  using Gpu = blip::backend::Kernels<Cuda>;
  using Host = blip::backend::Kernels<blip::Cpu>;
  const int64_t B = 2, H = 1, Sq = 280, Sk = 33, d = 270, dv = 5;
  const std::vector<double> q = random_values<double>(B * H * Sq * d, 51), k = random_values<double>(B * H * Sk * d, 52);
  const std::vector<double> v = random_values<double>(B * H * Sk * dv, 53), go = random_values<double>(B * H * Sq * dv, 54);
  const auto dev = [](const std::vector<double>& x) { return DTensor<double>::from_vector({int64_t(x.size())}, x); };
  const DTensor<double> dq = dev(q), dk = dev(k), dvv = dev(v), dgo = dev(go);
  const auto args = [&](const double* qp, const double* kp, const double* vp, double* out) {
    blip::backend::AttentionArgs<double> a;
    a.q = qp, a.k = kp, a.v = vp, a.out = out;
    a.q_stride = {H * Sq * d, Sq * d, d};
    a.k_stride = {H * Sk * d, Sk * d, d};
    a.v_stride = {H * Sk * dv, Sk * dv, dv};
    a.out_stride = {H * Sq * dv, Sq * dv, dv};
    a.B = B, a.H = H, a.Sq = Sq, a.Sk = Sk, a.d = d, a.dv = dv, a.Bkv = B;
    a.scale = 0.06;
    return a;
  };
  const auto near = [](const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-10 * (1 + std::abs(want[i])));
  };
  DTensor<double> out = DTensor<double>::empty({B * H * Sq * dv});
  std::vector<double> want(B * H * Sq * dv);
  Gpu::attention(args(dq.data(), dk.data(), dvv.data(), out.data()));
  Host::attention(args(q.data(), k.data(), v.data(), want.data()));
  near(out.to_vector(), want);
  blip::backend::AttentionBackwardArgs<double> g, hg;
  DTensor<double> gq = DTensor<double>::empty({B * H * Sq * d}), gk = DTensor<double>::zeros({B * H * Sk * d}),
                  gv = DTensor<double>::zeros({B * H * Sk * dv});
  std::vector<double> hgq(B * H * Sq * d), hgk(B * H * Sk * d, 0.0), hgv(B * H * Sk * dv, 0.0);
  g.forward = args(dq.data(), dk.data(), dvv.data(), nullptr);
  g.grad_out = dgo.data();
  g.grad_out_stride = {H * Sq * dv, Sq * dv, dv};
  g.grad_q = gq.data(), g.grad_k = gk.data(), g.grad_v = gv.data();
  hg.forward = args(q.data(), k.data(), v.data(), nullptr);
  hg.grad_out = go.data();
  hg.grad_out_stride = g.grad_out_stride;
  hg.grad_q = hgq.data(), hg.grad_k = hgk.data(), hg.grad_v = hgv.data();
  Gpu::attention_backward(g);
  Host::attention_backward(hg);
  near(gq.to_vector(), hgq);
  near(gk.to_vector(), hgk);
  near(gv.to_vector(), hgv);
}

TEST_CASE("cuda: transfer_stats counts each host<->device copy and nothing else") {
  const blip::cuda::TransferStats before = blip::cuda::transfer_stats();
  const DTensor<float> x = DTensor<float>::from_vector({3}, {1, 2, 3});  // one copy in
  const DTensor<float> y = blip::add(x, x);                                // device work only
  const DTensor<float> z = blip::clone(y);
  const blip::cuda::TransferStats mid = blip::cuda::transfer_stats() - before;
  CHECK(mid.to_device == 1);
  CHECK(mid.bytes_to_device == 3 * sizeof(float));
  CHECK(mid.to_host == 0);
  CHECK(z.to_vector() == std::vector<float>{2, 4, 6});  // one copy out
  const blip::cuda::TransferStats all = blip::cuda::transfer_stats() - before;
  CHECK(all.to_host == 1);
  CHECK(all.copies() == 2);
}

// upload<Cuda> stages through a ring of two pinned buffers and a copy stream the current stream
// waits for: values as to<Cuda>, slots reused and grown, work queued between uploads, on the
// default stream and on an own one, each upload counted once.
TEST_CASE("cuda: upload copies without a host wait and gives what to<Cuda> gives") {
  const blip::cuda::TransferStats before = blip::cuda::transfer_stats();
  std::vector<DTensor<float>> results;
  std::vector<std::vector<float>> want;
  for (int64_t n : {5, 3000, 17, 1 << 19, 40, 1 << 20}) {  // later slots grow past earlier sizes
    std::vector<float> host(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) host[static_cast<size_t>(i)] = static_cast<float>(i % 1000) * 0.5f + static_cast<float>(n);
    {
      const blip::Tensor<float> x = blip::Tensor<float>::from_vector({n}, host);
      const DTensor<float> y = blip::upload<Cuda>(x);
      results.push_back(blip::scale(y, 2.0f));  // device work on the upload before anything waits
    }  // the host tensor is gone before the copy need have finished
    for (float& v : host) v *= 2.0f;
    want.push_back(host);
  }
  const blip::cuda::TransferStats mid = blip::cuda::transfer_stats() - before;
  CHECK(mid.to_device == 6);
  CHECK(mid.to_host == 0);
  for (size_t i = 0; i < results.size(); ++i) CHECK(results[i].to_vector() == want[i]);
  const blip::cuda::Stream stream;
  const blip::cuda::StreamGuard on(stream);
  const blip::Tensor<int64_t> ids = blip::Tensor<int64_t>::from_vector({4}, {7, -2, 9, 1});
  CHECK(blip::upload<Cuda>(ids).to_vector() == ids.to_vector());
}

TEST_CASE("cuda: an index outside its range is reported at the next copy to the host, with the CPU's message") {
  const DTensor<float> table = DTensor<float>::from_vector({3, 2}, {1, 2, 3, 4, 5, 6});
  const DTensor<int64_t> good = DTensor<int64_t>::from_vector({2}, {2, 0});
  CHECK(blip::index_select(table, 0, good).to_vector() == std::vector<float>{5, 6, 1, 2});
  const DTensor<int64_t> bad = DTensor<int64_t>::from_vector({4}, {1, 7, 2, -1});
  DTensor<float> out;
  REQUIRE_NOTHROW(out = blip::index_select(table, 0, bad));  // queued: nothing has waited yet
  // The message is the CPU's (op, what, value, position of the first bad one, extent).
  REQUIRE_THROWS_WITH(out.to_vector(), Catch::Contains("index_select: index 7 at position 1 is outside [0, 3)"));
  // Reported once: the check is retired, and the lookup itself read no memory outside the table.
  std::vector<float> rows;
  REQUIRE_NOTHROW(rows = out.to_vector());
  CHECK(rows == std::vector<float>{3, 4, 0, 0, 5, 6, 0, 0});
  // synchronize() reports checks of every stream.
  const DTensor<int64_t> ids = DTensor<int64_t>::from_vector({2}, {0, 3});
  (void)blip::embedding(ids, table);
  REQUIRE_THROWS_WITH(blip::cuda::synchronize(), Catch::Contains("embedding: index 3 at position 1"));
  REQUIRE_NOTHROW(blip::cuda::synchronize());
  // More checks in flight than the board has slots: they are drained, not lost.
  for (int i = 0; i < 1500; ++i) (void)blip::index_select(table, 0, good);
  REQUIRE_NOTHROW(blip::cuda::synchronize());
}

TEMPLATE_TEST_CASE("cuda: topk matches the CPU on distinct values; ties and NaN in the stated order", "", float,
                   double) {
  using T = TestType;
  for (const auto& [rows, n, k] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 7, 7}, {5, 300, 16}, {2, 5000, 256}}) {
    std::vector<T> x(static_cast<size_t>(rows * n));
    // distinct values in a scrambled order: 7919 is prime, so i -> i * 7919 mod size is a permutation
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<T>((i * 7919) % x.size()) - T(100);
    const DTensor<T> dx = DTensor<T>::from_vector({rows, n}, x);
    const auto got = blip::topk(dx, k);
    const auto want = blip::topk(blip::Tensor<T, blip::Cpu>::from_vector({rows, n}, x), k);
    INFO(rows << "x" << n << " k=" << k);
    CHECK(got.values.to_vector() == want.values.to_vector());
    CHECK(got.indices.to_vector() == want.indices.to_vector());
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const DTensor<T> ties = DTensor<T>::from_vector({1, 7}, {T(1), T(-0.0), nan, T(1), T(0), T(5), -nan});
  const auto top = blip::topk(ties, 7);
  CHECK(top.indices.to_vector() == std::vector<int64_t>{2, 6, 5, 0, 3, 1, 4});  // NaN first; ties by column
  const std::vector<T> v = top.values.to_vector();
  CHECK(std::signbit(v[5]));  // -0 comes back as given
  // backward: the gradient lands on the selected columns only
  DTensor<T> leaf = DTensor<T>::from_vector({2, 4}, {4, 1, 3, 2, 0, 9, 8, 7});
  leaf.set_requires_grad(true);
  const auto t2 = blip::topk(leaf, 2);
  blip::sum(t2.values).backward();
  CHECK(leaf.grad().to_vector() == std::vector<T>{1, 0, 1, 0, 0, 1, 1, 0});
}

TEST_CASE("cuda: concat and stack off axis 0 write strided slices of their output") {
  const DTensor<float> a = DTensor<float>::from_vector({2, 2}, {1, 2, 3, 4});
  const DTensor<float> b = DTensor<float>::from_vector({2, 1}, {9, 8});
  CHECK(blip::concat(std::vector{a, b}, 1).to_vector() == std::vector<float>{1, 2, 9, 3, 4, 8});
  CHECK(blip::stack(std::vector{a, a}, 2).to_vector() == std::vector<float>{1, 1, 2, 2, 3, 3, 4, 4});
  const DTensor<int64_t> ids = DTensor<int64_t>::from_vector({2, 3}, {5, 6, 7, 8, 9, 10});
  const DTensor<int64_t> col = DTensor<int64_t>::from_vector({2, 1}, {0, 0});
  CHECK(blip::concat(std::vector{col, ids}, 1).to_vector() == std::vector<int64_t>{0, 5, 6, 7, 0, 8, 9, 10});
}

int main(int argc, char** argv) {
  if (blip::cuda::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
