// blip/models/blip_retrieval.hpp — BlipRetrieval<...>: mmpretrain's BLIP retrieval model,
// composed at compile time from a vision backbone, a text backbone (with cross-attention),
// two necks, the ITC head and the ITM head; sizes come from BlipConfig at run time.
//
// Contract (mirrors mmpretrain's BlipRetrieval; see docs/model.md):
// - extract_feat(images?, texts?, return_embeds): image_embeds [N, S, Dv], image_feat [N, E]
//   (normalised neck of the CLS token), text_embeds [T, L, Dt], text_feat [T, E]; either
//   modality may be absent; embeds only when return_embeds (default: !fast_match).
// - compute_score_matrix_i2t/_t2i: fast_match -> the similarity matrix; otherwise -100
//   everywhere but each query's top-k by similarity, re-scored as itm_logit[:, 1] + sim. The
//   ITM passes are batched across queries, and each image's cross-attention keys/values are
//   computed once per batch of pairs and shared by all its candidate texts (kv_index).
// - loss(images, texts, image_ids, sampler): mmpretrain's order — online features; then
//   without grad the momentum update and momentum features; ITC with the queues (which are
//   then updated); ITM on positives and hard negatives sampled from the masked softmax weights
//   (one 3B-row multimodal pass). The sampler is injectable; the default one never fails: a row
//   with no valid weight (all masked, NaN, inf) falls back to a uniform pick of another image id.
// - loss(..., comm) with comm.size() > 1 is data-parallel BLIP (negative_all_rank): ITC against
//   every rank's momentum features, the queues fed with them, hard negatives drawn from every
//   rank's batch (image embeds gathered with gradient, docs/distributed.md). The sampler is
//   then called with global row numbers and returns indices into the gathered batch.
// - momentum_update(): MomentumRule::mmpretrain (EMA, except ViT params whose relative name
//   contains one of "8","9","10","11" and "layers" and ("attn" or "ffn"): they alias the online
//   weights, as mmpretrain's `param_m.data = param.data`) or MomentumRule::ema (Salesforce BLIP).
// Wrong compositions fail with one static_assert naming the slot and what it must provide.
#pragma once

#include <algorithm>
#include <functional>
#include <variant>

#include <numeric>

#include "blip/dist/collectives.hpp"
#include "blip/heads/itc_head.hpp"
#include "blip/heads/itm_head.hpp"
#include "blip/nn/bert.hpp"
#include "blip/nn/vision_transformer.hpp"
#include "blip/ops/contrastive.hpp"
#include "blip/ops/topk.hpp"

namespace blip {

enum class MomentumRule { mmpretrain, ema };
enum class Mode { tensor, loss, predict };  // the reference's forward modes
enum class NegativeKind { image_for_text, text_for_image };

struct TokenIds {
  int64_t pad = 0, cls = 101, sep = 102, dec = 30522, enc = 30523;
};

struct BlipConfig {
  VisionConfig vision;
  TextConfig text;
  int64_t embed_dim = 256;
  int64_t queue_size = 57600;
  double temperature = 0.07;
  double alpha = 0.4;
  double momentum = 0.995;
  int64_t topk = 256;
  int64_t max_txt_len = 35;
  bool fast_match = false;
  TokenIds tokens;
  std::array<double, 3> mean{122.770938, 116.7460125, 104.09373615};  // RGB, 0-255
  std::array<double, 3> std{68.5005327, 66.6321579, 70.32316305};
  MomentumRule momentum_rule = MomentumRule::mmpretrain;
  bool clamp_temperature = false;  // Salesforce BLIP clamps temp to [0.001, 0.5]
  int64_t itm_pair_batch = 128;    // pairs per multimodal pass when re-ranking (i2t: whole images, at least one)
  uint64_t seed = 0;               // queue initialisation and the default negative sampler
};

template <Differentiable T, Device D>
struct TextBatch {
  Tensor<int64_t, D> ids, mask;  // [T, L]
};

template <Differentiable T, Device D>
struct Features {
  Tensor<T, D> image_embeds, image_feat, text_embeds, text_feat;
  Tensor<int64_t, D> text_ids, text_attn_mask;
};

template <Differentiable T, Device D>
struct Losses {
  Tensor<T, D> itc_loss, itm_loss;
  // What the reference computes on the way (for tests and diagnostics).
  Tensor<T, D> image_feat, text_feat, image_feat_m, text_feat_m, weights_i2t, weights_t2i, vl_embeddings, itm_logits;
  Tensor<int64_t, D> itm_labels;
  Tensor<int64_t, D> neg_image_idx, neg_text_idx;  // [B]: into the (gathered) batch
};

template <Differentiable T, Device D>
struct Predictions {
  Tensor<T, D> score_i2t, score_t2i;  // [N, T], [T, N]
  std::vector<int64_t> label_i2t, label_t2i;  // argmax of each row
};

// Picks the hard negative for `row` from its weights (same-image entries already zero), on the
// host: given one, loss() brings the weights back to the host for it. Without one (the default),
// the draw is sample_negatives (ops/contrastive.hpp) on the model's device.
using NegativeSampler = std::function<int64_t(NegativeKind kind, int64_t row, const std::vector<float>& weights)>;

// ---- composition concepts -------------------------------------------------------------------
template <class V>
concept VisionBackboneSlot = requires(const V& v, const Tensor<typename V::value_type, typename V::device_type>& x) {
  { v(x, Branch::online, Tokens::cls) } -> std::same_as<Tensor<typename V::value_type, typename V::device_type>>;
  { v.config().embed_dims } -> std::convertible_to<int64_t>;
};
template <class B>
concept TextBackboneSlot = requires(const B& b, const Tensor<int64_t, typename B::device_type>& ids,
                                    const Tensor<typename B::value_type, typename B::device_type>& embeds,
                                    const typename B::KV& kv, const Tensor<int64_t, typename B::device_type>& index) {
  { b.text(ids, ids, Branch::online, Tokens::cls) } -> std::same_as<Tensor<typename B::value_type, typename B::device_type>>;
  { b.multimodal(ids, ids, kv, index, Branch::online, Tokens::cls) } -> std::same_as<Tensor<typename B::value_type, typename B::device_type>>;
  { b.cross_keys_values(embeds, Branch::online) } -> std::same_as<typename B::KV>;
};
template <class N, class T, class D>
concept NeckSlot = requires(const N& n, const Tensor<T, D>& x) {
  { n(x, Branch::online) } -> std::same_as<Tensor<T, D>>;
};

struct NoMultimodalBackbone {};

template <class VisionBackbone, class TextBackbone, class VisionNeck = Linear<float, Cpu>,
          class TextNeck = Linear<float, Cpu>, class Head = ItcHead<float, Cpu>,
          class MultimodalHead = ItmHead<NoPooler, float, Cpu>, class MultimodalBackbone = NoMultimodalBackbone>
class BlipRetrieval {
  static_assert(VisionBackboneSlot<VisionBackbone>,
                "BlipRetrieval: the vision backbone must map images [B, C, H, W] to tokens [B, S, D] "
                "(operator()(images, Branch, Tokens)) and expose config().embed_dims — e.g. blip::VisionTransformer<...>");
  static_assert(TextBackboneSlot<TextBackbone>,
                "BlipRetrieval: the text backbone must provide text(ids, mask, Branch, Tokens), multimodal(ids, mask, kv, "
                "kv_index, Branch, Tokens) and cross_keys_values(image_embeds, Branch) — e.g. blip::BertEncoder<...> with "
                "TransformerLayer<PostNorm, WithCrossAttention>");

 public:
  using T = typename VisionBackbone::value_type;
  using D = typename VisionBackbone::device_type;
  using value_type = T;
  using device_type = D;

  static_assert(std::same_as<T, typename TextBackbone::value_type> && std::same_as<D, typename TextBackbone::device_type>,
                "BlipRetrieval: the vision and text backbones must use the same element type and device");
  static_assert(NeckSlot<VisionNeck, T, D> && NeckSlot<TextNeck, T, D>,
                "BlipRetrieval: necks must map [N, width] to [N, embed_dim] (operator()(x, Branch)) — e.g. blip::Linear");
  static constexpr bool separate_multimodal = !std::same_as<MultimodalBackbone, NoMultimodalBackbone>;

  explicit BlipRetrieval(const BlipConfig& config);

  const BlipConfig& config() const { return config_; }
  Generator& generator() { return gen_; }
  void set_fast_match(bool on) { config_.fast_match = on; }
  void set_alpha(double alpha) { head.alpha = alpha; }  // WarmupParamHook ramps it during training

  // ---- parameters --------------------------------------------------------------------------
  // Trainable parameters with mmpretrain's named_parameters() names (temp once).
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix = "") {
    for_each_momentum_pair([&](const std::string& name, auto& module) { module.visit_parameters(f, join_name(prefix, name)); });
    if constexpr (separate_multimodal) multimodal_backbone->visit_parameters(f, join_name(prefix, "multimodal_backbone"));
    multimodal_head.visit_parameters(f, join_name(prefix, "multimodal_head"));
    f(join_name(prefix, "temp"), temp);
  }
  // Online parameters that have momentum copies, with the momentum copy's state-dict name.
  template <class F>
  void visit_momentum_parameters(F&& f) {
    for_each_momentum_pair([&](const std::string& name, auto& module) {
      module.visit_parameters([&](const std::string& relative, Parameter<T, D>& p) {
        f(join_name(name + "_m", relative), relative, p);
      }, "");
    });
  }

  void copy_params() {
    visit_momentum_parameters([](const std::string&, const std::string&, Parameter<T, D>& p) { p.copy_params(); });
  }

  void momentum_update();

  // mmpretrain's substring rule (a raw substring test, so "layers.18" matches "8" too).
  static bool follows_online(const std::string& relative) {
    const bool digit = relative.find('8') != std::string::npos || relative.find('9') != std::string::npos ||
                       relative.find("10") != std::string::npos || relative.find("11") != std::string::npos;
    return digit && relative.find("layers") != std::string::npos &&
           (relative.find("attn") != std::string::npos || relative.find("ffn") != std::string::npos);
  }

  void init_weights(Generator& gen);

  // ---- features ----------------------------------------------------------------------------
  // Tokens::cls: only the CLS row (all image_feat / text_feat need); the full sequence otherwise.
  Tensor<T, D> image_embeds(const Tensor<T, D>& images, Branch branch = Branch::online, Tokens tokens = Tokens::all) const;
  Tensor<T, D> image_feat(const Tensor<T, D>& embeds, Branch branch = Branch::online) const;
  Tensor<T, D> text_embeds(const TextBatch<T, D>& texts, Branch branch = Branch::online, Tokens tokens = Tokens::all) const;
  Tensor<T, D> text_feat(const Tensor<T, D>& embeds, Branch branch = Branch::online) const;

  Features<T, D> extract_feat(const Tensor<T, D>* images, const TextBatch<T, D>* texts,
                              std::optional<bool> return_embeds = std::nullopt) const;

  // ---- ITM ---------------------------------------------------------------------------------
  // ids with [ENC] in column 0, as every ITM / cross-attention pass uses them.
  Tensor<int64_t, D> encoder_ids(const Tensor<int64_t, D>& ids) const {
    BLIP_CHECK(ids.dim() == 2, "encoder_ids: ids must be [B, L], got ", ids.shape());
    Tensor<int64_t, D> out = Tensor<int64_t, D>::empty(ids.shape());
    copy_into(out, ids);
    if (ids.size(1) > 0) copy_into(narrow(out, 1, 0, 1), full<int64_t, D>({ids.size(0), 1}, config_.tokens.enc));
    return out;
  }

  // Multimodal CLS embeddings of (text row, image kv row) pairs over precomputed keys/values.
  Tensor<T, D> multimodal_cls(const Tensor<int64_t, D>& ids_enc, const Tensor<int64_t, D>& mask,
                              const typename TextBackbone::KV& kv, const Tensor<int64_t, D>& kv_index) const;

  // itm_logit [P, 2] (column 1 = "matched") of each (image, text) pair, on the model's device, in
  // the pairs' order. The pairs are grouped by image and processed in batches of itm_pair_batch,
  // each distinct image's keys/values computed once per batch; the host's part (the grouping) goes
  // to the device in one upload, so the batches themselves exchange nothing with the host.
  Tensor<T, D> itm_logit_matrix(const std::vector<std::pair<int64_t, int64_t>>& pairs, const Tensor<T, D>& image_embeds,
                                const Tensor<int64_t, D>& ids_enc, const Tensor<int64_t, D>& mask) const;

  // itm_logit_matrix on the host, row-major [P, 2].
  std::vector<T> itm_logits(const std::vector<std::pair<int64_t, int64_t>>& pairs, const Tensor<T, D>& image_embeds,
                            const Tensor<int64_t, D>& ids_enc, const Tensor<int64_t, D>& mask) const;

  // itm_logit[:, 1] of each (image, text) pair (what re-ranking adds to the ITC score).
  std::vector<T> itm_scores(const std::vector<std::pair<int64_t, int64_t>>& pairs, const Tensor<T, D>& image_embeds,
                            const Tensor<int64_t, D>& ids_enc, const Tensor<int64_t, D>& mask) const;

  Tensor<T, D> compute_score_matrix_i2t(const Tensor<T, D>& img_feats, const Tensor<T, D>& img_embeds,
                                        const Tensor<T, D>& text_feats, const Tensor<int64_t, D>& text_ids,
                                        const Tensor<int64_t, D>& text_atts) const;

  Tensor<T, D> compute_score_matrix_t2i(const Tensor<T, D>& img_feats, const Tensor<T, D>& img_embeds,
                                        const Tensor<T, D>& text_feats, const Tensor<int64_t, D>& text_ids,
                                        const Tensor<int64_t, D>& text_atts) const;

  Predictions<T, D> predict(const Tensor<T, D>& images, const TextBatch<T, D>& texts) const;

  // ---- training ----------------------------------------------------------------------------
  // image_ids: int64 [B] on the model's device. Without a host sampler and on one process, the
  // whole step (forward, losses, queue update, backward) stays on the device.
  Losses<T, D> loss(const Tensor<T, D>& images, const TextBatch<T, D>& texts, const Tensor<int64_t, D>& image_ids,
                    const NegativeSampler& sampler = {}, dist::Communicator& comm = dist::single_process());
  Losses<T, D> loss(const Tensor<T, D>& images, const TextBatch<T, D>& texts, const std::vector<int64_t>& image_ids,
                    const NegativeSampler& sampler = {}, dist::Communicator& comm = dist::single_process()) {
    return loss(images, texts, Tensor<int64_t, D>::from_vector({static_cast<int64_t>(image_ids.size())}, image_ids),
                sampler, comm);
  }

  // The reference's unified entry: tensor = extract_feat, loss = loss (needs image ids),
  // predict = score rows and argmax labels for every image and text (needs both).
  std::variant<Features<T, D>, Losses<T, D>, Predictions<T, D>> forward(const Tensor<T, D>* images,
                                                                         const TextBatch<T, D>* texts, Mode mode,
                                                                         const std::vector<int64_t>* image_ids = nullptr);

  // ---- members (public: they are the model's state, named as in mmpretrain) -----------------
 private:
  BlipConfig config_;
  Generator gen_;

 public:
  VisionBackbone vision_backbone;
  TextBackbone text_backbone;
  std::optional<MultimodalBackbone> multimodal_backbone;
  VisionNeck vision_neck;
  TextNeck text_neck;
  MultimodalHead multimodal_head;
  Head head;
  Parameter<T, D> temp;  // also `head.temp` in state dicts: one parameter

 private:
  template <class F>
  void for_each_momentum_pair(F&& f) {
    f("vision_backbone", vision_backbone);
    f("text_backbone", text_backbone);
    f("vision_neck", vision_neck);
    f("text_neck", text_neck);
  }

  const auto& multimodal_text_backbone() const {
    if constexpr (separate_multimodal) return *multimodal_backbone;
    else return text_backbone;
  }

  // sim's top k per row re-scored as itm_logit[:, 1] + sim, -100 elsewhere. Rows are images
  // (i2t): each batch of rows is a block of images with k texts each, so the keys/values of an
  // image are computed once and the whole pass stays on the device. Rows are texts (t2i): the
  // candidates are read back once and grouped by image on the host (itm_logit_matrix: one read,
  // four uploads per matrix, none per batch).
  Tensor<T, D> rerank(const Tensor<T, D>& sim, const Tensor<T, D>& img_embeds, const Tensor<int64_t, D>& text_ids,
                      const Tensor<int64_t, D>& text_atts, bool rows_are_images) const {
    BLIP_CHECK(img_embeds.defined(), "BlipRetrieval: re-ranking (fast_match = false) needs the image embeddings");
    const int64_t rows = sim.size(0), cols = sim.size(1);
    const int64_t k = std::min(config_.topk, cols);
    const auto top = topk(sim, k);
    const Tensor<int64_t, D> ids_enc = encoder_ids(text_ids);
    if (rows == 0 || k == 0) return full<T, D>({rows, cols}, T(-100));
    if (!rows_are_images) {
      const std::vector<int64_t> idx = top.indices.to_vector();
      std::vector<std::pair<int64_t, int64_t>> pairs;  // (image, text)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) pairs.emplace_back(idx[static_cast<size_t>(r * k + j)], r);
      const Tensor<T, D> itm =
          reshape(contiguous(select(itm_logit_matrix(pairs, img_embeds, ids_enc, text_atts), 1, 1)), {rows, k});
      return topk_scatter(add(itm, top.values), top.indices, cols, T(-100));
    }
    BLIP_CHECK(img_embeds.size(0) == rows, "BlipRetrieval: ", rows, " image rows of scores and ", img_embeds.size(0),
               " image embeddings");
    const int64_t block = std::max<int64_t>(1, config_.itm_pair_batch / k);  // images per pass
    std::vector<Tensor<T, D>> itm;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t n = std::min(block, rows - r0);
      const auto kv = multimodal_text_backbone().cross_keys_values(narrow(img_embeds, 0, r0, n));
      const Tensor<int64_t, D> texts = reshape(contiguous(narrow(top.indices, 0, r0, n)), {n * k});
      const Tensor<T, D> logits = multimodal_head(multimodal_cls(index_select(ids_enc, 0, texts),
                                                                 index_select(text_atts, 0, texts), kv,
                                                                 arange<int64_t, D>(n, 0, k)));
      itm.push_back(reshape(contiguous(select(logits, 1, 1)), {n, k}));
    }
    return topk_scatter(add(concat(itm, 0), top.values), top.indices, cols, T(-100));
  }

  static std::vector<int64_t> row_argmax(const Tensor<T, D>& scores) {
    const std::vector<T> v = scores.to_vector();
    const int64_t cols = scores.size(1);
    std::vector<int64_t> out;
    for (int64_t r = 0; r < scores.size(0); ++r) {
      const auto begin = v.begin() + r * cols;
      out.push_back(std::max_element(begin, begin + cols) - begin);
    }
    return out;
  }

  // softmax(sim) [B, C] with entries of the same image id (row_ids[i] == col_ids[j]) set to 0
  // (not renormalised).
  static Tensor<T, D> masked_softmax_weights(const Tensor<T, D>& sim, const Tensor<int64_t, D>& row_ids,
                                             const Tensor<int64_t, D>& col_ids) {
    return masked_fill(softmax(sim), match_ids<uint8_t>(row_ids, col_ids, false), T(0));
  }

  // The hard negatives of the B local rows (global rows offset + b) among the C gathered samples,
  // one per row of weights [B, C]: by the host sampler when there is one, else on the device.
  Tensor<int64_t, D> draw_negatives(const NegativeSampler& sampler, NegativeKind kind, const Tensor<T, D>& weights,
                                    const Tensor<int64_t, D>& image_ids, const Tensor<int64_t, D>& ids_all,
                                    int64_t offset) {
    const int64_t B = weights.size(0), C = weights.size(1);
    if (!sampler) return sample_negatives(weights, image_ids, ids_all, offset, gen_.next_u64());
    const std::vector<T> w = weights.to_vector();
    std::vector<int64_t> picks;
    for (int64_t row = 0; row < B; ++row) {
      const int64_t pick =
          sampler(kind, offset + row, std::vector<float>(w.begin() + row * C, w.begin() + (row + 1) * C));
      BLIP_CHECK(pick >= 0 && pick < C, "BlipRetrieval::loss: the negative sampler returned ", pick, " for row ",
                 offset + row, ", outside [0, ", C, ")");
      picks.push_back(pick);
    }
    return Tensor<int64_t, D>::from_vector({B}, picks);
  }
};

// The entry points, defined outside the class: GCC compiles an in-class (implicitly inline) member
// of an `extern template` class again wherever it is called, and with it the whole forward pass
// below it; an out-of-line member is left to the one unit that instantiates it
// (models/standard_instances.hpp, blip::models): a third of the compile time of a unit that
// builds the model and calls extract_feat (docs/performance.md).
#define BLIP_RETRIEVAL_MEMBER                                                                          \
  template <class VisionBackbone, class TextBackbone, class VisionNeck, class TextNeck, class Head,     \
            class MultimodalHead, class MultimodalBackbone>
#define BLIP_RETRIEVAL \
  BlipRetrieval<VisionBackbone, TextBackbone, VisionNeck, TextNeck, Head, MultimodalHead, MultimodalBackbone>

BLIP_RETRIEVAL_MEMBER
BLIP_RETRIEVAL::BlipRetrieval(const BlipConfig& config)
    : config_(config),
      gen_(config.seed),
      vision_backbone(config.vision),
      text_backbone(config.text),
      vision_neck(config.vision.embed_dims, config.embed_dim),
      text_neck(config.text.hidden_size, config.embed_dim),
      multimodal_head(config.text.hidden_size),
      head(config.embed_dim, config.queue_size, config.alpha, gen_),
      temp(full<T, D>({}, static_cast<T>(config.temperature))) {
  BLIP_CHECK(config.text.encoder_width == config.vision.embed_dims, "BlipRetrieval: text.encoder_width ",
             config.text.encoder_width, " must equal vision.embed_dims ", config.vision.embed_dims);
  if constexpr (separate_multimodal) multimodal_backbone.emplace(config.text);
  copy_params();
}

BLIP_RETRIEVAL_MEMBER
void BLIP_RETRIEVAL::momentum_update() {
  NoGradGuard no_grad;
  std::vector<Parameter<T, D>*> ema;  // one multi-tensor update
  visit_momentum_parameters([&](const std::string&, const std::string& relative, Parameter<T, D>& p) {
    if (config_.momentum_rule == MomentumRule::mmpretrain && follows_online(relative)) p.alias_momentum();
    else ema.push_back(&p);
  });
  blip::momentum_update(ema, config_.momentum);
}

BLIP_RETRIEVAL_MEMBER
void BLIP_RETRIEVAL::init_weights(Generator& gen) {
  vision_backbone.init_weights(gen);
  text_backbone.init_weights(gen);
  if constexpr (separate_multimodal) multimodal_backbone->init_weights(gen);
  for (Linear<T, D>* neck : {&vision_neck, &text_neck}) {
    init_trunc_normal(neck->weight, gen, 0.02);
    init_constant(neck->bias, T(0));
  }
  multimodal_head.init_weights(gen);
  init_constant(temp, static_cast<T>(config_.temperature));
  copy_params();
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::image_embeds(const Tensor<T, D>& images, Branch branch, Tokens tokens) const -> Tensor<T, D> {
  return vision_backbone(images, branch, tokens);
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::image_feat(const Tensor<T, D>& embeds, Branch branch) const -> Tensor<T, D> {
  return l2_normalize(vision_neck(select(embeds, 1, 0), branch));
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::text_embeds(const TextBatch<T, D>& texts, Branch branch, Tokens tokens) const -> Tensor<T, D> {
  return text_backbone.text(texts.ids, texts.mask, branch, tokens);
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::text_feat(const Tensor<T, D>& embeds, Branch branch) const -> Tensor<T, D> {
  return l2_normalize(text_neck(select(embeds, 1, 0), branch));
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::extract_feat(const Tensor<T, D>* images, const TextBatch<T, D>* texts,
                                  std::optional<bool> return_embeds) const -> Features<T, D> {
  BLIP_CHECK(images || texts, "BlipRetrieval::extract_feat: at least one modality must be given");
  const bool embeds = return_embeds.value_or(!config_.fast_match);
  const Tokens tokens = embeds ? Tokens::all : Tokens::cls;
  Features<T, D> out;
  if (images) {
    const Tensor<T, D> e = image_embeds(*images, Branch::online, tokens);
    out.image_feat = image_feat(e);
    if (embeds) out.image_embeds = e;
  }
  if (texts) {
    out.text_ids = texts->ids;
    out.text_attn_mask = texts->mask;
    const Tensor<T, D> e = text_embeds(*texts, Branch::online, tokens);
    out.text_feat = text_feat(e);
    if (embeds) out.text_embeds = e;
  }
  return out;
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::multimodal_cls(const Tensor<int64_t, D>& ids_enc, const Tensor<int64_t, D>& mask,
                                    const typename TextBackbone::KV& kv,
                                    const Tensor<int64_t, D>& kv_index) const -> Tensor<T, D> {
  const Tensor<T, D> h = multimodal_text_backbone().multimodal(ids_enc, mask, kv, kv_index, Branch::online, Tokens::cls);
  return select(h, 1, 0);
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::itm_logit_matrix(const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                      const Tensor<T, D>& image_embeds, const Tensor<int64_t, D>& ids_enc,
                                      const Tensor<int64_t, D>& mask) const -> Tensor<T, D> {
  NoGradGuard no_grad;
  const int64_t P = static_cast<int64_t>(pairs.size());
  if (P == 0) return Tensor<T, D>::empty({0, 2});
  std::vector<int64_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return pairs[static_cast<size_t>(a)].first < pairs[static_cast<size_t>(b)].first;
  });
  // Every batch's distinct images, the pairs' key/value rows within their batch, their texts, and
  // where each pair lands in the grouped order (to put the logits back in the pairs' order).
  const int64_t batch = std::max<int64_t>(config_.itm_pair_batch, 1);
  std::vector<int64_t> images, kv_index, texts, inverse(pairs.size()), first_image;
  for (int64_t start = 0; start < P; start += batch) {
    first_image.push_back(static_cast<int64_t>(images.size()));
    for (int64_t i = start; i < std::min(P, start + batch); ++i) {
      const auto [image, text] = pairs[static_cast<size_t>(order[static_cast<size_t>(i)])];
      if (i == start || images.back() != image) images.push_back(image);
      kv_index.push_back(static_cast<int64_t>(images.size()) - 1 - first_image.back());
      texts.push_back(text);
      inverse[static_cast<size_t>(order[static_cast<size_t>(i)])] = i;
    }
  }
  first_image.push_back(static_cast<int64_t>(images.size()));
  const auto upload = [](const std::vector<int64_t>& v) {
    return Tensor<int64_t, D>::from_vector({static_cast<int64_t>(v.size())}, v);
  };
  const Tensor<int64_t, D> images_d = upload(images), kv_index_d = upload(kv_index), texts_d = upload(texts);
  std::vector<Tensor<T, D>> logits;
  for (int64_t b = 0, start = 0; start < P; ++b, start += batch) {
    const int64_t n = std::min(batch, P - start);
    const auto kv = multimodal_text_backbone().cross_keys_values(index_select(
        image_embeds, 0, narrow(images_d, 0, first_image[static_cast<size_t>(b)],
                                first_image[static_cast<size_t>(b) + 1] - first_image[static_cast<size_t>(b)])));
    const Tensor<int64_t, D> rows = narrow(texts_d, 0, start, n);
    logits.push_back(multimodal_head(
        multimodal_cls(index_select(ids_enc, 0, rows), index_select(mask, 0, rows), kv, narrow(kv_index_d, 0, start, n))));
  }
  return index_select(concat(logits, 0), 0, upload(inverse));
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::itm_logits(const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                const Tensor<T, D>& image_embeds, const Tensor<int64_t, D>& ids_enc,
                                const Tensor<int64_t, D>& mask) const -> std::vector<T> {
  if (pairs.empty()) return {};
  return itm_logit_matrix(pairs, image_embeds, ids_enc, mask).to_vector();
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::itm_scores(const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                const Tensor<T, D>& image_embeds, const Tensor<int64_t, D>& ids_enc,
                                const Tensor<int64_t, D>& mask) const -> std::vector<T> {
  const std::vector<T> l = itm_logits(pairs, image_embeds, ids_enc, mask);
  std::vector<T> scores(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) scores[i] = l[i * 2 + 1];
  return scores;
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::compute_score_matrix_i2t(const Tensor<T, D>& img_feats, const Tensor<T, D>& img_embeds,
                                              const Tensor<T, D>& text_feats, const Tensor<int64_t, D>& text_ids,
                                              const Tensor<int64_t, D>& text_atts) const -> Tensor<T, D> {
  NoGradGuard no_grad;
  const Tensor<T, D> sim = matmul(img_feats, transpose(text_feats, 0, 1));
  if (config_.fast_match) return sim;
  return rerank(sim, img_embeds, text_ids, text_atts, /*rows_are_images=*/true);
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::compute_score_matrix_t2i(const Tensor<T, D>& img_feats, const Tensor<T, D>& img_embeds,
                                              const Tensor<T, D>& text_feats, const Tensor<int64_t, D>& text_ids,
                                              const Tensor<int64_t, D>& text_atts) const -> Tensor<T, D> {
  NoGradGuard no_grad;
  const Tensor<T, D> sim = matmul(text_feats, transpose(img_feats, 0, 1));
  if (config_.fast_match) return sim;
  return rerank(sim, img_embeds, text_ids, text_atts, /*rows_are_images=*/false);
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::predict(const Tensor<T, D>& images, const TextBatch<T, D>& texts) const -> Predictions<T, D> {
  NoGradGuard no_grad;
  const Features<T, D> f = extract_feat(&images, &texts, true);
  Predictions<T, D> p;
  p.score_i2t = compute_score_matrix_i2t(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask);
  p.score_t2i = compute_score_matrix_t2i(f.image_feat, f.image_embeds, f.text_feat, texts.ids, texts.mask);
  p.label_i2t = row_argmax(p.score_i2t);
  p.label_t2i = row_argmax(p.score_t2i);
  return p;
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::loss(const Tensor<T, D>& images, const TextBatch<T, D>& texts,
                          const Tensor<int64_t, D>& image_ids, const NegativeSampler& sampler,
                          dist::Communicator& comm) -> Losses<T, D> {
  const int64_t B = images.size(0);
  BLIP_CHECK(B > 0 && texts.ids.size(0) == B && image_ids.dim() == 1 && image_ids.numel() == B,
             "BlipRetrieval::loss: ", B, " images, ", texts.ids.size(0), " texts and ", image_ids.shape(),
             " image ids must agree");
  if (config_.clamp_temperature) {
    NoGradGuard no_grad;
    clamp_(temp.value(), T(0.001), T(0.5));
  }
  Losses<T, D> out;
  const Tensor<T, D> embeds = image_embeds(images);
  out.image_feat = image_feat(embeds);
  out.text_feat = text_feat(text_embeds(texts, Branch::online, Tokens::cls));
  {
    NoGradGuard no_grad;
    momentum_update();
    out.image_feat_m = image_feat(image_embeds(images, Branch::momentum, Tokens::cls), Branch::momentum);
    out.text_feat_m = text_feat(text_embeds(texts, Branch::momentum, Tokens::cls), Branch::momentum);
  }
  out.itc_loss = head.loss(out.image_feat, out.text_feat, out.image_feat_m, out.text_feat_m, image_ids, temp.value(), comm);

  // ITM: hard negatives from the similarity weights (same image id masked out), drawn from
  // every rank's batch (BLIP's negative_all_rank): features and ids gathered without
  // gradient, image embeds with it. Indices below are into the gathered batch; this rank's
  // samples sit at [offset, offset + B).
  const bool distributed = comm.size() > 1;
  const std::vector<int64_t> batches = dist::all_gather_values(comm, std::vector<int64_t>{B});  // each rank's B
  const int64_t offset = distributed ? std::accumulate(batches.begin(), batches.begin() + comm.rank(), int64_t{0}) : 0;
  const Tensor<int64_t, D> ids_all = dist::all_gather_concat(comm, image_ids);
  const Tensor<int64_t, D> ids_enc = encoder_ids(texts.ids);
  {
    NoGradGuard no_grad;
    const Tensor<T, D> t = temp.value();
    const Tensor<T, D> image_feat_all = dist::all_gather_concat(comm, out.image_feat);
    const Tensor<T, D> text_feat_all = dist::all_gather_concat(comm, out.text_feat);
    out.weights_i2t = masked_softmax_weights(div(matmul(out.image_feat, transpose(text_feat_all, 0, 1)), t), image_ids, ids_all);
    out.weights_t2i = masked_softmax_weights(div(matmul(out.text_feat, transpose(image_feat_all, 0, 1)), t), image_ids, ids_all);
  }
  out.neg_image_idx = draw_negatives(sampler, NegativeKind::image_for_text, out.weights_t2i, image_ids, ids_all, offset);
  out.neg_text_idx = draw_negatives(sampler, NegativeKind::text_for_image, out.weights_i2t, image_ids, ids_all, offset);

  // One pass over 3B pairs: (text b, image b), (text b, neg image), (neg text, image b), the
  // images' cross-attention keys/values computed once (kv_index). On one process every index is
  // into this batch and the pairs are made on the device. Distributed, the texts come from the
  // gathered ids and masks, and the images whose keys/values are computed are this rank's B plus
  // the distinct remote negatives, taken from the gathered embeds (always through the gather, so
  // that its backward, a collective, runs on every rank).
  Tensor<int64_t, D> rows, kv_index;
  Tensor<T, D> kv_embeds = embeds;
  if (!distributed) {
    const Tensor<int64_t, D> own = arange<int64_t, D>(B);
    rows = concat(std::vector{own, own, out.neg_text_idx}, 0);
    kv_index = concat(std::vector{own, out.neg_image_idx, own}, 0);
  } else {
    const std::vector<int64_t> neg_image = out.neg_image_idx.to_vector(), neg_text = out.neg_text_idx.to_vector();
    std::vector<int64_t> text_rows, kv_rows, kv_images;
    for (int64_t b = 0; b < B; ++b) kv_images.push_back(offset + b);
    auto kv_slot = [&](int64_t image) {
      if (image >= offset && image < offset + B) return image - offset;
      const auto it = std::find(kv_images.begin() + B, kv_images.end(), image);
      if (it != kv_images.end()) return static_cast<int64_t>(it - kv_images.begin());
      kv_images.push_back(image);
      return static_cast<int64_t>(kv_images.size()) - 1;
    };
    for (int64_t b = 0; b < B; ++b) { text_rows.push_back(offset + b); kv_rows.push_back(b); }
    for (int64_t b = 0; b < B; ++b) { text_rows.push_back(offset + b); kv_rows.push_back(kv_slot(neg_image[static_cast<size_t>(b)])); }
    for (int64_t b = 0; b < B; ++b) { text_rows.push_back(neg_text[static_cast<size_t>(b)]); kv_rows.push_back(b); }
    rows = Tensor<int64_t, D>::from_vector({3 * B}, text_rows);
    kv_index = Tensor<int64_t, D>::from_vector({3 * B}, kv_rows);
    kv_embeds = index_select(dist::all_gather_with_grad(comm, embeds), 0,
                             Tensor<int64_t, D>::from_vector({static_cast<int64_t>(kv_images.size())}, kv_images));
  }
  const Tensor<int64_t, D> ids_enc_all = dist::all_gather_concat(comm, ids_enc);
  const Tensor<int64_t, D> mask_all = dist::all_gather_concat(comm, texts.mask);
  const auto kv = multimodal_text_backbone().cross_keys_values(kv_embeds);
  out.vl_embeddings = multimodal_cls(index_select(ids_enc_all, 0, rows), index_select(mask_all, 0, rows), kv, kv_index);
  out.itm_logits = multimodal_head(out.vl_embeddings);
  out.itm_labels = concat(std::vector{full<int64_t, D>({B}, 1), full<int64_t, D>({2 * B}, 0)}, 0);
  out.itm_loss = multimodal_head.loss(out.itm_logits, out.itm_labels);
  return out;
}

BLIP_RETRIEVAL_MEMBER
auto BLIP_RETRIEVAL::forward(const Tensor<T, D>* images, const TextBatch<T, D>* texts, Mode mode,
                             const std::vector<int64_t>* image_ids) -> std::variant<Features<T, D>, Losses<T,
                             D>, Predictions<T, D>> {
  switch (mode) {
    case Mode::tensor:
      return extract_feat(images, texts);
    case Mode::loss:
      BLIP_CHECK(images && texts && image_ids, "BlipRetrieval::forward(loss): images, texts and image ids are required");
      return loss(*images, *texts, *image_ids);
    case Mode::predict:
      BLIP_CHECK(images && texts, "BlipRetrieval::forward(predict): images and texts are required");
      return predict(*images, *texts);
  }
  fail("BlipRetrieval::forward: invalid mode");
}

#undef BLIP_RETRIEVAL
#undef BLIP_RETRIEVAL_MEMBER

}  // namespace blip
