// tests/test_cuda_model.cpp — the whole model on the Cuda device against the same model on the
// CPU: the tiny configuration's features, the re-ranked score matrices and a training step, with
// the host<->device copies counted (issue 13: the only transfers are the inputs in and the results
// out: none between features in and out, across an i2t re-rank, or across a training step), and
// blip::Retriever on the device against the CPU one.
// Its own main: without a CUDA device it exits 77 (ctest: skipped). Compiling it is the check
// that StandardBlip<float, Cuda> instantiates.

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "blip/autograd/engine.hpp"
#include "blip/optim/adamw.hpp"
#include "blip/backend/cuda/runtime.hpp"
#include "blip/models/host_io.hpp"
#include "blip/models/presets.hpp"
#include "blip/retriever.hpp"

using namespace blip;

namespace {

using CpuModel = StandardBlip<float, Cpu>;
using GpuModel = StandardBlip<float, Cuda>;

// Both models hold the CPU model's (seeded) weights.
void copy_weights(CpuModel& from, GpuModel& onto) {
  std::vector<Parameter<float, Cpu>*> src;
  std::vector<Parameter<float, Cuda>*> dst;
  from.visit_parameters([&](const std::string&, Parameter<float, Cpu>& p) { src.push_back(&p); });
  onto.visit_parameters([&](const std::string&, Parameter<float, Cuda>& p) { dst.push_back(&p); });
  REQUIRE(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i]->assign(to<Cuda>(src[i]->value()));
  onto.copy_params();
}

void require_near(const Tensor<float, Cuda>& got, const Tensor<float, Cpu>& want, double tol, const char* what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i) REQUIRE(std::abs(g[i] - w[i]) <= tol * (1 + std::abs(w[i])));
}

struct Inputs {
  Tensor<float, Cpu> images;
  TextBatch<float, Cpu> texts;
};

Inputs make_inputs(const BlipConfig& c, int64_t batch, int64_t length) {
  Generator gen(7);
  Inputs in;
  in.images = randn<float, Cpu>({batch, 3, c.vision.img_size, c.vision.img_size}, gen);
  std::vector<int64_t> ids(static_cast<size_t>(batch * length)), mask(ids.size(), 1);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < length; ++j) {
      const size_t i = static_cast<size_t>(b * length + j);
      ids[i] = j == 0 ? c.tokens.cls : 1000 % c.text.vocab_size + (b * 13 + j * 7) % 90;
      if (j >= length - b) mask[i] = 0, ids[i] = c.tokens.pad;  // row b has b padded positions
    }
  in.texts = {Tensor<int64_t, Cpu>::from_vector({batch, length}, ids), Tensor<int64_t, Cpu>::from_vector({batch, length}, mask)};
  return in;
}

}  // namespace

TEST_CASE("cuda model: features match the CPU, and nothing crosses to the host between inputs and features") {
  const BlipConfig c = presets::tiny();
  CpuModel cpu(c);
  GpuModel gpu(c);
  copy_weights(cpu, gpu);
  const Inputs in = make_inputs(c, 3, 9);
  NoGradGuard no_grad;
  const Features<float, Cpu> want = cpu.extract_feat(&in.images, &in.texts);

  const Tensor<float, Cuda> images = to<Cuda>(in.images);
  const TextBatch<float, Cuda> texts = to<Cuda>(in.texts);
  const cuda::TransferStats before = cuda::transfer_stats();
  const Features<float, Cuda> got = gpu.extract_feat(&images, &texts);
  cuda::synchronize();
  const cuda::TransferStats during = cuda::transfer_stats() - before;
  CHECK(during.copies() == 0);
  require_near(got.image_feat, want.image_feat, 1e-4, "image_feat");
  require_near(got.text_feat, want.text_feat, 1e-4, "text_feat");
  require_near(got.image_embeds, want.image_embeds, 1e-4, "image_embeds");
}

TEST_CASE("cuda model: the re-ranked score matrices match the CPU's") {
  BlipConfig c = presets::tiny();
  c.fast_match = false;
  CpuModel cpu(c);
  GpuModel gpu(c);
  copy_weights(cpu, gpu);
  const Inputs in = make_inputs(c, 4, 8);
  NoGradGuard no_grad;
  const Features<float, Cpu> f = cpu.extract_feat(&in.images, &in.texts, true);
  const Tensor<float, Cpu> want = cpu.compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat,
                                                               in.texts.ids, in.texts.mask);
  const Tensor<float, Cuda> images = to<Cuda>(in.images);
  const TextBatch<float, Cuda> texts = to<Cuda>(in.texts);
  const Features<float, Cuda> g = gpu.extract_feat(&images, &texts, true);
  cuda::synchronize();
  const cuda::TransferStats before = cuda::transfer_stats();
  const Tensor<float, Cuda> got = gpu.compute_score_matrix_i2t(g.image_feat, g.image_embeds, g.text_feat, texts.ids,
                                                               texts.mask);
  cuda::synchronize();
  CHECK((cuda::transfer_stats() - before).copies() == 0);  // the i2t re-rank stays on the device
  require_near(got, want, 1e-4, "score_i2t");
}

TEST_CASE("cuda model: a training step's losses and gradients match the CPU's, with no transfer") {
  const BlipConfig c = presets::tiny();
  CpuModel cpu(c);
  GpuModel gpu(c);
  copy_weights(cpu, gpu);
  const Inputs in = make_inputs(c, 4, 8);
  const Tensor<int64_t, Cpu> image_ids = Tensor<int64_t, Cpu>::from_vector({4}, {0, 1, 2, 1});
  // The default sampler draws on the device with Philox keyed by the model's generator (the same
  // seed on both models): the same picks unless two weights differ across a draw's boundary.
  Losses<float, Cpu> want = cpu.loss(in.images, in.texts, image_ids);
  const Tensor<float, Cuda> images = to<Cuda>(in.images);
  const TextBatch<float, Cuda> texts = to<Cuda>(in.texts);
  const Tensor<int64_t, Cuda> gpu_ids = to<Cuda>(image_ids);
  cuda::synchronize();
  const cuda::TransferStats before = cuda::transfer_stats();
  const HostExchanges exchanges = host_exchanges();
  Losses<float, Cuda> got = gpu.loss(images, texts, gpu_ids);
  add(got.itc_loss, got.itm_loss).backward();
  cuda::synchronize();
  const cuda::TransferStats during = cuda::transfer_stats() - before;
  INFO("host<->device copies in one training step: " << during.copies() << " (" << during.bytes_to_device << " B in, "
                                                     << during.bytes_to_host << " B out)");
  CHECK(during.copies() == 0);
  CHECK((host_exchanges() - exchanges).total() == 0);
  add(want.itc_loss, want.itm_loss).backward();
  CHECK(got.neg_image_idx.to_vector() == want.neg_image_idx.to_vector());
  CHECK(got.neg_text_idx.to_vector() == want.neg_text_idx.to_vector());
  require_near(got.itc_loss, want.itc_loss, 1e-4, "itc_loss");
  require_near(got.itm_loss, want.itm_loss, 1e-4, "itm_loss");
  std::vector<Tensor<float, Cpu>> cpu_grads;
  std::vector<Tensor<float, Cuda>> gpu_grads;
  cpu.visit_parameters([&](const std::string&, Parameter<float, Cpu>& p) { cpu_grads.push_back(p.grad()); });
  gpu.visit_parameters([&](const std::string&, Parameter<float, Cuda>& p) { gpu_grads.push_back(p.grad()); });
  REQUIRE(cpu_grads.size() == gpu_grads.size());
  for (size_t i = 0; i < cpu_grads.size(); ++i) {
    REQUIRE(cpu_grads[i].defined() == gpu_grads[i].defined());
    if (cpu_grads[i].defined()) require_near(gpu_grads[i], cpu_grads[i], 1e-3, "parameter gradient");
  }
}

TEST_CASE("cuda model: deterministic mode is the default — two training runs give the same bits") {
  // No atomics in blip's kernels (fixed-order reductions, no split sums), Philox draws keyed by the
  // model's generator, cuBLAS's results fixed for one GPU and toolkit.
  const BlipConfig c = presets::tiny();
  const Inputs in = make_inputs(c, 4, 8);
  const auto run = [&] {
    CpuModel seed(c);
    GpuModel gpu(c);
    copy_weights(seed, gpu);
    AdamW<float, Cuda> opt(named_parameters(gpu), {.lr = 1e-3, .weight_decay = 0.05});
    const Tensor<float, Cuda> images = to<Cuda>(in.images);
    const TextBatch<float, Cuda> texts = to<Cuda>(in.texts);
    const Tensor<int64_t, Cuda> ids = to<Cuda>(Tensor<int64_t, Cpu>::from_vector({4}, {0, 1, 2, 1}));
    std::vector<float> trace;
    for (int step = 0; step < 2; ++step) {
      const Losses<float, Cuda> out = gpu.loss(images, texts, ids);
      add(out.itc_loss, out.itm_loss).backward();
      opt.step();
      opt.zero_grad();
      trace.push_back(out.itc_loss.item());
      trace.push_back(out.itm_loss.item());
    }
    gpu.visit_parameters([&](const std::string&, Parameter<float, Cuda>& p) {
      const auto v = p.value().to_vector();
      trace.insert(trace.end(), v.begin(), v.end());
    });
    return trace;
  };
  const std::vector<float> a = run(), b = run();
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("cuda model: blip::Retriever on the device gives the CPU's features and ITM scores") {
  // BLIP_HF_FIXTURES: where the fixtures are on a machine the binary was carried to.
  const char* fixtures = std::getenv("BLIP_HF_FIXTURES");
  const std::filesystem::path dir =
      (fixtures ? std::filesystem::path(fixtures) : std::filesystem::path(BLIP_SOURCE_DIR) / "tests" / "data" / "hf") / "small";
  const auto on_cpu = Retriever<>::load((dir / "model").string());
  const auto on_gpu = Retriever<GpuModel>::load((dir / "model").string());
  std::vector<std::string> paths, captions{"a photo of a cat", "two dogs on the grass"};
  for (const char* name : {"img0.png", "img1.png", "img2.png"}) paths.push_back((dir / "images" / name).string());
  const auto near = [](const Tensor<float, Cpu>& got, const Tensor<float, Cpu>& want, const char* what) {
    INFO(what);
    REQUIRE(got.shape() == want.shape());
    const std::vector<float> g = got.to_vector(), w = want.to_vector();
    for (size_t i = 0; i < g.size(); ++i) REQUIRE(std::abs(g[i] - w[i]) <= 1e-4f * (1 + std::abs(w[i])));
  };
  near(on_gpu.embed_images(paths), on_cpu.embed_images(paths), "embed_images");
  near(on_gpu.embed_texts(captions), on_cpu.embed_texts(captions), "embed_texts");
  near(on_gpu.itm_score(paths, captions), on_cpu.itm_score(paths, captions), "itm_score");
}

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
