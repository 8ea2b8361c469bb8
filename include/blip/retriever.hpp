// blip/retriever.hpp — blip::Retriever: BLIP retrieval for applications, in a few calls.
//
//   auto r = blip::Retriever<>::load("Salesforce-blip-itm-base-coco/");  // any checkpoint or folder
//   auto img = r.embed_images({"cat.jpg", "dog.png"});                    // [2, E], L2-normalised
//   auto txt = r.embed_texts({"a cat on a sofa"});                        // [1, E]
//   auto sim = r.similarity(img, txt);                                    // [2, 1] cosine (ITC)
//   auto p   = r.itm_score({"cat.jpg"}, {"a cat on a sofa"});             // [1, 1] P(match) by ITM
//   auto hits = r.search(blip::search::FeatureIndex::read("gallery.idx"), "a cat", 10, 32);
//
// Contract: load(path, options) takes whatever pretrained::load_pretrained takes (a blip,
// transformers, hub, Salesforce BLIP / LAVIS or mmpretrain checkpoint or folder; options.config
// and options.vocab for files that do not describe themselves). Images are file paths (decoded
// and preprocessed by the model's test pipeline) or decoded vision::Image (resized and
// normalised the same way). Texts go through CleanCaption and the model's tokenizer, as the
// evaluation's do. embed_* give L2-normalised image_feat / text_feat; similarity their dot
// products; itm_score softmax(itm_logits)[1] of every pair ([ENC] first, as the reference);
// search the index top-n by cosine, the first rerank_k re-ranked by ITM (search/gallery.hpp).
// All run without autograd; options.precision bf16 runs the GEMMs in bf16, int8 the linear layers
// in int8 (ops/precision.hpp), with the weights converted once per Retriever, on first use, and
// shared by its calls on every thread; the model must not be changed through loaded() afterwards.
// Model may live on any device (Retriever<StandardBlip<float, Cuda>>): inputs and results are
// host tensors, moved to and from it.
#pragma once

#include <cmath>
#include <memory>

#include "blip/ops/precision.hpp"
#include "blip/pretrained/model_folder.hpp"
#include "blip/search/embed.hpp"
#include "blip/search/gallery.hpp"

namespace blip {

template <class Model = StandardBlip<float, Cpu>>
class Retriever {
 public:
  struct Options : pretrained::PretrainedOptions {
    Precision precision = Precision::fp32;
    int64_t batch_size = 32;
  };

  static Retriever load(const std::string& path, const Options& options = {}) {
    pretrained::Pretrained<Model> p = pretrained::load_pretrained<Model>(path, options);
    return Retriever(std::move(p), options);
  }

  // ---- features ---------------------------------------------------------------------------
  Tensor<float, Cpu> embed_images(const std::vector<std::string>& paths) const {
    const PrecisionScope precision = scope();
    search::EmbedOptions eo;
    eo.batch_size = options_.batch_size;
    return search::embed_image_files(model(), paths, eo).image_feat;
  }
  Tensor<float, Cpu> embed_images(const std::vector<vision::Image>& images) const {
    const PrecisionScope precision = scope();
    NoGradGuard no_grad;
    const Tensor<float, Cpu> x = pixels(images);
    return extract_feat_on_host(model(), &x, nullptr, false).image_feat;
  }
  Tensor<float, Cpu> embed_texts(const std::vector<std::string>& texts) const {
    const PrecisionScope precision = scope();
    return search::embed_texts(model(), tokenizer(), texts).text_feat;
  }

  // Cosine similarity [N, T] of L2-normalised features (the ITC score, without temperature).
  Tensor<float, Cpu> similarity(const Tensor<float, Cpu>& image_feat, const Tensor<float, Cpu>& text_feat) const {
    BLIP_CHECK(image_feat.dim() == 2 && text_feat.dim() == 2 && image_feat.size(1) == text_feat.size(1),
               "Retriever::similarity: needs [N, E] and [T, E], got ", image_feat.shape(), " and ", text_feat.shape());
    NoGradGuard no_grad;
    return matmul(image_feat, transpose(text_feat, 0, 1));
  }

  // P(match) [N, T] of every (image, text) pair by the ITM head.
  Tensor<float, Cpu> itm_score(const std::vector<std::string>& image_paths, const std::vector<std::string>& texts) const {
    const PrecisionScope precision = scope();
    search::EmbedOptions eo;
    eo.batch_size = options_.batch_size;
    eo.keep_embeds = true;
    return match_probability(search::embed_image_files(model(), image_paths, eo).image_embeds, texts);
  }
  Tensor<float, Cpu> itm_score(const std::vector<vision::Image>& images, const std::vector<std::string>& texts) const {
    const PrecisionScope precision = scope();
    NoGradGuard no_grad;
    return match_probability(image_embeds_on_host(model(), pixels(images)), texts);
  }

  // ---- search -------------------------------------------------------------------------------
  // `nearest`: an approximate search (search::ann_nearest) instead of the exact one.
  std::vector<search::SearchHit> search(const search::FeatureIndex& image_index, const std::string& text, int64_t n,
                                        int64_t rerank_k = 0, const search::NearestFn& nearest = {}) const {
    const PrecisionScope precision = scope();
    return search::search_by_text(model(), tokenizer(), image_index, text, n, rerank_k, nearest);
  }
  // Texts for an image (an index of texts), or images like it (an index of images).
  std::vector<search::SearchHit> search_by_image(const search::FeatureIndex& index, const std::string& image_path,
                                                 int64_t n, int64_t rerank_k = 0, const search::NearestFn& nearest = {}) const {
    const PrecisionScope precision = scope();
    return search::search_by_image(model(), tokenizer(), index, image_path, n, rerank_k, nearest);
  }

  // ---- what it was loaded from ---------------------------------------------------------------
  const Model& model() const { return *loaded_.model; }
  const BlipConfig& config() const { return loaded_.config; }
  const text::BertTokenizer& tokenizer() const {
    BLIP_CHECK(loaded_.tokenizer.has_value(), "Retriever: the model was loaded without a tokenizer (need_tokenizer "
               "false, none found); texts cannot be encoded");
    return *loaded_.tokenizer;
  }
  const pretrained::Pretrained<Model>& loaded() const { return loaded_; }

 private:
  Retriever(pretrained::Pretrained<Model> p, const Options& o)
      : loaded_(std::move(p)), options_(o), weights_(std::make_shared<PrecisionScope::WeightCache>(o.precision)) {}

  // Every call's scope shares one cache: bf16 / int8 weights are converted once per Retriever,
  // not once per call.
  PrecisionScope scope() const { return PrecisionScope(options_.precision, PrecisionScope::Weights::fixed, weights_); }

  // Decoded images through the test pipeline after decoding: resize, luma if gray, normalise.
  Tensor<float, Cpu> pixels(const std::vector<vision::Image>& images) const {
    BLIP_CHECK(!images.empty(), "Retriever: no images");
    const vision::PipelineOptions p = search::test_pipeline(model());
    std::vector<Tensor<float, Cpu>> x;
    for (const vision::Image& img : images) x.push_back(vision::preprocess_decoded(img, p));
    return stack(x, 0);
  }

  Tensor<float, Cpu> match_probability(const Tensor<float, Cpu>& image_embeds, const std::vector<std::string>& texts) const {
    NoGradGuard no_grad;
    const TextBatch<float, Cpu> t = search::encode_texts(model(), tokenizer(), texts);
    const std::vector<float> l = search::itm_logits_all(model(), image_embeds, t).to_vector();
    std::vector<float> p(l.size() / 2);
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<float>(search::itm_match_probability(l[2 * i], l[2 * i + 1]));
    return Tensor<float, Cpu>::from_vector({image_embeds.size(0), static_cast<int64_t>(texts.size())}, p);
  }

  pretrained::Pretrained<Model> loaded_;
  Options options_;
  std::shared_ptr<PrecisionScope::WeightCache> weights_;
};

}  // namespace blip
