// The trainer: schedules (lr, alpha warm-up), gradient accumulation, the loop's metrics log and
// checkpoints, Fashion-MNIST batches, and a tiny BLIP whose loss falls.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include "blip/blip.hpp"
#include "blip/models/presets.hpp"
#include "blip/train/blip_micro_loss.hpp"
#include "blip/train/fashion_mnist_task.hpp"
#include "blip/train/train_loop.hpp"

using namespace blip;
using namespace blip::train;
using Catch::Matchers::Contains;

TEST_CASE("alpha warm-up follows WarmupParamHook: alpha0 * min(1, step / warmup)", "[train][schedule]") {
  REQUIRE(warmup_alpha(0.4, 0, 10) == 0.0);
  REQUIRE(warmup_alpha(0.4, 5, 10) == Approx(0.2));
  REQUIRE(warmup_alpha(0.4, 9, 10) == Approx(0.36));
  REQUIRE(warmup_alpha(0.4, 10, 10) == Approx(0.4));
  REQUIRE(warmup_alpha(0.4, 25, 10) == Approx(0.4));
  REQUIRE(warmup_alpha(0.4, 0, 0) == 0.4);  // no warm-up
  // The reference's 2 of 6 epochs: a third of the run.
  Parameter<float> p(Tensor<float>::zeros({1}));
  Trainer<float> t({{"p", &p}}, {.total_steps = 60, .alpha = 0.4, .alpha_warmup_steps = 20});
  REQUIRE(t.alpha_at(0) == 0.0);
  REQUIRE(t.alpha_at(10) == Approx(0.2));
  REQUIRE(t.alpha_at(20) == Approx(0.4));
  REQUIRE(t.alpha_at(59) == Approx(0.4));
}

TEST_CASE("learning rate: linear warm-up, then cosine to eta_min; the step uses it", "[train][schedule]") {
  Parameter<double> p(Tensor<double>::from_vector({2}, {1.0, -1.0}));
  TrainConfig c;
  c.total_steps = 110;
  c.warmup_steps = 10;
  c.warmup_start_factor = 0.1;
  c.optimizer.lr = 1e-2;
  c.optimizer.weight_decay = 0.0;
  Trainer<double> t({{"p", &p}}, c);
  REQUIRE(t.lr_at(0) == Approx(1e-3));
  REQUIRE(t.lr_at(5) == Approx(1e-2 * (0.1 + 0.9 * 0.5)));
  REQUIRE(t.lr_at(10) == Approx(1e-2));
  REQUIRE(t.lr_at(60) == Approx(0.5e-2));                                          // half-way through the cosine
  REQUIRE(t.lr_at(35) == Approx(1e-2 * (1 + std::cos(std::numbers::pi / 4)) / 2));  // a quarter
  REQUIRE(t.lr_at(110) == Approx(0.0).margin(1e-15));
  // Adam's first step moves each weight by lr against its gradient's sign.
  const StepStats s = t.step([&](const StepContext& ctx) {
    REQUIRE(ctx.step == 0);
    REQUIRE(ctx.lr == Approx(1e-3));
    return LossTerms<double, Cpu>{{{"l2", sum(mul(p.value(), p.value()))}}, 1};
  });
  REQUIRE(s.lr == Approx(1e-3));
  REQUIRE(s.loss == Approx(2.0));
  const auto v = p.value().to_vector();
  REQUIRE(v[0] == Approx(1.0 - 1e-3).epsilon(1e-9));
  REQUIRE(v[1] == Approx(-1.0 + 1e-3).epsilon(1e-9));
  REQUIRE(t.step_index() == 1);
}

namespace {

// A plain linear regression y = x W^T + b with a per-sample mean squared error.
struct Linear1 {
  Parameter<double> w{Tensor<double>::from_vector({2, 3}, {0.1, -0.2, 0.3, 0.0, 0.5, -0.4})};
  Parameter<double> b{Tensor<double>::from_vector({2}, {0.05, -0.05})};
  std::vector<NamedParameter<double, Cpu>> params() { return {{"w", &w}, {"b", &b}}; }
  Tensor<double> loss(const Tensor<double>& x, const Tensor<double>& y) const {
    const Tensor<double> pred = add(matmul(x, transpose(w.value(), 0, 1)), b.value());
    const Tensor<double> d = sub(pred, y);
    return scale(sum(mul(d, d)), 1.0 / static_cast<double>(x.size(0)));
  }
};

}  // namespace

TEST_CASE("gradient accumulation over k micro-batches equals one step on the k-times batch", "[train][accumulation]") {
  // Where it is mathematically equal: a per-sample mean loss with nothing depending on the split
  // (BLIP's queue, momentum update and in-batch negatives do depend on it).
  Generator gen(3);
  const Tensor<double> x = randn<double>({8, 3}, gen), y = randn<double>({8, 2}, gen);
  Linear1 whole, split;
  TrainConfig c;
  c.total_steps = 4;
  c.optimizer.lr = 0.05;
  Trainer<double> big(whole.params(), c);
  c.accumulation = 4;
  Trainer<double> acc(split.params(), c);
  std::vector<int64_t> micro_seen;
  for (int step = 0; step < 4; ++step) {
    const StepStats a = big.step([&](const StepContext&) { return LossTerms<double, Cpu>{{{"mse", whole.loss(x, y)}}, 8}; });
    const StepStats b = acc.step([&](const StepContext& ctx) {
      micro_seen.push_back(ctx.micro);
      return LossTerms<double, Cpu>{{{"mse", split.loss(narrow(x, 0, 2 * ctx.micro, 2), narrow(y, 0, 2 * ctx.micro, 2))}}, 2};
    });
    REQUIRE(b.samples == 8);
    REQUIRE(b.loss == Approx(a.loss).epsilon(1e-12));  // the mean of the micro-batch losses
  }
  REQUIRE(micro_seen == std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
  const auto w1 = whole.w.value().to_vector(), w2 = split.w.value().to_vector();
  for (size_t i = 0; i < w1.size(); ++i) REQUIRE(w2[i] == Approx(w1[i]).epsilon(1e-12));
  REQUIRE(split.b.value().to_vector()[1] == Approx(whole.b.value().to_vector()[1]).epsilon(1e-12));
  // And the weights did move (so the comparison is not between two untouched models).
  REQUIRE(std::abs(w1[0] - 0.1) > 0.05);
}

TEST_CASE("a non-finite loss stops the step before any weight moves", "[train]") {
  Parameter<float> p(Tensor<float>::from_vector({1}, {2.0f}));
  Trainer<float> t({{"p", &p}}, {.total_steps = 3});
  REQUIRE_THROWS_WITH(t.step([&](const StepContext&) {
                        return LossTerms<float, Cpu>{{{"itc_loss", div(p.value(), Tensor<float>::zeros({1}))}}, 1};
                      }),
                      Contains("itc_loss is inf at step 0"));
  REQUIRE(p.value().item() == 2.0f);
  REQUIRE(t.step_index() == 0);
  REQUIRE_THROWS_WITH(Trainer<float>({{"p", &p}}, {.total_steps = 0}), Contains("total_steps 0"));
}

TEST_CASE("run_training: progress to the end, a JSONL line per log interval, checkpoints", "[train][loop]") {
  Parameter<double> p(Tensor<double>::from_vector({1}, {3.0}));
  Trainer<double> t({{"p", &p}}, {.total_steps = 7, .optimizer = {.lr = 0.1, .weight_decay = 0.0}});
  const auto log = std::filesystem::temp_directory_path() / ("blip_test_train_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(log);
  std::vector<int64_t> checkpoints;
  LoopOptions o;
  o.metrics_path = log.string();
  o.log_every = 3;
  o.checkpoint_every = 2;
  o.quiet = true;
  const LoopResult r = run_training<double, Cpu>(
      t, [&](const StepContext&) { return LossTerms<double, Cpu>{{{"a", mul(p.value(), p.value())}, {"b", p.value()}}, 4}; },
      o, [&](int64_t step) { checkpoints.push_back(step); });
  REQUIRE(r.steps == 7);
  REQUIRE(t.done());
  REQUIRE(checkpoints == std::vector<int64_t>{2, 4, 6, 7});
  std::ifstream in(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 3);  // steps 3, 6 and the last (7)
  REQUIRE_THAT(lines[0], Contains("{\"step\": 3, \"lr\": ") && Contains("\"a\": ") && Contains("\"b\": ") &&
                             Contains("\"images_per_s\": "));
  REQUIRE_THAT(lines[2], Contains("{\"step\": 7,"));
  // loss = a + b = p^2 + p: the weight went down from 3.
  REQUIRE(p.value().item() < 3.0 - 0.3);
  std::filesystem::remove(log);
}

TEST_CASE("run_training with a time budget re-plans the schedule and stops in time", "[train][loop]") {
  Parameter<float> p(Tensor<float>::from_vector({1}, {1.0f}));
  Trainer<float> t({{"p", &p}}, {.total_steps = 1000000, .alpha_warmup_steps = 100});
  LoopOptions o;
  o.time_budget_s = 0.3;
  o.calibrate_steps = 5;
  o.quiet = true;
  const auto r = run_training<float, Cpu>(t, [&](const StepContext&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return LossTerms<float, Cpu>{{{"l", mul(p.value(), p.value())}}, 1};
  }, o);
  REQUIRE(r.seconds < 1.0);
  // ~30 steps fit; the total was re-planned to about that, and the alpha warm-up to a third.
  REQUIRE(t.config().total_steps < 100);
  REQUIRE(t.config().total_steps >= r.steps - 1);
  REQUIRE(t.config().alpha_warmup_steps == t.config().total_steps / 3);
}

TEST_CASE("Fashion-MNIST batches: one pass per epoch, captions of each image's class", "[train][fashion_mnist]") {
  data::FashionMnistSplit split;
  for (int i = 0; i < 20; ++i) {
    split.labels.push_back(static_cast<uint8_t>(i % 10));
    for (int k = 0; k < 784; ++k) split.images.push_back(static_cast<uint8_t>(i));
  }
  text::BertTokenizer tokenizer = text::BertTokenizer::blip(BLIP_SOURCE_DIR "/data/bert-base-uncased-vocab.txt", 12);
  FashionMnistBatches<float, Cpu> batches(split, tokenizer, 5, 7);
  REQUIRE(batches.batches_per_epoch() == 4);
  std::vector<int> seen(20, 0);
  const auto& captions = data::fashion_mnist_captions();
  std::vector<std::vector<float>> epoch0;
  for (int b = 0; b < 4; ++b) {
    const auto batch = batches.next();
    REQUIRE(batch.images.shape() == Shape{5, 1, 28, 28});
    REQUIRE(batch.texts.ids.shape() == Shape{5, 12});
    const auto px = batch.images.to_vector();
    epoch0.push_back(px);
    const auto ids = batch.texts.ids.to_vector();
    for (int64_t i = 0; i < 5; ++i) {
      // Pixels are (v / 255 - mean) / std with v the image's index.
      const float v = (px[static_cast<size_t>(i * 784)] * fashion_mnist_std + fashion_mnist_mean) * 255.0f;
      const int image = static_cast<int>(std::lround(v));
      ++seen[static_cast<size_t>(image)];
      REQUIRE(batch.image_ids[static_cast<size_t>(i)] == image % 10);
      const std::string text = tokenizer.decode(std::vector<int64_t>(ids.begin() + i * 12, ids.begin() + i * 12 + 12));
      const auto& options = captions[static_cast<size_t>(image % 10)];
      bool of_class = false;
      for (const auto& c : options) of_class |= tokenizer.decode(tokenizer.encode(c).first) == text;
      REQUIRE(of_class);
    }
  }
  for (int s : seen) REQUIRE(s == 1);  // an epoch visits every image once
  REQUIRE(batches.epoch() == 0);
  const auto e1b0 = batches.next().images.to_vector();
  REQUIRE(batches.epoch() == 1);
  const auto e1b1 = batches.next();
  REQUIRE(e1b0 != epoch0[0]);  // a new order
  // A resumed stream gives the same batches: seek to epoch 1, batch 1.
  FashionMnistBatches<float, Cpu> resumed(split, tokenizer, 5, 7);
  resumed.seek(1, 1);
  const auto again = resumed.next();
  REQUIRE(again.images.to_vector() == e1b1.images.to_vector());
  REQUIRE(again.texts.ids.to_vector() == e1b1.texts.ids.to_vector());
  REQUIRE_THROWS_WITH(resumed.seek(0, 5), Contains("cannot seek to batch 5"));
}

TEST_CASE("every demo caption fits max_txt_len without truncation", "[train][fashion_mnist]") {
  const BlipConfig c = fashion_mnist_config();
  text::BertTokenizer tokenizer = text::BertTokenizer::blip(BLIP_SOURCE_DIR "/data/bert-base-uncased-vocab.txt", 64);
  for (const auto& caption : fashion_mnist_caption_set().texts) {
    const auto ids = tokenizer.encode(caption).first;
    int64_t length = 0;
    while (length < 64 && ids[static_cast<size_t>(length)] != 0) ++length;
    INFO(caption);
    REQUIRE(length <= c.max_txt_len);
  }
}

TEST_CASE("a tiny BLIP's loss falls when trained on a learnable task", "[train][blip]") {
  BlipConfig c = presets::tiny();
  c.queue_size = 32;
  StandardBlip<float, Cpu> model(c);
  Generator gen(11);
  model.init_weights(gen);
  // 4 classes: each a fixed random image pattern (plus noise) and a fixed random caption.
  const int64_t classes = 4, B = 8, L = 8;
  std::vector<Tensor<float, Cpu>> patterns;
  std::vector<std::vector<int64_t>> captions;
  for (int64_t k = 0; k < classes; ++k) {
    patterns.push_back(randn<float>({3, 32, 32}, gen));
    std::vector<int64_t> ids{101};
    for (int64_t j = 1; j < L - 1; ++j) ids.push_back(1 + gen.uniform_int(100));
    ids.push_back(102);
    captions.push_back(ids);
  }
  const auto next = [&] {
    std::vector<Tensor<float, Cpu>> images;
    std::vector<int64_t> ids, labels;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = gen.uniform_int(classes);
      images.push_back(unsqueeze(add(patterns[static_cast<size_t>(k)], scale(randn<float>({3, 32, 32}, gen), 0.3f)), 0));
      ids.insert(ids.end(), captions[static_cast<size_t>(k)].begin(), captions[static_cast<size_t>(k)].end());
      labels.push_back(k);
    }
    return TrainBatch<float, Cpu>{concat(images, 0),
                                  {Tensor<int64_t>::from_vector({B, L}, ids), full<int64_t, Cpu>({B, L}, 1)}, labels};
  };
  TrainConfig tc;
  tc.total_steps = 80;
  tc.optimizer.lr = 3e-3;
  tc.warmup_steps = 4;
  tc.alpha = c.alpha;
  tc.alpha_warmup_steps = 26;
  Trainer<float, Cpu> trainer(named_parameters(model), tc);
  const auto micro = blip_micro_loss(model, next);
  std::vector<double> itc, itm;
  while (!trainer.done()) {
    const StepStats s = trainer.step(micro);
    itc.push_back(s.terms[0].second);
    itm.push_back(s.terms[1].second);
    REQUIRE(model.head.alpha == Approx(trainer.alpha_at(s.step)));
  }
  const auto mean = [](const std::vector<double>& v, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += v[i];
    return s / static_cast<double>(to - from);
  };
  INFO("itc " << mean(itc, 0, 5) << " -> " << mean(itc, 70, 80) << ", itm " << mean(itm, 0, 5) << " -> " << mean(itm, 70, 80));
  REQUIRE(mean(itc, 70, 80) < 0.7 * mean(itc, 0, 5));
  REQUIRE(mean(itm, 70, 80) < 0.9 * mean(itm, 0, 5));
}
