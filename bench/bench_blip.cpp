// BLIP-base retrieval (random weights) at 2 threads: the four cases of the reference timing
//   (a) image features, batch 8 at 384x384 — seconds per image
//   (b) text features, batch 32 at length 35 — seconds per text
//   (c) ITM re-rank of one image against k = 16 texts — seconds per pair
//   (d) one training step (loss + backward) at batch 4 — seconds per step
// and the process's peak resident memory after each case (counter peak_rss_GiB; run one case
// per process with --benchmark_filter for per-case peaks). Each case runs once untimed first,
// as bench/pytorch_peers.py does for the same cases on PyTorch. Cases (a)-(c) and (e) take the
// argument `precision`: 0 fp32, 1 bf16 GEMMs, 2 int8 linear layers, 3 fp16 linear layers
// (AVX512-FP16 CPUs; elsewhere as 1) (PrecisionScope: weights
// converted once, in the warm-up, as torch.autocast's weight cache does within its scope); (b1)
// BM_b_text_query is one text of 35 tokens, as search and serve embed a query; (d)
// with bf16:1 trains under bf16 autocast (weights converted on every use, as they change every
// step).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <blip/blip.hpp>
#include <blip/models/presets.hpp>
#include <blip/search/gallery.hpp>

using namespace blip;
using Model = StandardBlip<float, Cpu>;

namespace {

// The precision of a run (inference, or the autocast of BM_d) from its argument.
Precision inference_precision(const benchmark::State& state) {
  constexpr Precision by_index[] = {Precision::fp32, Precision::bf16, Precision::int8, Precision::fp16};
  return by_index[state.range(0)];
}

Model& model() {
  static Model* m = [] {
    auto* p = new Model(presets::blip_base());
    Generator gen(0);
    p->init_weights(gen);
    return p;
  }();
  return *m;
}

double peak_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);
}

TextBatch<float, Cpu> texts(int64_t n, int64_t len, Generator& gen) {
  std::vector<int64_t> ids(static_cast<size_t>(n * len)), mask(static_cast<size_t>(n * len), 1);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < len; ++j)
      ids[static_cast<size_t>(i * len + j)] = j == 0 ? 101 : (j == len - 1 ? 102 : 1000 + gen.uniform_int(20000));
  return {Tensor<int64_t>::from_vector({n, len}, ids), Tensor<int64_t>::from_vector({n, len}, mask)};
}

void finish(benchmark::State& state, int64_t items) {
  state.counters["per_item_s"] = benchmark::Counter(static_cast<double>(items) * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["peak_rss_GiB"] = peak_rss_gib();
}

void BM_a_image_features(benchmark::State& state) {
  const PrecisionScope precision(inference_precision(state));
  Model& m = model();
  Generator gen(1);
  const Tensor<float> images = randn<float>({8, 3, 384, 384}, gen);
  NoGradGuard no_grad;
  const auto run = [&] { return m.image_feat(m.image_embeds(images)); };
  run();  // warm-up, as the PyTorch peers do
  for (auto _ : state) benchmark::DoNotOptimize(run().data());
  finish(state, 8);
}

// Texts of 35 tokens: (b) a batch of 32 (seconds per text), and one query as search and serve
// embed it (latency, where the linear layers multiply 35 rows).
template <int64_t Texts>
void BM_b_texts(benchmark::State& state) {
  const PrecisionScope precision(inference_precision(state));
  Model& m = model();
  Generator gen(2);
  const auto batch = texts(Texts, 35, gen);
  NoGradGuard no_grad;
  const auto run = [&] { return m.text_feat(m.text_embeds(batch)); };
  run();  // warm-up, as the PyTorch peers do
  for (auto _ : state) benchmark::DoNotOptimize(run().data());
  finish(state, Texts);
}

void BM_c_itm_rerank(benchmark::State& state) {
  const PrecisionScope precision(inference_precision(state));
  Model& m = model();
  Generator gen(3);
  const Tensor<float> embeds = [&] {
    NoGradGuard no_grad;
    return m.image_embeds(randn<float>({1, 3, 384, 384}, gen));
  }();
  const auto batch = texts(16, 35, gen);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t j = 0; j < 16; ++j) pairs.emplace_back(0, j);
  const auto ids_enc = m.encoder_ids(batch.ids);
  const auto run = [&] { return m.itm_scores(pairs, embeds, ids_enc, batch.mask); };
  run();  // warm-up, as the PyTorch peers do
  for (auto _ : state) benchmark::DoNotOptimize(run().data());
  finish(state, 16);
}

void BM_d_train_step(benchmark::State& state) {
  const PrecisionScope autocast(inference_precision(state), PrecisionScope::Weights::changing);
  Model& m = model();
  Generator gen(4);
  const Tensor<float> images = randn<float>({4, 3, 384, 384}, gen);
  const auto batch = texts(4, 35, gen);
  const auto step = [&] {
    auto losses = m.loss(images, batch, {0, 1, 2, 3});
    add(losses.itc_loss, losses.itm_loss).backward();
    m.visit_parameters([](const std::string&, Parameter<float>& p) { p.zero_grad(); });
  };
  step();  // warm-up, as the PyTorch peers do
  for (auto _ : state) step();
  finish(state, 1);
}

// Search with the ITM re-rank of the top 16 (issue 15): one text query against an index whose
// image_embeds are stored in bf16, end to end through search_by_text (tokenize, text features,
// exact top 16 of 1024 entries, 16 embeds rows decoded, 16 ITM pairs). The ANN lookup of a large
// gallery adds its own time (ann_bench) in front of this.
void BM_e_search_rerank16(benchmark::State& state) {
  const PrecisionScope precision(inference_precision(state));
  Model& m = model();
  const std::string path = "/tmp/blip_bench_rerank16.idx";
  const int64_t n = 1024, stored = 16;  // entries; the 16 nearest hold real embeds rows, all rows exist
  Generator gen(5);
  const Tensor<float> embeds = [&] {
    NoGradGuard no_grad;
    return m.image_embeds(randn<float>({1, 3, 384, 384}, gen));
  }();
  {
    std::vector<std::string> entries;
    for (int64_t i = 0; i < n; ++i) entries.push_back("img" + std::to_string(i) + ".jpg");
    search::IndexWriter w(path, search::IndexKind::images, "base", search::model_fingerprint(m), entries, 256,
                          search::EmbedsDtype::bf16, 577, 768);
    NoGradGuard no_grad;
    const Tensor<float> rows = contiguous(expand(embeds, {stored, 577, 768}));
    for (int64_t s = 0; s < n; s += stored) w.append(l2_normalize(randn<float>({stored, 256}, gen)), &rows);
    w.finish();
  }
  const auto index = search::FeatureIndex::read(path);
  const auto tokenizer = text::BertTokenizer::blip(BLIP_VOCAB, 35);
  const auto run = [&] { return search::search_by_text(m, tokenizer, index, "a dog running on the beach", 10, 16); };
  run();  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(run().data());
  finish(state, 1);
  std::remove(path.c_str());
}

}  // namespace

BENCHMARK(BM_e_search_rerank16)->ArgName("precision")->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_a_image_features)->ArgName("precision")->DenseRange(0, 3)->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_b_texts<32>)->Name("BM_b_text_features")->ArgName("precision")->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_b_texts<1>)->Name("BM_b_text_query")->ArgName("precision")->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();
BENCHMARK(BM_c_itm_rerank)->ArgName("precision")->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_d_train_step)->ArgName("precision")->Arg(0)->Arg(1)->Arg(3)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();
BENCHMARK_MAIN();
