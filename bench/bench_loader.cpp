// bench_loader — does the DataLoader keep a training step fed? Prints, for BLIP's train pipeline
// (decode -> RandomResizedCrop 384 + flip + RandAugment -> normalise) on 640x480 PNG files:
//   1. the pipeline's cost per image on one thread;
//   2. the loader's throughput (images/s) with each worker count;
//   3. a training-like consumer: each "step" is a GEMM workload on all OpenMP threads, timed
//      alone and with the loader feeding it; the consumer's data wait per step is what a
//      training loop would lose.
// Usage: bench_loader [images=48] [batch=8] [step_gflop=20]. A plain program (not Google
// Benchmark): the figures are ratios within one run.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <omp.h>

#include "blip/data/image_text_loader.hpp"
#include "blip/ops/matmul.hpp"
#include "blip/ops/creation.hpp"
#include "blip/vision/encode.hpp"

using clock_type = std::chrono::steady_clock;

static double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

int main(int argc, char** argv) {
  const int64_t n_images = argc > 1 ? std::atoll(argv[1]) : 48;
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 8;
  const double step_gflop = argc > 3 ? std::atof(argv[3]) : 20.0;
  const int threads = omp_get_max_threads();
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "blip_bench_loader";
  std::filesystem::create_directories(dir);

  // Photo-like content (smooth gradients + mild noise) compresses and decodes like real PNGs.
  blip::Generator gen(1);
  blip::data::RetrievalAnnotations ann;
  for (int64_t i = 0; i < n_images; ++i) {
    blip::vision::Image img(480, 640, 3);
    for (int64_t y = 0; y < 480; ++y)
      for (int64_t x = 0; x < 640; ++x)
        for (int c = 0; c < 3; ++c)
          img.row(y)[x * 3 + c] = static_cast<uint8_t>((x * (c + 1) / 5 + y * (3 - c) / 4 + i * 17 + gen.uniform_int(8)) & 255);
    const std::string path = (dir / ("img" + std::to_string(i) + ".png")).string();
    blip::vision::write_png(path, img);
    ann.samples.push_back({path, "A photo, number " + std::to_string(i) + ".", i, i});
  }
  ann.source = dir.string();
  blip::data::TrainPipeline pipeline;  // 384 x 384, BLIP's policies

  // 1. one thread, one image at a time
  {
    const auto t = clock_type::now();
    for (int64_t i = 0; i < std::min<int64_t>(n_images, 8); ++i) {
      blip::Generator g(static_cast<uint64_t>(i));
      const auto img = blip::vision::load_image(ann.samples[static_cast<size_t>(i)].img_path);
      (void)blip::vision::normalize_to_chw(pipeline.augment(img, g), pipeline.mean, pipeline.std);
    }
    std::printf("train pipeline, 1 thread: %.1f ms/image\n", 1000 * since(t) / static_cast<double>(std::min<int64_t>(n_images, 8)));
  }

  // 2. loader throughput
  for (int workers = 1; workers <= threads; workers *= 2) {
    blip::data::LoaderOptions o;
    o.batch_size = batch;
    o.workers = workers;
    o.shuffle = true;
    auto loader = blip::data::make_train_loader(ann, pipeline, o);
    const auto t = clock_type::now();
    int64_t seen = 0;
    while (auto b = loader->next()) seen += static_cast<int64_t>(b->texts.size());
    std::printf("loader alone, %d worker(s): %.1f images/s\n", workers, static_cast<double>(seen) / since(t));
  }

  // 3. a consumer whose steps are GEMMs on every OpenMP thread
  const int64_t m = 1024;
  const int64_t reps = std::max<int64_t>(1, static_cast<int64_t>(step_gflop * 1e9 / (2.0 * m * m * m)));
  const auto a = blip::randn<float, blip::Cpu>({m, m}, gen), w = blip::randn<float, blip::Cpu>({m, m}, gen);
  auto step = [&] {
    for (int64_t r = 0; r < reps; ++r) (void)blip::matmul(a, w);
  };
  step();  // warm up
  const int64_t steps = (n_images + batch - 1) / batch;
  auto t = clock_type::now();
  for (int64_t s = 0; s < steps; ++s) step();
  const double alone = since(t) / static_cast<double>(steps);
  for (const int workers : {1, threads}) {
    blip::data::LoaderOptions o;
    o.batch_size = batch;
    o.workers = workers;
    o.shuffle = true;
    auto loader = blip::data::make_train_loader(ann, pipeline, o);
    t = clock_type::now();
    int64_t done = 0;
    while (auto b = loader->next()) {
      step();
      ++done;
    }
    const double total = since(t) / static_cast<double>(done);
    std::printf("step alone %.3f s; with loader (%d worker(s), %d OpenMP threads): %.3f s/step, of which waiting "
                "for data %.3f s (%.1f%%)\n",
                alone, workers, threads, total, loader->wait_seconds() / static_cast<double>(done),
                100.0 * loader->wait_seconds() / (total * static_cast<double>(done)));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
