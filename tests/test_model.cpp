// BlipRetrieval behaviour beyond the golden cases: K/V sharing, queue wrap-around, negative
// sampling fallbacks, temperature clamp, momentum rules, the separate multimodal slot.
#include <catch2/catch.hpp>

#include <cstring>

#include "blip/blip.hpp"
#include "blip/models/presets.hpp"

using namespace blip;
using Model = StandardBlip<float, Cpu>;

namespace {

BlipConfig small_config() {
  BlipConfig c = presets::tiny();
  c.vision.embed_dims = c.text.encoder_width = 16;
  c.vision.feedforward_channels = 32;
  c.vision.num_heads = 2;
  c.text.hidden_size = 16;
  c.text.intermediate_size = 32;
  c.text.num_attention_heads = 2;
  c.embed_dim = 8;
  c.queue_size = 5;
  return c;
}

template <class M>
M& initialised(M& m, uint64_t seed) {
  Generator gen(seed);
  m.init_weights(gen);
  return m;
}

TextBatch<float, Cpu> random_texts(int64_t n, int64_t len, int64_t vocab, Generator& gen) {
  std::vector<int64_t> ids(static_cast<size_t>(n * len)), mask(static_cast<size_t>(n * len));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t valid = 3 + gen.uniform_int(len - 3);
    for (int64_t j = 0; j < len; ++j) {
      const size_t k = static_cast<size_t>(i * len + j);
      ids[k] = j == 0 ? 101 % vocab : (j < valid ? 1 + gen.uniform_int(vocab - 3) : 0);
      mask[k] = j < valid;
    }
  }
  return {Tensor<int64_t>::from_vector({n, len}, ids), Tensor<int64_t>::from_vector({n, len}, mask)};
}

}  // namespace

TEST_CASE("re-ranking shares image keys/values and equals the reference's repeated-embeds pass", "[model]") {
  Model m(small_config());
  initialised(m, 1);
  Generator gen(2);
  const Tensor<float> images = randn<float>({4, 3, 32, 32}, gen);
  const auto texts = random_texts(6, 10, 128, gen);
  NoGradGuard no_grad;
  const auto f = m.extract_feat(&images, &texts, true);
  const Tensor<float> scores = m.compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask);
  // The reference: per image, its embeds repeated k times against its top-k texts.
  const Tensor<float> sim = matmul(f.image_feat, transpose(f.text_feat, 0, 1));
  const auto top = topk(sim, 3);
  const auto enc = m.encoder_ids(texts.ids);
  const auto s = scores.to_vector();
  int64_t ranked = 0;
  for (int64_t i = 0; i < 4; ++i) {
    const Tensor<int64_t> idx = reshape(contiguous(select(top.indices, 0, i)), {3});
    const Tensor<float> repeated = contiguous(expand(narrow(f.image_embeds, 0, i, 1), {3, f.image_embeds.size(1), 16}));
    const auto kv = m.text_backbone.cross_keys_values(repeated);
    const Tensor<float> h = m.text_backbone.multimodal(index_select(enc, 0, idx), index_select(texts.mask, 0, idx), kv, arange<int64_t>(3));
    const auto logits = m.multimodal_head(select(h, 1, 0)).to_vector();
    const auto ids = idx.to_vector();
    const auto vals = select(top.values, 0, i).to_vector();
    for (int64_t j = 0; j < 3; ++j) {
      REQUIRE(s[static_cast<size_t>(i * 6 + ids[static_cast<size_t>(j)])] == Approx(logits[static_cast<size_t>(j * 2 + 1)] + vals[static_cast<size_t>(j)]).margin(1e-5));
      ++ranked;
    }
  }
  int64_t filler = 0;
  for (float v : s) filler += v == -100.0f;
  REQUIRE(filler == 4 * 6 - ranked);
  // Batching of the pairs does not change the result.
  BlipConfig one_pair = small_config();
  one_pair.itm_pair_batch = 1;
  Model m1(one_pair);
  initialised(m1, 1);
  const auto s1 = m1.compute_score_matrix_t2i(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask).to_vector();
  const auto s2 = m.compute_score_matrix_t2i(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask).to_vector();
  for (size_t i = 0; i < s1.size(); ++i) REQUIRE(s1[i] == Approx(s2[i]).margin(1e-5));
  // i2t runs whole images per pass (itm_pair_batch / k of them, at least one): the same scores.
  const auto r1 = m1.compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask).to_vector();
  const auto r2 = m.compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask).to_vector();
  for (size_t i = 0; i < r1.size(); ++i) REQUIRE(r1[i] == Approx(r2[i]).margin(1e-5));
}

TEST_CASE("the queue wraps around when the batch does not divide its size", "[model][queue]") {
  Model m(small_config());  // queue 5
  initialised(m, 3);
  Generator gen(4);
  std::vector<int64_t> ptrs;
  for (int step = 0; step < 3; ++step) {
    const auto texts = random_texts(3, 8, 128, gen);
    m.loss(randn<float>({3, 3, 32, 32}, gen), texts, {10 + step, 20 + step, 10 + step});
    ptrs.push_back(m.head.queue_ptr.item());
  }
  REQUIRE(ptrs == std::vector<int64_t>{3, 1, 4});
  // Step 1 wrote columns 0-2 (ids 10, 20, 10), step 2 wrote 3, 4, 0 (11, 21, 11), step 3 wrote 1, 2, 3.
  REQUIRE(m.head.idx_queue.to_vector() == std::vector<int64_t>{11, 12, 22, 12, 21});
}

TEST_CASE("a training step and an image-to-text re-rank make no round trip through the host", "[model][device]") {
  // host_exchanges() counts every from_vector / to_vector / item on any device: this generic path
  // is the one a Cuda model runs, so none of its steps waits for the device or copies to it.
  Model m(small_config());
  initialised(m, 11);
  Generator gen(12);
  const Tensor<float> images = randn<float>({3, 3, 32, 32}, gen);
  const auto texts = random_texts(3, 8, 128, gen);
  const Tensor<int64_t> image_ids = Tensor<int64_t>::from_vector({3}, {4, 5, 4});
  AdamW<float, Cpu> opt(named_parameters(m), {.lr = 1e-4, .weight_decay = 0.05});
  const int64_t ptr_before = m.head.queue_ptr.item();
  const HostExchanges before = host_exchanges();
  for (int step = 0; step < 2; ++step) {
    const auto out = m.loss(images, texts, image_ids);
    add(out.itc_loss, out.itm_loss).backward();
    opt.step();
    opt.zero_grad();
  }
  const HostExchanges step = host_exchanges() - before;
  CHECK(step.writes == 0);
  CHECK(step.reads == 0);
  CHECK(m.head.queue_ptr.item() == (ptr_before + 6) % m.head.queue_size());

  NoGradGuard no_grad;
  const auto f = m.extract_feat(&images, &texts, true);
  const HostExchanges rerank_before = host_exchanges();
  const Tensor<float> scores = m.compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask);
  CHECK((host_exchanges() - rerank_before).total() == 0);
  // t2i groups its candidates by image on the host: one read of the top-k, four uploads (the
  // grouping), whatever the number of batches.
  BlipConfig one_pair = small_config();
  one_pair.itm_pair_batch = 1;
  Model m1(one_pair);
  initialised(m1, 11);
  const HostExchanges t2i_before = host_exchanges();
  m1.compute_score_matrix_t2i(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask);
  const HostExchanges t2i = host_exchanges() - t2i_before;
  CHECK(t2i.reads == 1);
  CHECK(t2i.writes == 4);
  REQUIRE(scores.shape() == Shape{3, 3});
  // No images: an empty score matrix, not an error.
  const Tensor<float> none = m.compute_score_matrix_i2t(narrow(f.image_feat, 0, 0, 0), narrow(f.image_embeds, 0, 0, 0),
                                                        f.text_feat, texts.ids, texts.mask);
  CHECK(none.shape() == Shape{0, 3});
}

TEST_CASE("training is deterministic: two runs from one seed are bit-identical", "[model][device]") {
  const auto run = [] {
    Model m(small_config());
    initialised(m, 21);
    Generator gen(22);
    AdamW<float, Cpu> opt(named_parameters(m), {.lr = 1e-3, .weight_decay = 0.05});
    std::vector<float> trace;
    for (int step = 0; step < 3; ++step) {
      const auto texts = random_texts(3, 8, 128, gen);
      const auto out = m.loss(randn<float>({3, 3, 32, 32}, gen), texts, {1, 2, 1 + step});
      add(out.itc_loss, out.itm_loss).backward();
      opt.step();
      opt.zero_grad();
      trace.push_back(out.itc_loss.item());
      trace.push_back(out.itm_loss.item());
      for (int64_t v : out.neg_image_idx.to_vector()) trace.push_back(static_cast<float>(v));
    }
    m.visit_parameters([&](const std::string&, Parameter<float, Cpu>& p) {
      const auto v = p.value().to_vector();
      trace.insert(trace.end(), v.begin(), v.end());
    });
    const auto q = m.head.image_queue.to_vector();
    trace.insert(trace.end(), q.begin(), q.end());
    return trace;
  };
  const std::vector<float> a = run(), b = run();
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("hard negatives never fail: all rows masked or non-finite weights", "[model][negatives]") {
  Model m(small_config());
  initialised(m, 5);
  Generator gen(6);
  const auto texts = random_texts(3, 8, 128, gen);
  // Every sample shares one image id: every weight is masked to zero.
  const auto out = m.loss(randn<float>({3, 3, 32, 32}, gen), texts, {7, 7, 7});
  const std::vector<int64_t> neg_image = out.neg_image_idx.to_vector(), neg_text = out.neg_text_idx.to_vector();
  for (size_t b = 0; b < 3; ++b) {
    REQUIRE(neg_image[b] != static_cast<int64_t>(b));  // another sample when no other id exists
    REQUIRE(neg_text[b] != static_cast<int64_t>(b));
  }
  REQUIRE(std::isfinite(out.itm_loss.item()));
  // A single-sample batch falls back to itself.
  const auto single = m.loss(randn<float>({1, 3, 32, 32}, gen), random_texts(1, 8, 128, gen), {1});
  REQUIRE(single.neg_image_idx.to_vector() == std::vector<int64_t>{0});
  // NaN weights: the injected sampler sees them; the default falls back to another image id.
  fill_(m.temp.value(), std::numeric_limits<float>::quiet_NaN());
  const auto nan_out = m.loss(randn<float>({3, 3, 32, 32}, gen), texts, {1, 2, 1});
  const std::vector<int64_t> nan_neg = nan_out.neg_image_idx.to_vector();
  REQUIRE(nan_neg[0] == 1);  // the only sample with another id
  REQUIRE(nan_neg[1] != 1);
}

TEST_CASE("temperature clamp (Salesforce BLIP) is optional", "[model]") {
  BlipConfig c = small_config();
  c.clamp_temperature = true;
  Model m(c);
  initialised(m, 7);
  fill_(m.temp.value(), 3.0f);
  Generator gen(8);
  m.loss(randn<float>({2, 3, 32, 32}, gen), random_texts(2, 8, 128, gen), {1, 2});
  REQUIRE(m.temp.value().item() == 0.5f);
  Model unclamped(small_config());
  initialised(unclamped, 7);
  fill_(unclamped.temp.value(), 3.0f);
  unclamped.loss(randn<float>({2, 3, 32, 32}, gen), random_texts(2, 8, 128, gen), {1, 2});
  REQUIRE(unclamped.temp.value().item() == 3.0f);
}

TEST_CASE("momentum rules: mmpretrain's substring aliasing vs pure EMA", "[model][momentum]") {
  REQUIRE(Model::follows_online("layers.8.attn.qkv.weight"));
  REQUIRE(Model::follows_online("layers.11.ffn.layers.1.bias"));
  REQUIRE(Model::follows_online("layers.18.ffn.layers.0.0.weight"));  // raw substring test
  REQUIRE_FALSE(Model::follows_online("layers.8.ln1.weight"));
  REQUIRE_FALSE(Model::follows_online("layers.7.attn.qkv.weight"));
  REQUIRE_FALSE(Model::follows_online("encoder.layer.8.attention.self.query.weight"));  // BERT never matches
  for (MomentumRule rule : {MomentumRule::mmpretrain, MomentumRule::ema}) {
    BlipConfig c = small_config();
    c.vision.num_layers = 9;
    c.momentum_rule = rule;
    Model m(c);
    initialised(m, 9);
    m.momentum_update();
    int aliased = 0;
    m.visit_momentum_parameters([&](const std::string&, const std::string&, Parameter<float>& p) {
      aliased += p.momentum_aliased();
    });
    REQUIRE(aliased == (rule == MomentumRule::mmpretrain ? 8 : 0));
  }
}

TEST_CASE("initialisation from scratch: momentum equal, statistics as the reference's", "[model][init]") {
  BlipConfig c = small_config();
  c.vision.embed_dims = c.text.encoder_width = 64;
  c.vision.num_heads = 4;
  Model m(c);
  initialised(m, 10);
  m.visit_momentum_parameters([&](const std::string& name, const std::string&, Parameter<float>& p) {
    INFO(name);
    REQUIRE(p.momentum().to_vector() == p.value().to_vector());
  });
  const auto pos = m.vision_backbone.pos_embed.value().to_vector();
  double var = 0;
  for (float v : pos) var += v * v / static_cast<double>(pos.size());
  REQUIRE(std::sqrt(var) == Approx(0.02).epsilon(0.1));
  REQUIRE(m.vision_backbone.cls_token.value().to_vector() == std::vector<float>(64, 0.0f));
  REQUIRE(m.vision_backbone.layers[0].ln1.weight.value().to_vector() == std::vector<float>(64, 1.0f));
  const auto word = m.text_backbone.word_embeddings.weight.value();
  REQUIRE(select(word, 0, 0).to_vector() == std::vector<float>(16, 0.0f));  // pad row
  REQUIRE(m.temp.value().item() == Approx(0.07));
}

TEST_CASE("a separate multimodal backbone takes the ITM passes", "[model][composition]") {
  using Separate = BlipRetrieval<StandardVisionTransformer<>, StandardBertEncoder<>, Linear<>, Linear<>, ItcHead<>,
                                 ItmHead<WithPooler>, StandardBertEncoder<>>;
  Separate m(small_config());
  Generator gen(11);
  m.init_weights(gen);
  const auto out = m.loss(randn<float>({2, 3, 32, 32}, gen), random_texts(2, 8, 128, gen), {1, 2});
  add(out.itc_loss, out.itm_loss).backward();
  REQUIRE(m.multimodal_backbone->layers[0].crossattention->query.weight.grad().defined());
  REQUIRE_FALSE(m.text_backbone.layers[0].crossattention->query.weight.grad().defined());
  REQUIRE(m.multimodal_head.pooler->weight.grad().defined());
  size_t names = 0;
  m.visit_parameters([&](const std::string& name, Parameter<float>&) { names += name.starts_with("multimodal_backbone."); });
  REQUIRE(names > 0);
}

TEST_CASE("bad inputs to the model are reported", "[model][errors]") {
  Model m(small_config());
  Generator gen(12);
  using Catch::Matchers::Contains;
  REQUIRE_THROWS_WITH(m.loss(randn<float>({2, 3, 32, 32}, gen), random_texts(3, 8, 128, gen), {1, 2}), Contains("must agree"));
  REQUIRE_THROWS_WITH(m.image_embeds(randn<float>({1, 4, 32, 32}, gen)), Contains("[B, 3, H, W]"));
  REQUIRE_THROWS_WITH(m.text_embeds(random_texts(1, 30, 128, gen)), Contains("max_position_embeddings"));
  REQUIRE_THROWS_WITH(m.extract_feat(nullptr, nullptr), Contains("at least one modality"));
  BlipConfig bad = small_config();
  bad.text.encoder_width = 7;
  REQUIRE_THROWS_WITH(Model(bad), Contains("encoder_width"));
}

TEST_CASE("forward modes: tensor, loss, predict", "[model]") {
  Model m(small_config());
  initialised(m, 13);
  Generator gen(14);
  const Tensor<float> images = randn<float>({3, 3, 32, 32}, gen);
  const auto batch = random_texts(3, 8, 128, gen);
  const std::vector<int64_t> ids{1, 2, 3};
  const auto feats = std::get<Features<float, Cpu>>(m.forward(&images, &batch, Mode::tensor));
  REQUIRE(feats.image_feat.shape() == Shape{3, 8});
  REQUIRE(feats.image_embeds.shape() == Shape{3, 17, 16});  // fast_match off: embeds returned
  const auto text_only = std::get<Features<float, Cpu>>(m.forward(nullptr, &batch, Mode::tensor));
  REQUIRE_FALSE(text_only.image_feat.defined());
  const auto losses = std::get<Losses<float, Cpu>>(m.forward(&images, &batch, Mode::loss, &ids));
  REQUIRE(losses.itm_logits.shape() == Shape{9, 2});
  const auto pred = std::get<Predictions<float, Cpu>>(m.forward(&images, &batch, Mode::predict));
  REQUIRE(pred.score_i2t.shape() == Shape{3, 3});
  REQUIRE(pred.label_t2i.size() == 3);
  const auto row = select(pred.score_i2t, 0, 1).to_vector();
  REQUIRE(pred.label_i2t[1] == std::max_element(row.begin(), row.end()) - row.begin());
  REQUIRE_THROWS_WITH(m.forward(&images, &batch, Mode::loss), Catch::Matchers::Contains("image ids"));
}

TEST_CASE("Tokens::cls computes the CLS row of the full pass, forward and backward", "[model]") {
  Model m(small_config());
  initialised(m, 11);
  Generator gen(12);
  const Tensor<float> images = randn<float>({3, 3, 32, 32}, gen);
  const auto texts = random_texts(3, 9, 128, gen);
  const auto row0 = [](const Tensor<float>& x) { return select(x, 1, 0).to_vector(); };
  const auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(1e-5));
  };
  {
    NoGradGuard no_grad;
    const Tensor<float> full = m.image_embeds(images), cls = m.image_embeds(images, Branch::online, Tokens::cls);
    REQUIRE(cls.shape() == Shape{3, 1, 16});
    close(row0(cls), row0(full));
    close(row0(m.text_embeds(texts, Branch::momentum, Tokens::cls)), row0(m.text_embeds(texts, Branch::momentum)));
    const auto kv = m.text_backbone.cross_keys_values(full);
    const auto enc = m.encoder_ids(texts.ids);
    const Tensor<int64_t> order = Tensor<int64_t>::from_vector({3}, {2, 0, 1});
    close(row0(m.text_backbone.multimodal(enc, texts.mask, kv, order, Branch::online, Tokens::cls)),
          row0(m.text_backbone.multimodal(enc, texts.mask, kv, order)));
  }
  // Gradients of a loss on the CLS row are the same through either pass.
  const Tensor<float> w = randn<float>({3, 8}, gen);
  const auto grads = [&](Tokens tokens) {
    for (auto* p : {&m.vision_backbone.pos_embed, &m.text_backbone.word_embeddings.weight}) p->zero_grad();
    const Tensor<float> e = m.image_embeds(images, Branch::online, tokens);
    const Tensor<float> t = m.text_embeds(texts, Branch::online, tokens);
    add(sum(mul(m.image_feat(e), w)), sum(mul(m.text_feat(t), w))).backward();
    std::vector<float> g = m.vision_backbone.pos_embed.grad().to_vector();
    const auto gt = m.text_backbone.word_embeddings.weight.grad().to_vector();
    g.insert(g.end(), gt.begin(), gt.end());
    return g;
  };
  close(grads(Tokens::cls), grads(Tokens::all));
}
