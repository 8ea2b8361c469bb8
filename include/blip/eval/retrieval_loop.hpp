// blip/eval/retrieval_loop.hpp — mmpretrain's RetrievalTestLoop on a retrieval dataset: features
// of every image and caption, the i2t and t2i score matrices, RetrievalRecall.
//
// Contract: evaluate_retrieval(model, tokenizer, annotations (test mode), options)
// - images go through the model's test pipeline (data::test_pipeline: img_size, mean, std, channels
//   from its config) on the DataLoader's threads, in batches of batch_size; captions through CleanCaption
//   and the tokenizer, in the dataset's order (image by image), in batches of text_batch_size;
// - model.extract_feat per batch (image_embeds kept unless the model is in fast_match mode);
// - score_i2t [N, T] and score_t2i [T, N] from model.compute_score_matrix_i2t / _t2i: one
//   similarity GEMM with fast_match, else the model's top-k ITM re-rank, run over chunks of
//   query rows so that a progress bar with ETA can follow it (rows are independent);
// - RetrievalRecall as mmpretrain computes it: i2t ground truth = each image's gt_text_id,
//   t2i ground truth = each caption's gt_image_id (the dataset's own ids, quirks included);
//   metrics in the reference's key order ("i2t/retrieval/Recall@K" ..., "t2i/retrieval/...")
//   followed by their means ("i2t/retrieval/Recall@mean", "t2i/retrieval/Recall@mean",
//   "retrieval/Recall@mean": BLIP's txt_r_mean, img_r_mean, r_mean).
// - Sharded (options.comm with size() > 1, every rank calling with the same arguments): rank r
//   extracts the features of its contiguous block of image batches and of text batches, the
//   blocks are joined with all_gather_concat, and the re-rank chunks are split the same way and
//   joined. Batch and chunk boundaries are those of one process, so with the same thread count
//   every score, and so every metric, is bit-identical to a single process's. Every rank returns
//   the full result.
// - The model may live on any device (Model::device_type): image batches and token ids go to it,
//   features and image embeds stay there between the stages, and only the score matrices come
//   back to the CPU.
// Memory: image_embeds of every image are kept for the re-rank, as the reference keeps them
// (BLIP-base: 577 x 768 floats, 1.8 MB per image). Errors (empty dataset, ids outside the
// matrices, an image that fails to load — named) are blip::Error.
#pragma once

#include <algorithm>
#include <chrono>

#include "blip/data/image_text_loader.hpp"
#include "blip/data/retrieval_annotations.hpp"
#include "blip/dist/collectives.hpp"
#include "blip/eval/retrieval_recall.hpp"
#include "blip/models/blip_retrieval.hpp"
#include "blip/ops/copy.hpp"
#include "blip/ops/view.hpp"
#include "blip/text/clean_caption.hpp"
#include "blip/util/progress.hpp"

namespace blip::eval {

struct RetrievalLoopOptions {
  int64_t batch_size = 32;        // images per feature batch
  int64_t text_batch_size = 128;  // captions per feature batch
  // Query rows per re-rank call: the progress bar's step. Larger t2i chunks let more of a chunk's
  // pairs share an image's cross-attention keys/values (the model computes them once per image
  // per batch of pairs), which is most of a pair's cost; an i2t row is one image already.
  int64_t i2t_chunk = 16, t2i_chunk = 256;
  std::vector<int64_t> topk{1, 5, 10};
  bool quiet = false;             // no progress bars
  data::LoaderOptions loader;     // workers, prefetch (batch_size is taken from above)
  dist::Communicator* comm = nullptr;  // sharded evaluation; null: one process
};

struct RetrievalLoopResult {
  Metrics metrics;
  Tensor<float, Cpu> score_i2t, score_t2i;
  std::vector<std::vector<int64_t>> i2t_gt, t2i_gt;  // the ground truth the metric used
  double image_seconds = 0, data_wait_seconds = 0, text_seconds = 0, score_seconds = 0;
};

// Recall@K means in each direction and overall, appended after the reference's keys.
inline void append_recall_means(Metrics& m) {
  double i2t = 0, t2i = 0;
  int ni = 0, nt = 0;
  for (const auto& [key, value] : m) {
    if (key.rfind("i2t/", 0) == 0) i2t += value, ++ni;
    if (key.rfind("t2i/", 0) == 0) t2i += value, ++nt;
  }
  if (ni == 0 || nt == 0) return;
  m.emplace_back("i2t/retrieval/Recall@mean", i2t / ni);
  m.emplace_back("t2i/retrieval/Recall@mean", t2i / nt);
  m.emplace_back("retrieval/Recall@mean", (i2t / ni + t2i / nt) / 2);
}

namespace detail {
// This rank's row blocks, concatenated (`empty`, of the right row shape, when it has none), then
// joined with every rank's in rank order.
template <class T, Device D>
Tensor<T, D> joined_rows(dist::Communicator& comm, const std::vector<Tensor<T, D>>& blocks, const Tensor<T, D>& empty) {
  const Tensor<T, D> mine = blocks.empty() ? empty : blocks.size() == 1 ? blocks[0] : concat(blocks, 0);
  return comm.size() == 1 ? mine : dist::all_gather_concat(comm, mine);
}
}  // namespace detail

template <class Model, class Tokenizer>
RetrievalLoopResult evaluate_retrieval(const Model& model, const Tokenizer& tokenizer,
                                       const data::RetrievalAnnotations& annotations,
                                       const RetrievalLoopOptions& o = {}) {
  using T = float;
  using D = typename Model::device_type;  // features and image embeds stay there; the scores come back
  using clock = std::chrono::steady_clock;
  auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  NoGradGuard no_grad;
  data::check_eval_ids(annotations);
  BLIP_CHECK(o.batch_size > 0 && o.text_batch_size > 0 && o.i2t_chunk > 0 && o.t2i_chunk > 0,
             "evaluate_retrieval: batch sizes and chunks must be positive");
  BLIP_CHECK(!o.topk.empty() && *std::min_element(o.topk.begin(), o.topk.end()) > 0, "evaluate_retrieval: the Recall@K list ",
             o.topk, " must be non-empty and positive");
  {
    const int64_t max_k = *std::max_element(o.topk.begin(), o.topk.end());
    const int64_t images = static_cast<int64_t>(annotations.images.size());
    const int64_t captions = static_cast<int64_t>(annotations.flat_texts().size());
    BLIP_CHECK(max_k <= std::min(images, captions), "evaluate_retrieval: Recall@", max_k, " needs at least ", max_k,
               " images and captions to rank, and '", annotations.source, "' has ", images, " images and ", captions,
               " captions (choose smaller K, e.g. --recall-k 1,", std::max<int64_t>(1, std::min(images, captions)), ")");
  }
  const BlipConfig& cfg = model.config();
  const bool fast_match = cfg.fast_match;
  RetrievalLoopResult r;

  // ---- image features ----------------------------------------------------------------------
  std::vector<std::string> paths;
  for (const auto& img : annotations.images) paths.push_back(img.img_path);
  const int64_t N = static_cast<int64_t>(paths.size());
  const vision::PipelineOptions pipeline = data::test_pipeline(model);  // gray models get luma
  data::LoaderOptions lo = o.loader;
  lo.batch_size = o.batch_size;
  lo.shuffle = false;
  lo.drop_last = false;
  dist::Communicator& comm = o.comm ? *o.comm : dist::single_process();
  const bool quiet = o.quiet || !comm.is_main();
  // This rank's block of whole batches (of `batch` items each) out of n items.
  auto block = [&](int64_t n, int64_t batch) {
    const dist::Shard s = dist::shard_of((n + batch - 1) / batch, comm);
    return dist::Shard{std::min(n, s.begin * batch), std::min(n, s.end * batch)};
  };
  auto t0 = clock::now();
  Tensor<T, D> image_feat, image_embeds;
  {
    const dist::Shard mine = block(N, o.batch_size);
    const std::vector<std::string> shard_paths(paths.begin() + mine.begin, paths.begin() + mine.end);
    auto loader = data::make_image_loader(shard_paths, pipeline, lo);
    ProgressBar bar("image features", mine.size(), quiet, "img");
    std::vector<Tensor<T, D>> feats, embeds;
    // Batch i + 1 is uploaded before batch i's forward is queued, so on a GPU its copy runs
    // beside that forward (upload<D>: no host wait, a copy stream).
    auto batch = loader->next();
    Tensor<T, D> images = batch ? upload<D>(batch->images) : Tensor<T, D>();
    while (batch) {
      auto next = loader->next();
      Tensor<T, D> next_images = next ? upload<D>(next->images) : Tensor<T, D>();
      const Features<T, D> f = model.extract_feat(&images, nullptr, !fast_match);
      feats.push_back(f.image_feat);
      if (!fast_match) embeds.push_back(f.image_embeds);
      bar.advance(static_cast<int64_t>(batch->indices.size()));
      batch = std::move(next);
      images = std::move(next_images);
    }
    r.data_wait_seconds = loader->wait_seconds();
    const int64_t tokens = 1 + cfg.vision.grid() * cfg.vision.grid();
    image_feat = detail::joined_rows(comm, feats, Tensor<T, D>::empty({0, cfg.embed_dim}));
    if (!fast_match) image_embeds = detail::joined_rows(comm, embeds, Tensor<T, D>::empty({0, tokens, cfg.vision.embed_dims}));
  }
  r.image_seconds = seconds_since(t0);

  // ---- text features -----------------------------------------------------------------------
  t0 = clock::now();
  std::vector<std::string> texts;
  for (const auto& img : annotations.images)
    for (const auto& t : img.text) texts.push_back(text::clean_caption(t));
  const int64_t Tn = static_cast<int64_t>(texts.size());
  const auto encoded = tokenizer.template encode_batch<D>(texts);
  const Tensor<int64_t, D> text_ids = encoded.input_ids, text_mask = encoded.attention_mask;
  Tensor<T, D> text_feat;
  {
    const dist::Shard mine = block(Tn, o.text_batch_size);
    ProgressBar bar("text features", mine.size(), quiet, "txt");
    std::vector<Tensor<T, D>> feats;
    for (int64_t s = mine.begin; s < mine.end; s += o.text_batch_size) {
      const int64_t n = std::min(o.text_batch_size, mine.end - s);
      const TextBatch<T, D> batch{contiguous(narrow(text_ids, 0, s, n)), contiguous(narrow(text_mask, 0, s, n))};
      feats.push_back(model.extract_feat(nullptr, &batch, false).text_feat);
      bar.advance(n);
    }
    text_feat = detail::joined_rows(comm, feats, Tensor<T, D>::empty({0, cfg.embed_dim}));
  }
  r.text_seconds = seconds_since(t0);

  // ---- score matrices ----------------------------------------------------------------------
  t0 = clock::now();
  if (fast_match) {
    r.score_i2t = to<Cpu>(model.compute_score_matrix_i2t(image_feat, image_embeds, text_feat, text_ids, text_mask));
    r.score_t2i = to<Cpu>(model.compute_score_matrix_t2i(image_feat, image_embeds, text_feat, text_ids, text_mask));
  } else {
    {
      const dist::Shard mine = block(N, o.i2t_chunk);
      ProgressBar bar("i2t re-rank", mine.size(), quiet, "img");
      std::vector<Tensor<T, D>> rows;
      for (int64_t s = mine.begin; s < mine.end; s += o.i2t_chunk) {
        const int64_t n = std::min(o.i2t_chunk, mine.end - s);
        rows.push_back(model.compute_score_matrix_i2t(contiguous(narrow(image_feat, 0, s, n)),
                                                      contiguous(narrow(image_embeds, 0, s, n)), text_feat, text_ids,
                                                      text_mask));
        bar.advance(n);
      }
      r.score_i2t = to<Cpu>(detail::joined_rows(comm, rows, Tensor<T, D>::empty({0, Tn})));
    }
    const dist::Shard mine = block(Tn, o.t2i_chunk);
    ProgressBar bar("t2i re-rank", mine.size(), quiet, "txt");
    std::vector<Tensor<T, D>> rows;
    for (int64_t s = mine.begin; s < mine.end; s += o.t2i_chunk) {
      const int64_t n = std::min(o.t2i_chunk, mine.end - s);
      rows.push_back(model.compute_score_matrix_t2i(image_feat, image_embeds, contiguous(narrow(text_feat, 0, s, n)),
                                                    contiguous(narrow(text_ids, 0, s, n)),
                                                    contiguous(narrow(text_mask, 0, s, n))));
      bar.advance(n);
    }
    r.score_t2i = to<Cpu>(detail::joined_rows(comm, rows, Tensor<T, D>::empty({0, N})));
  }
  r.score_seconds = seconds_since(t0);

  // ---- RetrievalRecall ---------------------------------------------------------------------
  for (const auto& img : annotations.images) {
    r.i2t_gt.push_back(img.gt_text_id);
    for (int64_t g : img.gt_image_id) r.t2i_gt.push_back({g});
  }
  const auto i2t = detail::recall_at(r.score_i2t, r.i2t_gt, o.topk, "i2t");
  const auto t2i = detail::recall_at(r.score_t2i, r.t2i_gt, o.topk, "t2i");
  for (size_t k = 0; k < o.topk.size(); ++k)
    r.metrics.emplace_back("i2t/retrieval/Recall@" + std::to_string(o.topk[k]), i2t[k]);
  for (size_t k = 0; k < o.topk.size(); ++k)
    r.metrics.emplace_back("t2i/retrieval/Recall@" + std::to_string(o.topk[k]), t2i[k]);
  append_recall_means(r.metrics);
  return r;
}

}  // namespace blip::eval
