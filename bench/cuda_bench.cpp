// BLIP-base (random weights) on the GPU: issue 13's four cases and the two machine figures its
// targets are stated against. Built when blip::cuda is; without a usable GPU it prints why and
// exits 77. Every timed iteration ends with cuda::synchronize(), so a figure is the device's
// work, not its queueing. Counters: items_per_s (images, texts, pairs or steps per second),
// and TFLOP/s or GB/s for the machine figures.
//   gemm_bf16/N   cuBLAS bf16 x bf16 -> float GEMM, N x N x N (the target text's 788 TFLOP/s)
//   copy/MiB      device-to-device copy (bytes read + written; the target text's 4.3 TB/s)
//   (a) image features, ViT-B/16 at 384, batch B        precision 0 fp32, 1 bf16, 2 fp32 with TF32
//   (b) text features, batch B at length 35              precision 0 fp32, 1 bf16
//   (c) ITM re-rank: 8 images x T texts (one K/V per image) precision 0 fp32, 1 bf16
//   (d) training step (loss + backward) at batch B       bf16 0/1 (autocast), 2 fp32 with TF32
//   attention/Sq/Sk/kernel/bf16/backward   the attention kernels alone, 12 heads of 64: 32 images'
//       self-attention (577 x 577) or 128 texts against 8 images' K/V (35 x 577, kv_index);
//       kernel 0 direct, 1 tiled, 2 tensor_core (cuda::AttentionKernel); TFLOP/s counts
//       4·B·H·Sq·Sk·d forward and 2.5 times that backward (FlashAttention-2's convention)
#include <benchmark/benchmark.h>

#include <cstdio>

#include <blip/backend/cuda/runtime.hpp>
#include <blip/blip.hpp>
#include <blip/models/presets.hpp>

using namespace blip;
using Model = StandardBlip<float, Cuda>;

namespace {

Precision precision_of(const benchmark::State& state, int arg) {
  return state.range(arg) == 1 ? Precision::bf16 : Precision::fp32;
}

// precision argument 2: fp32 tensors with TF32 GEMMs (cuda::set_tf32), for the run of one case.
struct Tf32For {
  explicit Tf32For(const benchmark::State& state, int arg) : before(cuda::tf32()) { cuda::set_tf32(state.range(arg) == 2); }
  ~Tf32For() { cuda::set_tf32(before); }
  bool before;
};

Model& model() {
  static Model* m = [] {
    auto* p = new Model(presets::blip_base());
    Generator gen(0);
    p->init_weights(gen);
    return p;
  }();
  return *m;
}

TextBatch<float, Cuda> texts(int64_t n, int64_t len, int64_t first, Generator& gen) {
  std::vector<int64_t> ids(static_cast<size_t>(n * len)), mask(static_cast<size_t>(n * len), 1);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < len; ++j)
      ids[static_cast<size_t>(i * len + j)] = j == 0 ? first : (j == len - 1 ? 102 : 1000 + gen.uniform_int(20000));
  return {Tensor<int64_t, Cuda>::from_vector({n, len}, ids), Tensor<int64_t, Cuda>::from_vector({n, len}, mask)};
}

// One untimed call, then `fn` once per iteration, each followed by a wait for the device.
template <class F>
void time_on_device(benchmark::State& state, F&& fn) {
  fn();
  cuda::synchronize();
  for (auto _ : state) {
    fn();
    cuda::synchronize();
  }
}

void rate(benchmark::State& state, double items) {
  state.counters["items_per_s"] =
      benchmark::Counter(items * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_gemm_bf16(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto a = zeros<bf16, Cuda>({n, n}), b = zeros<bf16, Cuda>({n, n});
  auto c = Tensor<float, Cuda>::empty({n, n});
  const auto gemm = [&] {
    backend::Kernels<Cuda>::gemm_bf16(false, true, n, n, n, a.data(), n, b.data(), n, c.data(), n);
  };
  time_on_device(state, gemm);
  state.counters["TFLOP_per_s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-12 *
                                                         static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kIsRate);
}

void BM_copy(benchmark::State& state) {
  const int64_t bytes = state.range(0) << 20;
  const auto src = zeros<float, Cuda>({bytes / 4});
  auto dst = Tensor<float, Cuda>::empty({bytes / 4});
  time_on_device(state, [&] { DeviceMemory<Cuda>::copy_within(dst.data(), src.data(), static_cast<size_t>(bytes)); });
  state.counters["GB_per_s"] =
      benchmark::Counter(2.0 * double(bytes) * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_a_image_features(benchmark::State& state) {
  const PrecisionScope precision(precision_of(state, 1));
  const Tf32For tf32(state, 1);
  Model& m = model();
  const int64_t batch = state.range(0);
  Generator gen(1);
  const auto images = randn<float, Cuda>({batch, 3, 384, 384}, gen);
  NoGradGuard no_grad;
  time_on_device(state, [&] { benchmark::DoNotOptimize(m.image_feat(m.image_embeds(images)).data()); });
  rate(state, double(batch));
}

void BM_b_text_features(benchmark::State& state) {
  const PrecisionScope precision(precision_of(state, 1));
  Model& m = model();
  const int64_t batch = state.range(0);
  Generator gen(2);
  const auto b = texts(batch, 35, 101, gen);
  NoGradGuard no_grad;
  time_on_device(state, [&] { benchmark::DoNotOptimize(m.text_feat(m.text_embeds(b)).data()); });
  rate(state, double(batch));
}

void BM_c_itm_rerank(benchmark::State& state) {
  const PrecisionScope precision(precision_of(state, 1));
  Model& m = model();
  const int64_t images = 8, per_image = state.range(0);
  Generator gen(3);
  NoGradGuard no_grad;
  const auto embeds = m.image_embeds(randn<float, Cuda>({images, 3, 384, 384}, gen));
  const auto b = texts(per_image, 35, 101, gen);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < images; ++i)
    for (int64_t j = 0; j < per_image; ++j) pairs.emplace_back(i, j);
  const auto ids_enc = m.encoder_ids(b.ids);
  const auto run = [&] { return m.itm_scores(pairs, embeds, ids_enc, b.mask); };
  run();
  for (auto _ : state) benchmark::DoNotOptimize(run().data());  // itm_scores returns host values
  rate(state, double(images * per_image));
}

void BM_d_train_step(benchmark::State& state) {
  const PrecisionScope autocast(precision_of(state, 1), PrecisionScope::Weights::changing);
  const Tf32For tf32(state, 1);
  Model& m = model();
  const int64_t batch = state.range(0);
  Generator gen(4);
  const auto images = randn<float, Cuda>({batch, 3, 384, 384}, gen);
  const auto b = texts(batch, 35, 101, gen);
  std::vector<int64_t> ids(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) ids[static_cast<size_t>(i)] = i;
  const auto step = [&] {
    auto losses = m.loss(images, b, ids);
    add(losses.itc_loss, losses.itm_loss).backward();
    m.visit_parameters([](const std::string&, Parameter<float, Cuda>& p) { p.zero_grad(); });
  };
  step();
  cuda::synchronize();
  const cuda::TransferStats before = cuda::transfer_stats();
  for (auto _ : state) {
    step();
    cuda::synchronize();
  }
  const cuda::TransferStats moved = cuda::transfer_stats() - before;
  state.counters["transfers_per_step"] = double(moved.copies()) / static_cast<double>(state.iterations());
  rate(state, 1.0);
}

void BM_attention(benchmark::State& state) {
  const int64_t Sq = state.range(0), Sk = state.range(1), H = 12, d = 64;
  const auto kernel = static_cast<cuda::AttentionKernel>(state.range(2) + 1);  // 0 direct, 1 tiled, 2 tensor_core
  const bool bf16_inputs = state.range(3) == 1, backward = state.range(4) == 1;
  const int64_t B = Sq == Sk ? 32 : 128, Bkv = Sq == Sk ? 32 : 8;
  std::vector<int64_t> kv(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) kv[static_cast<size_t>(b)] = b * Bkv / B;
  const auto kv_index = Tensor<int64_t, Cuda>::from_vector({B}, kv);
  Generator gen(1);
  const auto q = to<Cuda>(rand_uniform<float>({B, H, Sq, d}, gen, -1.0, 1.0));
  const auto k = to<Cuda>(rand_uniform<float>({Bkv, H, Sk, d}, gen, -1.0, 1.0));
  const auto v = to<Cuda>(rand_uniform<float>({Bkv, H, Sk, d}, gen, -1.0, 1.0));
  const auto q16 = detail::to_bf16(q), k16 = detail::to_bf16(k), v16 = detail::to_bf16(v);
  auto out = Tensor<float, Cuda>::empty({B, H, Sq, d}), grad_q = Tensor<float, Cuda>::empty({B, H, Sq, d});
  auto grad_k = zeros<float, Cuda>({Bkv, H, Sk, d}), grad_v = zeros<float, Cuda>({Bkv, H, Sk, d});
  const std::array<int64_t, 3> q_stride{H * Sq * d, Sq * d, d}, k_stride{H * Sk * d, Sk * d, d};
  const auto args = [&](auto* qp, auto* kp, auto* vp) {
    backend::AttentionArgs<float, std::remove_cv_t<std::remove_pointer_t<decltype(qp)>>> a;
    a.q = qp, a.k = kp, a.v = vp, a.out = out.data();
    a.q_stride = a.out_stride = q_stride;
    a.k_stride = a.v_stride = k_stride;
    a.B = B, a.H = H, a.Sq = Sq, a.Sk = Sk, a.d = d, a.dv = d, a.Bkv = Bkv;
    a.scale = 0.125f;
    a.kv_index = Sq == Sk ? nullptr : kv_index.data();
    return a;
  };
  backend::AttentionBackwardArgs<float> g;
  g.forward = args(q.data(), k.data(), v.data());
  g.grad_out = out.data();
  g.grad_out_stride = q_stride;
  g.grad_q = grad_q.data(), g.grad_k = grad_k.data(), g.grad_v = grad_v.data();
  backend::AttentionBackwardBf16Args g16;  // the bf16 forward's backward; `out` read for D
  g16.forward = args(q16.data(), k16.data(), v16.data());
  g16.grad_out = out.data(), g16.grad_out_stride = q_stride;
  g16.grad_q = grad_q.data(), g16.grad_k = grad_k.data(), g16.grad_v = grad_v.data();
  const cuda::AttentionKernel before = cuda::attention_kernel();
  cuda::set_attention_kernel(kernel);
  if (backward && bf16_inputs) backend::Kernels<Cuda>::attention_bf16(g16.forward);  // an output to read
  time_on_device(state, [&] {
    if (backward && bf16_inputs) backend::Kernels<Cuda>::attention_backward_bf16(g16);
    else if (backward) backend::Kernels<Cuda>::attention_backward(g);
    else if (bf16_inputs) backend::Kernels<Cuda>::attention_bf16(args(q16.data(), k16.data(), v16.data()));
    else backend::Kernels<Cuda>::attention(args(q.data(), k.data(), v.data()));
  });
  cuda::set_attention_kernel(before);
  const double flops = 4.0 * double(B * H) * double(Sq) * double(Sk) * double(d) * (backward ? 2.5 : 1.0);
  state.counters["TFLOP_per_s"] =
      benchmark::Counter(flops * 1e-12 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_gemm_bf16)->Arg(8192)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();
BENCHMARK(BM_copy)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();
BENCHMARK(BM_a_image_features)->ArgNames({"batch", "bf16"})->Args({128, 0})->Args({128, 1})->Args({128, 2})
    ->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_b_text_features)->ArgNames({"batch", "bf16"})->Args({1024, 0})->Args({1024, 1})
    ->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_c_itm_rerank)->ArgNames({"texts_per_image", "bf16"})->Args({128, 0})->Args({128, 1})
    ->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_d_train_step)->ArgNames({"batch", "bf16"})->Args({32, 0})->Args({32, 1})->Args({32, 2})
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

// fp32 forward and backward on every path, bf16 forward on tiled and tensor_core, the bf16 backward
// on tensor cores.
BENCHMARK(BM_attention)->ArgNames({"Sq", "Sk", "kernel", "bf16", "backward"})
    ->Args({577, 577, 0, 0, 0})->Args({577, 577, 1, 0, 0})->Args({577, 577, 1, 1, 0})->Args({577, 577, 2, 1, 0})
    ->Args({577, 577, 0, 0, 1})->Args({577, 577, 1, 0, 1})->Args({577, 577, 2, 1, 1})
    ->Args({35, 577, 0, 0, 0})->Args({35, 577, 1, 0, 0})->Args({35, 577, 2, 1, 0})->Args({35, 577, 1, 0, 1})
    ->Args({35, 577, 2, 1, 1})
    ->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::puts("cuda_bench: no CUDA device: skipped");
    return 77;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
