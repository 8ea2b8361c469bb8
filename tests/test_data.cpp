// Retrieval datasets (mmpretrain's COCO / Flickr30k layouts, JSONL), the DataLoader and the
// retrieval evaluation loop.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "blip/data/coco_retrieval.hpp"
#include "blip/data/flickr30k_retrieval.hpp"
#include "blip/data/image_text_loader.hpp"
#include "blip/data/jsonl_retrieval.hpp"
#include "blip/data/loader.hpp"
#include "blip/eval/retrieval_loop.hpp"
#include "retrieval_fixtures.hpp"

using Catch::Matchers::Contains;
using namespace blip;

// ---- annotation formats ---------------------------------------------------------------------

TEST_CASE("COCORetrieval: ids, order and paths as mmpretrain's load_data_list", "[data]") {
  // Image 7 is listed twice (the second entry is skipped but still advances the position),
  // and the annotations are not grouped by image.
  const std::string json = R"({
    "images": [
      {"id": 7, "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_7.jpg"},
      {"id": 3, "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_3.jpg"},
      {"id": 7, "coco_url": "http://x/other/ignored.jpg"},
      {"id": "3", "coco_url": "train2014/b.jpg"}
    ],
    "annotations": [
      {"image_id": 3, "id": 100, "caption": "A cat."},
      {"image_id": 7, "id": 101, "caption": "A dog on the beach."},
      {"image_id": 3, "id": 102, "caption": "Another cat"},
      {"image_id": "3", "id": 103, "caption": "string id"}
    ]})";
  const auto a = data::parse_coco_retrieval(json, "ann.json", "root");
  REQUIRE(a.images.size() == 3);
  CHECK(a.img_size == 3);
  CHECK(a.text_size == 4);
  CHECK(a.images[0].img_path == "root/val2014/COCO_val2014_7.jpg");
  CHECK(a.images[1].img_path == "root/val2014/COCO_val2014_3.jpg");
  CHECK(a.images[2].img_path == "root/train2014/b.jpg");
  CHECK(a.images[0].image_id == 0);
  CHECK(a.images[1].image_id == 1);
  CHECK(a.images[2].image_id == 3);  // position in "images", after the skipped duplicate
  CHECK(a.images[0].gt_text_id == std::vector<int64_t>{1});
  CHECK(a.images[1].gt_text_id == std::vector<int64_t>{0, 2});
  CHECK(a.images[1].text == std::vector<std::string>{"A cat.", "Another cat"});
  CHECK(a.images[1].gt_image_id == std::vector<int64_t>{1, 1});
  CHECK(a.images[2].gt_text_id == std::vector<int64_t>{3});
  REQUIRE(a.samples.size() == 4);  // train list: annotation order
  CHECK(a.samples[1].text == "A dog on the beach.");
  CHECK(a.samples[1].image_id == 0);
  CHECK(a.samples[1].text_id == 1);
  CHECK(a.samples[3].image_id == 3);
  CHECK(a.flat_texts() == std::vector<std::string>{"A dog on the beach.", "A cat.", "Another cat", "string id"});
  // Image id 3 lies outside the 3 images of the evaluation: refused, as the reference's one_hot would.
  REQUIRE_THROWS_WITH(data::check_eval_ids(a), Contains("ann.json") && Contains("image id 3"));
}

TEST_CASE("COCORetrieval: errors name the file and the key or byte", "[data]") {
  CHECK_THROWS_WITH(data::parse_coco_retrieval("{\"images\": [", "c.json"), Contains("c.json") && Contains("byte"));
  CHECK_THROWS_WITH(data::parse_coco_retrieval("{\"images\": []}", "c.json"), Contains("c.json") && Contains("'annotations'"));
  CHECK_THROWS_WITH(data::parse_coco_retrieval(R"({"images": [{"id": 1}], "annotations": []})", "c.json"),
                    Contains("images[0]") && Contains("coco_url"));
  CHECK_THROWS_WITH(
      data::parse_coco_retrieval(R"({"images": [{"id": 1, "coco_url": "a/b.jpg"}], "annotations": [{"image_id": 2, "id": 0, "caption": "x"}]})",
                                 "c.json"),
      Contains("annotations[0].image_id 2") && Contains("c.json"));
  CHECK_THROWS_WITH(
      data::parse_coco_retrieval(R"({"images": [{"id": 1, "coco_url": "a/b.jpg"}], "annotations": [{"image_id": 1, "id": 0, "caption": 5}]})",
                                 "c.json"),
      Contains("annotations[0].caption must be a string"));
  CHECK_THROWS_WITH(data::load_coco_retrieval("/nonexistent/ann.json"), Contains("/nonexistent/ann.json"));
}

TEST_CASE("Flickr30kRetrieval: split filter and contiguous ids as mmpretrain", "[data]") {
  const std::string json = R"({"images": [
    {"split": "train", "imgid": 0, "filename": "0.jpg", "sentences": [{"raw": "t0", "sentid": 0}]},
    {"split": "test", "imgid": 1, "filename": "1.jpg", "sentences": [{"raw": "a", "sentid": 1}, {"raw": "b", "sentid": 2}]},
    {"split": "test", "imgid": 2, "filename": "2.jpg", "sentences": [{"raw": "c", "sentid": 3}]},
    {"split": "val", "imgid": 3, "filename": "3.jpg", "sentences": []}
  ]})";
  const auto a = data::parse_flickr30k_retrieval(json, "f.json", "imgs/", "test");
  REQUIRE(a.images.size() == 2);
  CHECK(a.images[0].img_path == "imgs/1.jpg");
  CHECK(a.images[0].image_id == 0);
  CHECK(a.images[1].image_id == 1);
  CHECK(a.images[0].gt_text_id == std::vector<int64_t>{0, 1});
  CHECK(a.images[1].gt_text_id == std::vector<int64_t>{2});
  CHECK(a.images[1].gt_image_id == std::vector<int64_t>{1});
  CHECK(a.text_size == 3);
  REQUIRE(a.samples.size() == 3);
  CHECK(a.samples[2].text == "c");
  CHECK(a.samples[2].image_id == 1);
  CHECK(a.samples[2].text_id == 2);
  CHECK_NOTHROW(data::check_eval_ids(a));
  const auto train = data::parse_flickr30k_retrieval(json, "f.json", "", "train");
  CHECK(train.images.size() == 1);
  CHECK(train.images[0].img_path == "0.jpg");
  CHECK_THROWS_WITH(data::check_eval_ids(data::parse_flickr30k_retrieval(json, "f.json", "", "val")),
                    Contains("no captions"));
  CHECK_THROWS_WITH(data::parse_flickr30k_retrieval(json, "f.json", "", "dev"), Contains("train, val or test"));
  CHECK_THROWS_WITH(data::parse_flickr30k_retrieval(R"({"images": [{"split": "test", "imgid": 1, "filename": "x",
                                                     "sentences": [{"sentid": 0}]}]})", "f.json", "", "test"),
                    Contains("f.json") && Contains("images[0].sentences[0]") && Contains("'raw'"));
}

TEST_CASE("Flickr30kRetrieval: a repeated imgid replaces the entry in place, as the OrderedDict does", "[data]") {
  const std::string json = R"({"images": [
    {"split": "test", "imgid": 5, "filename": "first.jpg", "sentences": [{"raw": "a", "sentid": 0}]},
    {"split": "test", "imgid": 6, "filename": "other.jpg", "sentences": [{"raw": "b", "sentid": 1}]},
    {"split": "test", "imgid": 5, "filename": "second.jpg", "sentences": [{"raw": "c", "sentid": 2}]}
  ]})";
  const auto a = data::parse_flickr30k_retrieval(json, "f.json", "", "test");
  REQUIRE(a.images.size() == 2);
  CHECK(a.images[0].img_path == "second.jpg");
  CHECK(a.images[0].image_id == 2);
  CHECK(a.images[0].gt_text_id == std::vector<int64_t>{2});
  CHECK(a.text_size == 3);
  CHECK_THROWS_WITH(data::check_eval_ids(a), Contains("text id 2") || Contains("image id 2"));
}

TEST_CASE("JSONL retrieval format: lines, ids and errors with line numbers", "[data]") {
  const std::string text =
      "{\"image\": \"a.png\", \"captions\": [\"one\", \"two\"]}\n"
      "\n"
      "{\"image\": \"/abs/b.png\", \"captions\": []}\r\n"
      "{\"image\": \"c.png\", \"captions\": [\"three\"]}";
  const auto a = data::parse_jsonl_retrieval(text, "d.jsonl", "dir");
  REQUIRE(a.images.size() == 3);
  CHECK(a.images[0].img_path == "dir/a.png");
  CHECK(a.images[1].img_path == "/abs/b.png");
  CHECK(a.images[2].gt_text_id == std::vector<int64_t>{2});
  CHECK(a.images[2].gt_image_id == std::vector<int64_t>{2});
  CHECK(a.text_size == 3);
  CHECK(a.samples[2].image_id == 2);
  CHECK_THROWS_WITH(data::parse_jsonl_retrieval("{\"image\": \"a\", \"captions\": []}\n{\"image\": 1}\n", "d.jsonl"),
                    Contains("d.jsonl") && Contains("line 2") && Contains("image"));
  CHECK_THROWS_WITH(data::parse_jsonl_retrieval("\n\n{oops}\n", "d.jsonl"), Contains("line 3") && Contains("byte"));
  // A number beyond double's range is nlohmann's out_of_range, not a parse_error (found by fuzzing).
  CHECK_THROWS_WITH(data::parse_jsonl_retrieval("{\"image\": \"a\", \"captions\": [], \"n\": 1E999999}", "d.jsonl"),
                    Contains("d.jsonl") && Contains("line 1"));
  CHECK_THROWS_WITH(data::parse_jsonl_retrieval("{\"image\": \"a\", \"captions\": [\"x\", 2]}", "d.jsonl"),
                    Contains("line 1") && Contains("captions[1]"));
}

// ---- DataLoader -------------------------------------------------------------------------------

namespace {

struct Item {
  int64_t index;
  uint64_t random;
};
using Batch = std::vector<Item>;

// Items sleep a pseudo-random while, so worker timing scrambles completion order.
data::DataLoader<Item, Batch> make_loader(int64_t n, data::LoaderOptions o, std::atomic<int>* loads = nullptr) {
  return data::DataLoader<Item, Batch>(
      n,
      [loads](int64_t i, Generator& gen) {
        if (loads) ++*loads;
        std::this_thread::sleep_for(std::chrono::microseconds((i * 7919) % 13 * 150));
        return Item{i, gen.next_u64()};
      },
      [](std::vector<Item>&& items) { return Batch(std::move(items)); }, o);
}

std::vector<std::pair<int64_t, uint64_t>> drain(data::DataLoader<Item, Batch>& loader) {
  std::vector<std::pair<int64_t, uint64_t>> out;
  while (auto b = loader.next())
    for (const auto& it : *b) out.emplace_back(it.index, it.random);
  return out;
}

}  // namespace

TEST_CASE("DataLoader: the same batches in the same order for any worker count", "[data][loader]") {
  for (const bool shuffle : {false, true}) {
    data::LoaderOptions o;
    o.batch_size = 4;
    o.shuffle = shuffle;
    o.seed = 11;
    o.workers = 0;
    auto reference = make_loader(23, o);
    reference.start_epoch(2);
    const auto expected = drain(reference);
    REQUIRE(expected.size() == 23);
    std::set<int64_t> seen;
    for (const auto& [i, r] : expected) seen.insert(i);
    CHECK(seen.size() == 23);
    if (!shuffle)
      for (size_t i = 0; i < expected.size(); ++i) CHECK(expected[i].first == static_cast<int64_t>(i));
    for (const int workers : {1, 3, 8}) {
      for (const int prefetch : {0, 1, 5}) {
        o.workers = workers;
        o.prefetch = prefetch;
        auto loader = make_loader(23, o);
        loader.start_epoch(2);
        INFO("shuffle " << shuffle << " workers " << workers << " prefetch " << prefetch);
        CHECK(drain(loader) == expected);
      }
    }
  }
}

TEST_CASE("DataLoader: seeded shuffling differs by epoch and seed, and drop_last drops the short batch", "[data][loader]") {
  data::LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.workers = 2;
  o.seed = 3;
  auto loader = make_loader(23, o);
  CHECK(loader.num_batches() == 5);
  const auto e0 = drain(loader);
  loader.start_epoch(1);
  const auto e1 = drain(loader);
  REQUIRE(e0.size() == 23);
  REQUIRE(e1.size() == 23);
  CHECK(e0 != e1);
  loader.start_epoch(0);
  CHECK(drain(loader) == e0);  // epochs are reproducible, augmentation draws included

  o.drop_last = true;
  auto dropping = make_loader(23, o);
  CHECK(dropping.num_batches() == 4);
  int batches = 0;
  while (auto b = dropping.next()) {
    CHECK(b->size() == 5);
    ++batches;
  }
  CHECK(batches == 4);
  CHECK(!dropping.next());
  o.seed = 4;
  o.drop_last = false;
  auto other_seed = make_loader(23, o);
  CHECK(drain(other_seed) != e0);
}

TEST_CASE("DataLoader: prefetch is bounded, and stopping mid-epoch is clean", "[data][loader]") {
  std::atomic<int> loads{0};
  data::LoaderOptions o;
  o.batch_size = 2;
  o.workers = 4;
  o.prefetch = 3;
  {
    auto loader = make_loader(1000, o, &loads);
    REQUIRE(loader.next());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(loads.load() <= (1 + 3) * 2);  // the batch taken plus at most `prefetch` batches
    loader.start_epoch(5);               // abandons epoch 0 mid-way
    REQUIRE(loader.next());
  }  // destroyed with work pending: must join, not hang
  CHECK(loads.load() < 1000);
}

TEST_CASE("DataLoader: a worker's exception reaches the consumer at its batch, naming the sample", "[data][loader]") {
  for (const int workers : {0, 3}) {
    data::LoaderOptions o;
    o.batch_size = 4;
    o.workers = workers;
    data::DataLoader<int64_t, std::vector<int64_t>> loader(
        10,
        [](int64_t i, Generator&) -> int64_t {
          if (i == 5 || i == 6) throw Error(str("cannot open 'img", i, ".jpg'"));
          return i;
        },
        [](std::vector<int64_t>&& v) { return v; }, o);
    CHECK(loader.next()->size() == 4);
    CHECK_THROWS_WITH(loader.next(), Contains("batch 1") && Contains("sample 5") && Contains("img5.jpg"));
    if (workers > 0) CHECK(loader.next()->size() == 2);  // the loader carries on after the bad batch
  }
  CHECK_THROWS_WITH((data::DataLoader<int, int>(3, nullptr, nullptr, {})), Contains("load and collate"));
}

TEST_CASE("image loaders: the test pipeline's tensors, and a missing file named", "[data][loader]") {
  fixtures::TempDir dir;
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) {
    paths.push_back(dir / ("img" + std::to_string(i) + ".png"));
    fixtures::write_random_png(paths.back(), 20 + i, 30 - i, static_cast<uint64_t>(i), i == 2 ? 1 : 3);
  }
  vision::PipelineOptions p;
  p.size = 16;
  data::LoaderOptions o;
  o.batch_size = 2;
  o.workers = 2;
  auto loader = data::make_image_loader(paths, p, o);
  int64_t seen = 0;
  while (auto b = loader->next()) {
    REQUIRE(b->images.shape() == Shape{static_cast<int64_t>(b->indices.size()), 3, 16, 16});
    for (size_t j = 0; j < b->indices.size(); ++j) {
      const auto single = vision::load_and_preprocess(paths[static_cast<size_t>(b->indices[j])], p).to_vector();
      const auto row = narrow(b->images, 0, static_cast<int64_t>(j), 1).to_vector();
      CHECK(row == single);
    }
    seen += static_cast<int64_t>(b->indices.size());
  }
  CHECK(seen == 5);

  paths[3] = dir / "missing.png";
  auto broken = data::make_image_loader(paths, p, o);
  CHECK(broken->next());
  CHECK_THROWS_WITH(broken->next(), Contains("missing.png"));
}

TEST_CASE("train loader: augmented, reproducible batches with cleaned captions", "[data][loader]") {
  fixtures::TempDir dir;
  std::string jsonl;
  for (int i = 0; i < 3; ++i) {
    fixtures::write_random_png(dir / ("t" + std::to_string(i) + ".png"), 40, 50, static_cast<uint64_t>(10 + i));
    jsonl += "{\"image\": \"t" + std::to_string(i) + ".png\", \"captions\": [\"A Dog!\", \"two  men.\"]}\n";
  }
  const auto ann = data::parse_jsonl_retrieval(jsonl, "t.jsonl", dir.path.string());
  data::TrainPipeline pipeline;
  pipeline.augment.crop.size = 24;
  data::LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = true;
  o.drop_last = true;
  o.seed = 9;
  auto run = [&](int workers) {
    o.workers = workers;
    auto loader = data::make_train_loader(ann, pipeline, o);
    std::vector<std::vector<float>> images;
    std::vector<std::string> texts;
    std::vector<int64_t> ids;
    while (auto b = loader->next()) {
      CHECK(b->images.shape() == Shape{4, 3, 24, 24});
      images.push_back(b->images.to_vector());
      texts.insert(texts.end(), b->texts.begin(), b->texts.end());
      ids.insert(ids.end(), b->image_ids.begin(), b->image_ids.end());
      for (size_t j = 0; j < b->indices.size(); ++j)
        CHECK(b->image_ids[j] == ann.samples[static_cast<size_t>(b->indices[j])].image_id);
    }
    return std::make_tuple(images, texts, ids);
  };
  const auto a = run(0);
  CHECK(std::get<0>(a).size() == 1);  // 6 captions, batches of 4, drop_last
  for (const auto& t : std::get<1>(a)) CHECK((t == "a dog" || t == "two men"));
  CHECK(run(3) == a);
}

// ---- the evaluation loop ----------------------------------------------------------------------

namespace {

struct TinyDataset {
  fixtures::TempDir dir;
  data::RetrievalAnnotations ann;
  std::string vocab;
  TinyDataset() {
    std::string jsonl;
    const char* captions[] = {"a dog on the beach", "a red car", "two men in green shirt", "a cat in snow",
                              "blue sky", "a white house", "a tree in the park", "a dog in the park"};
    for (int i = 0; i < 6; ++i) {
      fixtures::write_random_png(dir / ("e" + std::to_string(i) + ".png"), 24 + 3 * i, 40 - 2 * i,
                                 static_cast<uint64_t>(100 + i));
      jsonl += "{\"image\": \"e" + std::to_string(i) + ".png\", \"captions\": [\"" + captions[i] + "\"";
      if (i % 2 == 0) jsonl += std::string(", \"the ") + captions[(i + 3) % 8] + "\"";  // no two captions alike: no ties
      jsonl += "]}\n";
    }
    ann = data::parse_jsonl_retrieval(jsonl, "e.jsonl", dir.path.string());
    vocab = fixtures::write_tiny_vocab(dir / "vocab.txt");
  }
};

// Brute-force Recall@K: a query hits when fewer than K candidates score above its best ground truth.
double brute_recall(const std::vector<float>& scores, int64_t cols, const std::vector<std::vector<int64_t>>& gt, int64_t k) {
  double hits = 0;
  for (size_t q = 0; q < gt.size(); ++q) {
    const float* row = scores.data() + q * static_cast<size_t>(cols);
    float best = -1e30f;
    for (int64_t g : gt[q]) best = std::max(best, row[g]);
    int64_t above = 0;
    for (int64_t c = 0; c < cols; ++c) above += row[c] > best;
    hits += above < k ? 1 : 0;
  }
  return 100.0 * hits / static_cast<double>(gt.size());
}

}  // namespace

TEST_CASE("evaluate_retrieval on a tiny model equals a brute-force computation", "[eval][data]") {
  TinyDataset ds;
  const auto tok = text::BertTokenizer::blip(ds.vocab, presets::tiny().max_txt_len);
  const std::vector<std::string> texts = ds.ann.flat_texts();
  const int64_t N = 6, T = static_cast<int64_t>(texts.size());
  REQUIRE(T == 9);
  for (const bool fast_match : {true, false}) {
    INFO("fast_match " << fast_match);
    // topk 4 of 9 texts / 6 images: the re-rank leaves -100s, so compare the score matrices;
    // topk 16 covers every column (no ties), so compare recall by brute force too.
    for (const int64_t model_topk : {4, 16}) {
      const auto model = fixtures::tiny_model(5, fast_match, model_topk);
      eval::RetrievalLoopOptions o;
      o.batch_size = 4;
      o.text_batch_size = 4;
      o.i2t_chunk = 4;
      o.t2i_chunk = 4;
      o.topk = {1, 2, 5};
      o.quiet = true;
      o.loader.workers = 2;
      const auto r = eval::evaluate_retrieval(*model, tok, ds.ann, o);

      // Brute force: each image and caption on its own, then mmpretrain's per-row loops.
      vision::PipelineOptions p;
      p.size = model->config().vision.img_size;
      std::vector<Tensor<float, Cpu>> feats, embeds;
      for (const auto& img : ds.ann.images) {
        const auto x = reshape(vision::load_and_preprocess(img.img_path, p), {1, 3, p.size, p.size});
        const auto f = model->extract_feat(&x, nullptr, true);
        feats.push_back(f.image_feat);
        embeds.push_back(f.image_embeds);
      }
      std::vector<std::vector<float>> tfeat;
      std::vector<TextBatch<float, Cpu>> tbatch;
      for (const auto& t : texts) {
        const auto enc = tok.encode_batch<Cpu>({text::clean_caption(t)});
        const TextBatch<float, Cpu> b{enc.input_ids, enc.attention_mask};
        tfeat.push_back(model->extract_feat(nullptr, &b, false).text_feat.to_vector());
        tbatch.push_back(b);
      }
      std::vector<float> sim_i2t(static_cast<size_t>(N * T));
      for (int64_t i = 0; i < N; ++i) {
        const auto fi = feats[static_cast<size_t>(i)].to_vector();
        for (int64_t t = 0; t < T; ++t) {
          double d = 0;
          for (size_t e = 0; e < fi.size(); ++e) d += fi[e] * tfeat[static_cast<size_t>(t)][e];
          sim_i2t[static_cast<size_t>(i * T + t)] = static_cast<float>(d);
        }
      }
      auto itm = [&](int64_t i, int64_t t) {
        const auto& b = tbatch[static_cast<size_t>(t)];
        return model->itm_scores({{0, 0}}, embeds[static_cast<size_t>(i)], model->encoder_ids(b.ids), b.mask)[0];
      };
      std::vector<float> want_i2t(static_cast<size_t>(N * T), -100.f), want_t2i(static_cast<size_t>(T * N), -100.f);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t t = 0; t < T; ++t) {
          const float s = sim_i2t[static_cast<size_t>(i * T + t)];
          if (fast_match) {
            want_i2t[static_cast<size_t>(i * T + t)] = want_t2i[static_cast<size_t>(t * N + i)] = s;
            continue;
          }
          int64_t above_row = 0, above_col = 0;  // rank of (i, t) within image i's row and text t's row
          for (int64_t u = 0; u < T; ++u) above_row += sim_i2t[static_cast<size_t>(i * T + u)] > s;
          for (int64_t j = 0; j < N; ++j) above_col += sim_i2t[static_cast<size_t>(j * T + t)] > s;
          if (above_row < model_topk) want_i2t[static_cast<size_t>(i * T + t)] = itm(i, t) + s;
          if (above_col < model_topk) want_t2i[static_cast<size_t>(t * N + i)] = itm(i, t) + s;
        }
      const auto got_i2t = r.score_i2t.to_vector(), got_t2i = r.score_t2i.to_vector();
      REQUIRE(got_i2t.size() == want_i2t.size());
      for (size_t k = 0; k < got_i2t.size(); ++k) CHECK(got_i2t[k] == Approx(want_i2t[k]).margin(2e-5));
      for (size_t k = 0; k < got_t2i.size(); ++k) CHECK(got_t2i[k] == Approx(want_t2i[k]).margin(2e-5));

      if (model_topk >= T) {
        std::vector<std::vector<int64_t>> i2t_gt, t2i_gt;
        for (const auto& img : ds.ann.images) {
          i2t_gt.push_back(img.gt_text_id);
          for (int64_t g : img.gt_image_id) t2i_gt.push_back({g});
        }
        REQUIRE(r.metrics.size() == 9);
        const std::vector<int64_t> ks{1, 2, 5};
        for (size_t k = 0; k < 3; ++k) {
          CHECK(r.metrics[k].first == "i2t/retrieval/Recall@" + std::to_string(ks[k]));
          CHECK(r.metrics[k].second == Approx(brute_recall(got_i2t, T, i2t_gt, ks[k])));
          CHECK(r.metrics[3 + k].first == "t2i/retrieval/Recall@" + std::to_string(ks[k]));
          CHECK(r.metrics[3 + k].second == Approx(brute_recall(got_t2i, N, t2i_gt, ks[k])));
        }
        CHECK(r.metrics[6].first == "i2t/retrieval/Recall@mean");
        CHECK(r.metrics[8].first == "retrieval/Recall@mean");
        CHECK(r.metrics[8].second ==
              Approx((r.metrics[0].second + r.metrics[1].second + r.metrics[2].second + r.metrics[3].second +
                      r.metrics[4].second + r.metrics[5].second) / 6));
      }
    }
  }
}

TEST_CASE("evaluate_retrieval: a missing image and an empty dataset are named", "[eval][data]") {
  TinyDataset ds;
  const auto tok = text::BertTokenizer::blip(ds.vocab, presets::tiny().max_txt_len);
  const auto model = fixtures::tiny_model(1, true);
  eval::RetrievalLoopOptions o;
  o.quiet = true;
  o.topk = {1};
  auto ann = ds.ann;
  ann.images[4].img_path = ds.dir / "gone.png";
  CHECK_THROWS_WITH(eval::evaluate_retrieval(*model, tok, ann, o), Contains("gone.png"));
  o.topk = {1, 7};
  CHECK_THROWS_WITH(eval::evaluate_retrieval(*model, tok, ds.ann, o), Contains("Recall@7 needs at least 7 images"));
  o.topk = {1};
  data::RetrievalAnnotations empty;
  empty.source = "empty.jsonl";
  CHECK_THROWS_WITH(eval::evaluate_retrieval(*model, tok, empty, o), Contains("empty.jsonl") && Contains("no images"));
}

TEST_CASE("evaluate_retrieval scores against the dataset's own ids, as mmpretrain (ungrouped COCO captions)", "[eval][data]") {
  TinyDataset ds;
  // Captions listed out of image order: mmpretrain's gt_text_id is the annotation's position,
  // while the score columns follow the images' order, so ids and columns disagree.
  std::string json = "{\"images\": [";
  for (int i = 0; i < 6; ++i)
    json += std::string(i ? ", " : "") + "{\"id\": " + std::to_string(10 + i) + ", \"coco_url\": \"x/" +
            ds.dir.path.filename().string() + "/e" + std::to_string(i) + ".png\"}";
  json += "], \"annotations\": [";
  const int owner[] = {3, 0, 5, 1, 0, 2, 4, 3, 1};
  const char* words[] = {"a dog", "red car", "two men", "a cat in snow", "blue sky", "white house", "a tree",
                         "the park", "green shirt"};
  for (int a = 0; a < 9; ++a)
    json += std::string(a ? ", " : "") + "{\"image_id\": " + std::to_string(10 + owner[a]) + ", \"id\": " +
            std::to_string(a) + ", \"caption\": \"" + words[a] + "\"}";
  json += "]}";
  const auto ann = data::parse_coco_retrieval(json, "c.json", ds.dir.path.parent_path().string());
  bool ids_differ_from_columns = false;
  int64_t column = 0;
  for (const auto& img : ann.images)
    for (int64_t id : img.gt_text_id) ids_differ_from_columns |= id != column++;
  REQUIRE(ids_differ_from_columns);

  const auto tok = text::BertTokenizer::blip(ds.vocab, presets::tiny().max_txt_len);
  const auto model = fixtures::tiny_model(8, true);
  eval::RetrievalLoopOptions o;
  o.quiet = true;
  o.topk = {1, 3, 6};
  o.loader.workers = 0;
  const auto r = eval::evaluate_retrieval(*model, tok, ann, o);
  std::vector<std::vector<int64_t>> i2t_gt, t2i_gt;
  for (const auto& img : ann.images) {
    i2t_gt.push_back(img.gt_text_id);
    for (int64_t g : img.gt_image_id) t2i_gt.push_back({g});
  }
  const auto s_i2t = r.score_i2t.to_vector(), s_t2i = r.score_t2i.to_vector();
  for (size_t k = 0; k < 3; ++k) {
    CHECK(r.metrics[k].second == Approx(brute_recall(s_i2t, 9, i2t_gt, o.topk[k])));
    CHECK(r.metrics[3 + k].second == Approx(brute_recall(s_t2i, 6, t2i_gt, o.topk[k])));
  }
}
