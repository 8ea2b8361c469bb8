// blip demo — trains a small BLIP from scratch on Fashion-MNIST with captions and evaluates
// image<->text retrieval on the 10k test images (see docs/demo.md).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include <blip/io/atomic_file.hpp>
#include <blip/io/safetensors_writer.hpp>
#include <blip/io/state_dict.hpp>
#include <blip/models/presets.hpp>
#include <blip/pretrained/self_describing.hpp>
#include <blip/train/blip_micro_loss.hpp>
#include <blip/train/fashion_mnist_task.hpp>
#include <blip/train/train_loop.hpp>
#include <blip/vision/encode.hpp>

#include "commands.hpp"

namespace {

struct DemoOptions {
  double minutes = 5.0;
  int64_t steps = 0;  // 0: as many as fit in --minutes
  std::string out = "blip-demo";
  uint64_t seed = 0;
  bool quiet = false;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string vocab;
  int64_t batch = 64;
  double lr = 2e-3;
};

// Queries shown with their top images, and the class each asks for.
const std::vector<std::pair<std::string, int64_t>> demo_queries{
    {"a pair of trainers", 7}, {"a leather handbag", 8}, {"a summer dress", 3},
    {"a pair of jeans", 1},    {"an ankle boot", 9},     {"a warm sweater", 2}};

// One row per query: its top `columns` test images, framed green (right class) or red.
void write_grid(const std::string& path, const std::vector<std::vector<int64_t>>& rows,
                const std::vector<int64_t>& query_class, const blip::data::FashionMnistSplit& test) {
  constexpr int64_t zoom = 2, frame = 2, pad = 2;
  constexpr int64_t cell = 28 * zoom + 2 * frame;
  const int64_t columns = static_cast<int64_t>(rows.front().size());
  blip::vision::Image grid(static_cast<int64_t>(rows.size()) * (cell + pad) + pad, columns * (cell + pad) + pad, 3);
  std::fill(grid.pixels.begin(), grid.pixels.end(), uint8_t{255});
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t c = 0; c < columns; ++c) {
      const int64_t image = rows[r][static_cast<size_t>(c)];
      const bool right = test.labels[static_cast<size_t>(image)] == query_class[r];
      const uint8_t border[3] = {uint8_t(right ? 0 : 220), uint8_t(right ? 170 : 0), 0};
      const int64_t y0 = pad + static_cast<int64_t>(r) * (cell + pad), x0 = pad + c * (cell + pad);
      for (int64_t y = 0; y < cell; ++y)
        for (int64_t x = 0; x < cell; ++x) {
          uint8_t* px = grid.row(y0 + y) + (x0 + x) * 3;
          const bool inside = y >= frame && y < cell - frame && x >= frame && x < cell - frame;
          if (!inside) {
            std::copy(border, border + 3, px);
            continue;
          }
          // Fashion-MNIST is white on black; shown inverted, as a photo on white.
          const uint8_t v = 255 - test.image(image)[((y - frame) / zoom) * 28 + (x - frame) / zoom];
          px[0] = px[1] = px[2] = v;
        }
    }
  blip::vision::write_png(path, grid);
}

// Busy cores over the next half second, from /proc/stat (-1 where it cannot be read). Why not
// the load average: right after the README's first command built the tool, its 1-minute
// average still counts the compile, and the demo would train on half an idle machine.
double busy_cores_now() {
  const auto sample = [](double& busy, double& total) {
    std::ifstream in("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return false;
    busy = user + nice + system + irq + softirq + steal;
    total = busy + idle + iowait;
    return true;
  };
  double busy0 = 0, total0 = 0, busy1 = 0, total1 = 0;
  if (!sample(busy0, total0)) return -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  if (!sample(busy1, total1) || total1 <= total0) return -1;
  return (busy1 - busy0) / (total1 - total0) * omp_get_num_procs();
}

// OpenMP threads wait for each other by spinning; when other programs already keep every core
// busy, a spinning team loses most of its time slices (a 2-thread run here fell from ~500 to
// 3 images/s). The demo then runs on one thread unless -j says otherwise.
void choose_threads(const blip::cli::CommonOptions& common, bool quiet) {
  if (common.threads > 0) return;
  const int cores = omp_get_num_procs();
  const double busy = cores > 1 ? busy_cores_now() : -1;
  if (busy >= cores - 0.5) {
    omp_set_num_threads(1);
    if (!quiet)
      std::printf("blip demo: the machine is busy (%.1f of %d cores in use by others): training on 1 thread (-j N "
                  "overrides)\n", busy, cores);
  }
}

// Each test image as <out>/<row>_<class>.png (gray, 28x28), the row being its index in the split,
// and <out>.jsonl: each image with one caption of its class (the captions in turn), a retrieval
// dataset for `blip eval --dataset jsonl`.
void write_test_images(const std::string& out, const blip::data::FashionMnistSplit& split) {
  std::filesystem::create_directories(out);
  const auto& captions = blip::data::fashion_mnist_captions();
  std::string jsonl;
  const auto& names = blip::data::fashion_mnist_class_names();
  constexpr int64_t side = blip::data::fashion_mnist_side;
  for (int64_t i = 0; i < split.size(); ++i) {
    std::string label = names[split.labels[static_cast<size_t>(i)]];
    std::replace(label.begin(), label.end(), '/', '-');
    std::replace(label.begin(), label.end(), ' ', '-');
    char name[64];
    std::snprintf(name, sizeof name, "%05lld_%s.png", static_cast<long long>(i), label.c_str());
    blip::vision::Image img(side, side, 1);
    std::copy(split.image(i), split.image(i) + side * side, img.pixels.begin());
    blip::vision::write_png((std::filesystem::path(out) / name).string(), img);
    const auto& mine = captions[static_cast<size_t>(split.labels[static_cast<size_t>(i)])];
    jsonl += nlohmann::json{{"image", name}, {"captions", {mine[static_cast<size_t>(i) % mine.size()]}}}.dump() + "\n";
  }
  blip::io::write_file_atomically(out + ".jsonl", jsonl);
}

template <class D>
void run_demo(const DemoOptions& o, const blip::cli::CommonOptions& common) {
  using namespace blip;
  const bool quiet = o.quiet || common.quiet;
  if constexpr (std::same_as<D, Cpu>) choose_threads(common, quiet);
  std::filesystem::create_directories(o.out);
  const data::FashionMnist fm = data::load_fashion_mnist(o.data);
  const text::BertTokenizer tokenizer =
      text::BertTokenizer::blip(o.vocab.empty() ? cli::default_vocab_path() : o.vocab, train::fashion_mnist_config().max_txt_len);
  BlipConfig config = train::fashion_mnist_config();
  config.seed = o.seed;
  StandardBlip<float, D> model(config);
  Generator init(o.seed);
  model.init_weights(init);
  if (!quiet) {
    char budget[64];
    if (o.steps > 0) std::snprintf(budget, sizeof budget, "%lld steps", static_cast<long long>(o.steps));
    else std::snprintf(budget, sizeof budget, "%g min", o.minutes);
    char where[32];
    if constexpr (std::same_as<D, Cpu>) std::snprintf(where, sizeof where, "%d threads", omp_get_max_threads());
    else std::snprintf(where, sizeof where, "on %s", D::name);
    std::printf("blip demo: training a BLIP of width %lld on Fashion-MNIST (%lld train / %lld test images, batch %lld, %s, %s)\n",
                static_cast<long long>(config.vision.embed_dims), static_cast<long long>(fm.train.size()),
                static_cast<long long>(fm.test.size()), static_cast<long long>(o.batch), budget, where);
  }
  std::fflush(stdout);  // before the progress bar on stderr

  train::TrainConfig tc;
  tc.total_steps = o.steps > 0 ? o.steps : 1000000;  // a time budget re-plans this after calibration
  tc.optimizer.lr = o.lr;
  tc.warmup_steps = o.steps > 0 ? std::min<int64_t>(50, o.steps / 10) : 50;
  tc.warmup_start_factor = 0.01;
  tc.alpha = config.alpha;
  tc.alpha_warmup_steps = tc.total_steps / 3;
  train::Trainer<float, D> trainer(named_parameters(model), tc);
  train::FashionMnistBatches<float, D> batches(fm.train, tokenizer, o.batch, o.seed + 1);
  train::LoopOptions loop;
  loop.metrics_path = (std::filesystem::path(o.out) / "metrics.jsonl").string();
  std::filesystem::remove(loop.metrics_path);
  loop.time_budget_s = o.steps > 0 ? 0.0 : o.minutes * 60.0;
  loop.quiet = quiet;
  const auto result = [&] {
    // --train-precision bf16: autocast (weights change every step, so they are converted per use).
    const blip::PrecisionScope autocast(common.train_precision, blip::PrecisionScope::Weights::changing);
    return train::run_training(trainer, train::blip_micro_loss(model, [&] { return batches.next(); }), loop);
  }();
  std::printf("trained %lld steps (%.2f epochs) in %.1f s, %.0f images/s; final loss %.3f (itc %.3f, itm %.3f)\n",
              static_cast<long long>(result.steps), static_cast<double>(result.steps * o.batch) / fm.train.size(),
              result.seconds, result.images_per_s, result.last.loss, result.last.terms[0].second,
              result.last.terms[1].second);

  const auto start = std::chrono::steady_clock::now();
  const auto ev = [&] {
    const PrecisionScope precision(common.precision);  // --precision bf16: the evaluation's GEMMs in bf16
    return train::evaluate_fashion_mnist(model, fm.test, tokenizer, 500, quiet);
  }();
  const double eval_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nretrieval on the %lld test images, %zu captions (class-level ground truth; evaluated in %.1f s)\n",
              static_cast<long long>(fm.test.size()), ev.captions.texts.size(), eval_s);
  std::printf("  ITC similarity:          ");
  for (const auto& [name, v] : ev.itc) std::printf(" %s %.2f", name.c_str(), v);
  std::printf("\n  ITM re-ranked (top %lld):", static_cast<long long>(config.topk));
  for (const auto& [name, v] : ev.itm) std::printf(" %s %.2f", name.c_str(), v);
  std::printf("\n");
  {
    std::ostringstream metrics;
    metrics << "{";
    bool comma = false;
    for (const auto* group : {&ev.itc, &ev.itm})
      for (const auto& [name, v] : *group) {
        metrics << (comma ? ", " : "") << "\"" << (group == &ev.itc ? "itc/" : "itm/") << name << "\": " << v;
        comma = true;
      }
    metrics << "}\n";
    io::write_file_atomically((std::filesystem::path(o.out) / "eval.json").string(), metrics.str());
  }

  // Top images of a few text queries, by the re-ranked score (ITM + similarity).
  std::vector<std::string> query_texts;
  std::vector<int64_t> query_class;
  for (const auto& [q, c] : demo_queries) query_texts.push_back(q), query_class.push_back(c);
  const auto encoded = tokenizer.encode_batch<D>(query_texts);
  const TextBatch<float, D> qtexts{encoded.input_ids, encoded.attention_mask};
  std::vector<std::vector<int64_t>> rows;
  {
    NoGradGuard no_grad;
    const Tensor<float, D> qfeat = model.extract_feat(nullptr, &qtexts, false).text_feat;
    const auto score = model.compute_score_matrix_t2i(ev.image_feat, ev.image_embeds, qfeat, qtexts.ids, qtexts.mask);
    const std::vector<int64_t> top = topk(score, 8).indices.to_vector();
    const auto& names = data::fashion_mnist_class_names();
    std::printf("\ntop 8 test images per text query (class of each):\n");
    for (size_t q = 0; q < demo_queries.size(); ++q) {
      rows.emplace_back(top.begin() + static_cast<std::ptrdiff_t>(q * 8), top.begin() + static_cast<std::ptrdiff_t>(q * 8 + 8));
      std::printf("  %-22s", ("\"" + query_texts[q] + "\"").c_str());
      for (int64_t i : rows.back()) std::printf(" %s", names[fm.test.labels[static_cast<size_t>(i)]]);
      std::printf("\n");
    }
  }
  const std::string grid = (std::filesystem::path(o.out) / "queries.png").string();
  write_grid(grid, rows, query_class, fm.test);

  // The model, self-describing (config and vocabulary fingerprint in its metadata, config.json
  // beside it), and the test images as PNG files, for `blip index` / `search` / `embed` / `score`.
  const std::string weights = (std::filesystem::path(o.out) / "model.safetensors").string();
  io::save_safetensors(weights, io::export_state_dict(model), pretrained::model_metadata(config, &tokenizer.vocab()));
  pretrained::write_config_beside(weights, config);
  const std::string images = (std::filesystem::path(o.out) / "test-images").string();
  write_test_images(images, fm.test);
  std::printf("\nwrote %s (one row per query), %s, %s, %s and %s/ (%lld PNG files, captions in %s.jsonl)\n",
              grid.c_str(), loop.metrics_path.c_str(), (std::filesystem::path(o.out) / "eval.json").c_str(),
              weights.c_str(), images.c_str(), static_cast<long long>(fm.test.size()), images.c_str());
  if (!quiet)
    std::printf("next: blip index --checkpoint %s --images %s --out %s/test.index\n"
                "      blip search --checkpoint %s --index %s/test.index \"a photo of a sneaker\"\n",
                weights.c_str(), images.c_str(), o.out.c_str(), weights.c_str(), o.out.c_str());
}

void add_demo(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand("demo", "Train a small BLIP on Fashion-MNIST for a few minutes and evaluate retrieval");
  cmd->add_option("--minutes", o->minutes, "Training time budget in minutes")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--steps", o->steps, "Train exactly this many steps instead of a time budget")->check(blip::cli::non_negative());
  cmd->add_option("--out", o->out, "Output folder (metrics.jsonl, eval.json, queries.png)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed (initialisation, batches, negatives)")->capture_default_str();
  cmd->add_flag("--quiet", o->quiet, "No progress bars");
  cmd->add_option("--data", o->data, "Folder with the gzipped Fashion-MNIST IDX files")->capture_default_str();
  cmd->add_option("--vocab", o->vocab, "BERT vocabulary file (default: the one shipped with blip)");
  cmd->add_option("--batch", o->batch, "Images per step")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate (AdamW, cosine schedule)")->check(blip::cli::positive())->capture_default_str();
  cmd->callback([o, &common] {
    blip::cli::on_device(common, [&]<class D>() { run_demo<D>(*o, common); });
  });
}

}  // namespace

BLIP_CLI_COMMAND(5, add_demo);
