// The tiled CUDA attention kernels (src/cuda/attention_tiles.cuh) run on CPU threads through the
// SIMT emulation (simt.hpp) and compared with the CPU kernel: the tiling, the online softmax,
// masks, kv_index, strided views and ragged tiles are checked on every machine, GPU or not. The
// hardware run (speed, real shared memory, tensor-core rounding) is test_cuda's.

#include "simt.hpp"  // first: the device-code keywords for the header below

#include "attention_tiles.cuh"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "blip/backend/cpu/attention.hpp"
#include "blip/core/rng.hpp"

namespace {

using namespace blip;
namespace tiles = blip::cuda::tiles;

struct Case {
  int64_t B, H, Sq, Sk, d, dv, Bkv;
  bool mask = false;
  std::vector<int64_t> kv_index;  // empty: none
  bool strided_q = false;         // q stored [B, Sq, H, d] and read as [B, H, Sq, d]
  double scale = 0.0;             // 0: 1/sqrt(d)
};

// Inputs of one case in T (bf16 copies for the tensor-core path), with AttentionArgs over them.
template <class T>
struct Problem {
  Case s;
  std::vector<T> q, k, v, mask, out, grad_out;
  std::vector<bf16> q16, k16, v16;
  std::vector<int64_t> kv;

  explicit Problem(const Case& shape, uint64_t seed) : s(shape) {
    Generator gen(seed);
    auto fill = [&](std::vector<T>& x, int64_t n, double lo, double hi) {
      x.resize(static_cast<size_t>(n));
      for (T& e : x) e = static_cast<T>(lo + (hi - lo) * gen.uniform());
    };
    fill(q, s.B * s.H * s.Sq * s.d, -1.5, 1.5);
    fill(k, s.Bkv * s.H * s.Sk * s.d, -1.5, 1.5);
    fill(v, s.Bkv * s.H * s.Sk * s.dv, -1.0, 1.0);
    fill(grad_out, s.B * s.H * s.Sq * s.dv, -1.0, 1.0);
    if (s.mask) {  // [B, 1, 1, Sk]: a padding mask as BERT's, the last keys of each row shut
      mask.assign(static_cast<size_t>(s.B * s.Sk), T(0));
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t j = 0; j < s.Sk; ++j)
          mask[static_cast<size_t>(b * s.Sk + j)] = j >= s.Sk - (b + 1) * 3 ? T(-10000) : static_cast<T>(-gen.uniform());
    }
    for (T x : q) q16.push_back(bf16(static_cast<float>(x)));
    for (T x : k) k16.push_back(bf16(static_cast<float>(x)));
    for (T x : v) v16.push_back(bf16(static_cast<float>(x)));
    kv = s.kv_index;
    out.assign(static_cast<size_t>(s.B * s.H * s.Sq * s.dv), T(-7));
  }

  template <class In>
  backend::AttentionArgs<T, In> args(const In* qp, const In* kp, const In* vp, T* o) const {
    backend::AttentionArgs<T, In> a;
    a.q = qp;
    a.q_stride = s.strided_q ? std::array<int64_t, 3>{s.Sq * s.H * s.d, s.d, s.H * s.d}
                             : std::array<int64_t, 3>{s.H * s.Sq * s.d, s.Sq * s.d, s.d};
    a.k = kp;
    a.k_stride = {s.H * s.Sk * s.d, s.Sk * s.d, s.d};
    a.v = vp;
    a.v_stride = {s.H * s.Sk * s.dv, s.Sk * s.dv, s.dv};
    if (s.mask) {
      a.mask = mask.data();
      a.mask_stride = {s.Sk, 0, 0, 1};
    }
    a.out = o;
    a.out_stride = {s.H * s.Sq * s.dv, s.Sq * s.dv, s.dv};
    a.B = s.B, a.H = s.H, a.Sq = s.Sq, a.Sk = s.Sk, a.d = s.d, a.dv = s.dv, a.Bkv = s.Bkv;
    a.scale = static_cast<T>(s.scale != 0.0 ? s.scale : 1.0 / std::sqrt(static_cast<double>(s.d)));
    a.kv_index = kv.empty() ? nullptr : kv.data();
    return a;
  }
};

// The worst error relative to the reference's largest magnitude.
template <class T>
double worst(const std::vector<T>& ours, const std::vector<T>& ref) {
  REQUIRE(ours.size() == ref.size());
  double scale = 1e-6, err = 0;
  for (T x : ref) scale = std::max(scale, std::abs(static_cast<double>(x)));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(static_cast<double>(ours[i]) - static_cast<double>(ref[i]));
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  return err / scale;
}

simt::dim3 grid(int64_t tiles, int64_t H, int64_t B) {
  return {static_cast<unsigned>(tiles), static_cast<unsigned>(H), static_cast<unsigned>(B)};
}

template <class T, class In>
void forward_simt(const backend::AttentionArgs<T, In>& a) {
  const size_t bytes = tiles::SimtForwardLayout(a.d, a.dv, sizeof(T)).bytes;
  const simt::dim3 g = grid((a.Sq + tiles::kRows - 1) / tiles::kRows, a.H, a.B);
  switch (tiles::head_bound(a.d, a.dv)) {
    case 32: simt::launch(g, tiles::kSimtThreads, bytes, tiles::forward_simt<T, In, 32>, a); break;
    case 64: simt::launch(g, tiles::kSimtThreads, bytes, tiles::forward_simt<T, In, 64>, a); break;
    default: simt::launch(g, tiles::kSimtThreads, bytes, tiles::forward_simt<T, In, 128>, a); break;
  }
}

void forward_mma(const backend::AttentionArgs<float, bf16>& a) {
  const size_t bytes = tiles::MmaForwardLayout(a.d, a.dv).bytes;
  const simt::dim3 g = grid((a.Sq + tiles::kRows - 1) / tiles::kRows, a.H, a.B);
  if (tiles::head_bound(a.d, a.dv) <= 64) simt::launch(g, tiles::kMmaThreads, bytes, tiles::forward_mma<64>, a);
  else simt::launch(g, tiles::kMmaThreads, bytes, tiles::forward_mma<128>, a);
}

template <class T, int HD>
void backward_at(const backend::AttentionBackwardArgs<T>& g) {
  const auto& a = g.forward;
  const size_t bytes = tiles::SimtBackwardLayout(a.d, a.dv, sizeof(T)).bytes;
  std::vector<T> lse(static_cast<size_t>(a.B * a.H * a.Sq), T(-3)), delta(lse.size(), T(-3));
  simt::launch(grid((a.Sq + tiles::kRows - 1) / tiles::kRows, a.H, a.B), tiles::kSimtThreads, bytes,
               tiles::backward_rows<T, HD>, g, lse.data(), delta.data());
  simt::launch(grid((a.Sk + tiles::kKeys - 1) / tiles::kKeys, a.H, a.Bkv), tiles::kSimtThreads, bytes,
               tiles::backward_keys<T, HD>, g, static_cast<const T*>(lse.data()), static_cast<const T*>(delta.data()));
}

template <class T>
void backward(const backend::AttentionBackwardArgs<T>& g) {
  switch (tiles::head_bound(g.forward.d, g.forward.dv)) {
    case 32: backward_at<T, 32>(g); break;
    case 64: backward_at<T, 64>(g); break;
    default: backward_at<T, 128>(g); break;
  }
}

template <class T>
void check_simt(const Case& s, double tol) {
  Problem<T> p(s, 17);
  std::vector<T> want(p.out.size(), T(5));
  cpu::attention(p.args(p.q.data(), p.k.data(), p.v.data(), want.data()));
  forward_simt(p.args(p.q.data(), p.k.data(), p.v.data(), p.out.data()));
  CHECK(worst(p.out, want) <= tol);

  // Backward: grad_q written, grad_k / grad_v added to (zeros here).
  auto backward_args = [&](std::vector<T>& gq, std::vector<T>& gk, std::vector<T>& gv) {
    gq.assign(static_cast<size_t>(s.B * s.H * s.Sq * s.d), T(9));
    gk.assign(static_cast<size_t>(s.Bkv * s.H * s.Sk * s.d), T(0));
    gv.assign(static_cast<size_t>(s.Bkv * s.H * s.Sk * s.dv), T(0));
    backend::AttentionBackwardArgs<T> g;
    g.forward = p.args(p.q.data(), p.k.data(), p.v.data(), static_cast<T*>(nullptr));
    g.grad_out = p.grad_out.data();
    g.grad_out_stride = {s.H * s.Sq * s.dv, s.Sq * s.dv, s.dv};
    g.grad_q = gq.data(), g.grad_k = gk.data(), g.grad_v = gv.data();
    return g;
  };
  std::vector<T> gq, gk, gv, wq, wk, wv;
  cpu::attention_backward(backward_args(wq, wk, wv));
  backward(backward_args(gq, gk, gv));
  CHECK(worst(gq, wq) <= tol);
  CHECK(worst(gk, wk) <= tol);
  CHECK(worst(gv, wv) <= tol);
}

const Case kMasked{2, 3, 70, 9, 8, 5, 2, true, {}};
const Case kShared{4, 2, 6, 11, 8, 8, 2, false, {1, 1, 0, 1}, true};
const Case kScaled{1, 2, 130, 67, 16, 12, 1, false, {}, false, 0.3};
const Case kHead64{1, 2, 100, 150, 64, 64, 1, true, {}};
const Case kHead128{1, 1, 65, 70, 128, 96, 1, true, {}};

}  // namespace

TEST_CASE("cuda tiles (emulated): SIMT forward and backward match the CPU kernel in float") {
  for (const Case& s : {kMasked, kShared, kScaled, kHead64, kHead128}) {
    INFO("B=" << s.B << " H=" << s.H << " Sq=" << s.Sq << " Sk=" << s.Sk << " d=" << s.d << " dv=" << s.dv);
    check_simt<float>(s, 2e-5);
  }
}

TEST_CASE("cuda tiles (emulated): SIMT forward and backward in double") {
  check_simt<double>(kMasked, 1e-12);
  check_simt<double>(kShared, 1e-12);
}

TEST_CASE("cuda tiles (emulated): SIMT forward of bf16 inputs, widened") {
  Problem<float> p(kScaled, 5);
  std::vector<float> want(p.out.size());
  cpu::attention(p.args(p.q16.data(), p.k16.data(), p.v16.data(), want.data()));
  forward_simt(p.args(p.q16.data(), p.k16.data(), p.v16.data(), p.out.data()));
  CHECK(worst(p.out, want) <= 1e-2);  // the CPU rounds its probabilities to bf16; this path keeps float
}

TEST_CASE("cuda tiles (emulated): tensor-core forward matches the CPU's bf16 and float kernels") {
  const Case shapes[] = {
      {2, 2, 70, 90, 32, 48, 2, true, {}},                  // ragged tiles both ways, masked
      {3, 2, 35, 130, 64, 64, 1, false, {0, 0, 0}},       // ITM re-rank: texts sharing one image
      {1, 1, 20, 64, 128, 128, 1, false, {}, false, 0.2}  // the 128 bound, one warp of rows
  };
  for (const Case& s : shapes) {
    INFO("B=" << s.B << " Sq=" << s.Sq << " Sk=" << s.Sk << " d=" << s.d << " dv=" << s.dv);
    Problem<float> p(s, 23);
    std::vector<float> want16(p.out.size()), want32(p.out.size());
    cpu::attention(p.args(p.q16.data(), p.k16.data(), p.v16.data(), want16.data()));
    cpu::attention(p.args(p.q.data(), p.k.data(), p.v.data(), want32.data()));
    forward_mma(p.args(p.q16.data(), p.k16.data(), p.v16.data(), p.out.data()));
    CHECK(worst(p.out, want16) <= 1e-2);
    CHECK(worst(p.out, want32) <= 2e-2);
  }
}

// The tensor-core backward of the bf16 forward against the CPU's attention_backward_bf16 (the float
// backward on the widened bf16 inputs): q pre-scaled as the op does, the forward's own output
// for D, grad_k / grad_v added to.
void check_backward_mma(const Case& s, double tol) {
  Problem<float> p(s, 31);
  const float scale = static_cast<float>(s.scale != 0.0 ? s.scale : 1.0 / std::sqrt(static_cast<double>(s.d)));
  std::vector<bf16> q16;
  for (float x : p.q) q16.push_back(bf16(x * scale));
  backend::AttentionArgs<float, bf16> fa = p.args(q16.data(), p.k16.data(), p.v16.data(), p.out.data());
  fa.scale = 1.0f;
  cpu::attention(fa);  // the forward's output, read by the kernels for D
  auto backward_args = [&](std::vector<float>& gq, std::vector<float>& gk, std::vector<float>& gv) {
    gq.assign(static_cast<size_t>(s.B * s.H * s.Sq * s.d), 9.0f);
    gk.assign(static_cast<size_t>(s.Bkv * s.H * s.Sk * s.d), 0.0f);
    gv.assign(static_cast<size_t>(s.Bkv * s.H * s.Sk * s.dv), 0.0f);
    backend::AttentionBackwardBf16Args g;
    g.forward = fa;
    g.grad_out = p.grad_out.data();
    g.grad_out_stride = {s.H * s.Sq * s.dv, s.Sq * s.dv, s.dv};
    g.grad_q = gq.data(), g.grad_k = gk.data(), g.grad_v = gv.data();
    g.q_scale = scale;
    return g;
  };
  std::vector<float> gq, gk, gv, wq, wk, wv;
  cpu::attention_backward_bf16(backward_args(wq, wk, wv));
  const backend::AttentionBackwardBf16Args g = backward_args(gq, gk, gv);
  const size_t bytes = tiles::MmaBackwardLayout(s.d, s.dv).bytes;
  std::vector<float> lse(static_cast<size_t>(s.B * s.H * s.Sq), -3.0f), delta(lse.size(), -3.0f);
  const auto rows_grid = grid((s.Sq + tiles::kRows - 1) / tiles::kRows, s.H, s.B);
  const auto keys_grid = grid((s.Sk + tiles::kKeys - 1) / tiles::kKeys, s.H, s.Bkv);
  const auto run = [&](auto rows_kernel, auto keys_kernel) {
    simt::launch(rows_grid, tiles::kMmaThreads, bytes, rows_kernel, g, lse.data(), delta.data());
    simt::launch(keys_grid, tiles::kMmaThreads, bytes, keys_kernel, g, static_cast<const float*>(lse.data()),
                 static_cast<const float*>(delta.data()));
  };
  if (tiles::head_bound(s.d, s.dv) <= 64) run(tiles::backward_rows_mma<64>, tiles::backward_keys_mma<64>);
  else run(tiles::backward_rows_mma<128>, tiles::backward_keys_mma<128>);
  CHECK(worst(gq, wq) <= tol);
  CHECK(worst(gk, wk) <= tol);
  CHECK(worst(gv, wv) <= tol);
}

TEST_CASE("cuda tiles (emulated): tensor-core backward matches the CPU's bf16 backward") {
  const Case shapes[] = {
      {2, 2, 70, 90, 32, 48, 2, true, {}},                     // ragged tiles both ways, masked
      {3, 1, 35, 77, 64, 64, 2, true, {1, 0, 1}, true},        // hard negatives: texts sharing images, strided q
      {1, 1, 20, 64, 128, 128, 1, false, {}, false, 0.2},      // the 128 bound, one warp of rows
      {1, 1, 100, 150, 64, 64, 1, true, {}}                    // several tiles of queries and keys
  };
  for (const Case& s : shapes) {
    INFO("B=" << s.B << " Sq=" << s.Sq << " Sk=" << s.Sk << " d=" << s.d << " dv=" << s.dv);
    check_backward_mma(s, 2e-2);
  }
}

TEST_CASE("cuda tiles (emulated): a kv_index outside [0, Bkv) gives zeros, no read") {
  Case s = kShared;
  s.kv_index = {1, 7, 0, -1};
  Problem<float> p(s, 3);
  forward_simt(p.args(p.q.data(), p.k.data(), p.v.data(), p.out.data()));
  const int64_t per_row = s.H * s.Sq * s.dv;
  for (int64_t b : {1, 3})
    for (int64_t e = 0; e < per_row; ++e) CHECK(p.out[static_cast<size_t>(b * per_row + e)] == 0.0f);
  for (int64_t e = 0; e < per_row; ++e) CHECK(std::isfinite(p.out[static_cast<size_t>(e)]));
}

TEST_CASE("cuda tiles (emulated): the emulation catches what the hardware would refuse") {
  // wmma needs 32-byte aligned tiles: the emulation throws where a GPU would fault.
  alignas(32) float buffer[16 * 20] = {};
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc;
  simt::Block blk(32, 0);
  simt::current.blk = &blk;
  simt::current.linear = 0;
  CHECK_THROWS(nvcuda::wmma::store_matrix_sync(buffer + 1, acc, 20, nvcuda::wmma::mem_row_major));
  CHECK_THROWS(nvcuda::wmma::store_matrix_sync(buffer, acc, 18, nvcuda::wmma::mem_row_major));
  simt::current.blk = nullptr;
}
