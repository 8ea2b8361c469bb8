// blip/search/embed.hpp — features of image files and texts in batches: what `blip embed`,
// `blip score` and blip::Retriever compute.
//
// Contract:
// - embed_image_files(model, paths, options): L2-normalised image_feat [N, E] of the images
//   that decode, in the order of `paths`, through the model's test pipeline (gallery.hpp's
//   test_pipeline: size, mean, std, channels from its config); with keep_embeds also their
//   image_embeds [N, tokens, width] (what the ITM head needs). Images are decoded in parallel,
//   a batch at a time. A file that cannot be read or decoded is an error naming it, or with
//   skip_errors a warning (options.warn) and a row left out: `rows` lists the position in `paths`
//   of each row.
// - embed_texts(model, tokenizer, texts, batch): text_feat [T, E] (CleanCaption + tokenizer, as
//   the evaluation and the index do), and with keep the ids and mask the ITM needs.
// - itm_logits_all(model, image_embeds, texts): ITM logits [I, T, 2] of every pair ([ENC] first,
//   as the reference); itm_match_probability(l0, l1) = softmax([l0, l1])[1].
// - The model may live on any device (models/host_io.hpp): inputs go to it, results come back.
// - decodable_images(paths, decode, warn): the paths whose files read and decode (decoded in
//   parallel), in order; each other one is reported through warn (`blip index --skip-errors`).
#pragma once

#include <cmath>
#include <functional>

#include "blip/search/gallery.hpp"

namespace blip::search {

struct EmbedOptions {
  int64_t batch_size = 32;
  bool keep_embeds = false;
  bool skip_errors = false;
  bool quiet = true;  // no progress bar
  std::function<void(const std::string&)> warn = [](const std::string&) {};
};

struct ImageEmbeddings {
  Tensor<float, Cpu> image_feat;    // [N, E]
  Tensor<float, Cpu> image_embeds;  // [N, tokens, width] when keep_embeds
  std::vector<size_t> rows;         // positions in `paths`, one per row
  size_t skipped = 0;
};

template <class Model>
ImageEmbeddings embed_image_files(const Model& model, const std::vector<std::string>& paths, const EmbedOptions& o = {}) {
  NoGradGuard no_grad;
  BLIP_CHECK(!paths.empty(), "embed: no images");
  const vision::PipelineOptions pipeline = test_pipeline(model);
  const size_t batch = static_cast<size_t>(std::max<int64_t>(o.batch_size, 1));
  std::vector<Tensor<float, Cpu>> feats, embeds;
  ImageEmbeddings out;
  ProgressBar bar("embed images", static_cast<long long>(paths.size()), o.quiet, "img");
  for (size_t start = 0; start < paths.size(); start += batch) {
    const size_t end = std::min(paths.size(), start + batch);
    std::vector<Tensor<float, Cpu>> images(end - start);
    std::vector<std::string> errors(end - start);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < static_cast<int64_t>(end - start); ++i) {
      try {
        images[size_t(i)] = vision::load_and_preprocess(paths[start + size_t(i)], pipeline);
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
      }
    }
    std::vector<Tensor<float, Cpu>> good;
    for (size_t i = 0; i < images.size(); ++i) {
      if (errors[i].empty()) {
        good.push_back(images[i]);
        out.rows.push_back(start + i);
        continue;
      }
      BLIP_CHECK(o.skip_errors, errors[i], " (--skip-errors skips such images with a warning)");
      o.warn(str("skipped: ", errors[i]));
      ++out.skipped;
    }
    if (!good.empty()) {
      const Tensor<float, Cpu> x = stack(good, 0);
      const Features<float, Cpu> f = extract_feat_on_host(model, &x, nullptr, o.keep_embeds);
      feats.push_back(f.image_feat);
      if (o.keep_embeds) embeds.push_back(f.image_embeds);
    }
    bar.advance(static_cast<long long>(end - start));
  }
  bar.finish();
  BLIP_CHECK(!feats.empty(), "embed: none of the ", paths.size(), " images could be read");
  out.image_feat = concat(feats, 0);
  if (o.keep_embeds) out.image_embeds = concat(embeds, 0);
  return out;
}

struct TextEmbeddings {
  Tensor<float, Cpu> text_feat;  // [T, E]
  TextBatch<float, Cpu> tokens;  // ids and mask [T, L] (for the ITM)
};

template <class Model, class Tokenizer>
TextEmbeddings embed_texts(const Model& model, const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                           int64_t batch_size = 128) {
  NoGradGuard no_grad;
  BLIP_CHECK(!texts.empty(), "embed: no texts");
  TextEmbeddings out;
  out.tokens = encode_texts(model, tokenizer, texts);
  const int64_t n = static_cast<int64_t>(texts.size()), step = std::max<int64_t>(batch_size, 1);
  std::vector<Tensor<float, Cpu>> feats;
  for (int64_t s = 0; s < n; s += step) {
    const int64_t len = std::min(step, n - s);
    const TextBatch<float, Cpu> b{contiguous(narrow(out.tokens.ids, 0, s, len)), contiguous(narrow(out.tokens.mask, 0, s, len))};
    feats.push_back(extract_feat_on_host(model, nullptr, &b, false).text_feat);
  }
  out.text_feat = concat(feats, 0);
  return out;
}

// softmax([l0, l1])[1]: the ITM head's probability that the pair matches.
inline double itm_match_probability(float l0, float l1) { return 1.0 / (1.0 + std::exp(double(l0) - double(l1))); }

// ITM logits [I, T, 2] of every (image, text) pair.
template <class Model>
Tensor<float, Cpu> itm_logits_all(const Model& model, const Tensor<float, Cpu>& image_embeds,
                                  const TextBatch<float, Cpu>& texts) {
  const int64_t I = image_embeds.size(0), T = texts.ids.size(0);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  pairs.reserve(static_cast<size_t>(I * T));
  for (int64_t i = 0; i < I; ++i)
    for (int64_t t = 0; t < T; ++t) pairs.emplace_back(i, t);
  const std::vector<float> l = itm_logits_on_host(model, pairs, image_embeds, texts.ids, texts.mask);
  return Tensor<float, Cpu>::from_vector({I, T, 2}, l);
}

inline std::vector<std::string> decodable_images(const std::vector<std::string>& paths,
                                                 const vision::DecodeOptions& decode,
                                                 const std::function<void(const std::string&)>& warn) {
  std::vector<std::string> errors(paths.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < static_cast<int64_t>(paths.size()); ++i) {
    try {
      vision::load_image(paths[size_t(i)], decode);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (errors[i].empty()) out.push_back(paths[i]);
    else warn(str("skipped: ", errors[i]));
  }
  return out;
}

}  // namespace blip::search
