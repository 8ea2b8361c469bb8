// blip/train/fashion_mnist_task.hpp — Fashion-MNIST as an image-text retrieval task: the small
// BLIP configuration the demo trains, captioned training batches, and test-set tensors.
//
// Contract:
// - fashion_mnist_config(): a BLIP of width 64 (ViT 28x28, patch 14, 3 layers, gray; a 1-layer BERT
//   with cross-attention and its vocabulary) whose
//   ITC queue, momentum and ITM hard negatives work as in BLIP-base.
// - FashionMnistBatches(split, tokenizer, B, seed)::next(): B training images in a reshuffled
//   order per epoch (the last partial batch dropped), each with one caption drawn from its
//   class's templates; a batch depends on (seed, epoch, position) only, so seek() resumes
//   exactly. image_ids are the class labels, so the ITC
//   targets treat every same-class pair (batch and queue) as positive and hard negatives come
//   from other classes — the class-level ground truth the demo evaluates.
// - fashion_mnist_images(split, rows): normalised [n, 1, 28, 28] (mean/std of the training set).
// - evaluate_fashion_mnist(model, test, tokenizer): features of every test image and of the
//   distinct captions; class-level metrics (eval/class_retrieval.hpp) from the ITC similarity
//   (fast_match) and from BLIP's ITM re-ranking of each query's top config().topk.
#pragma once

#include <numeric>

#include "blip/data/fashion_mnist.hpp"
#include "blip/data/loader.hpp"
#include "blip/eval/class_retrieval.hpp"
#include "blip/util/progress.hpp"
#include "blip/models/presets.hpp"
#include "blip/text/bert_tokenizer.hpp"

namespace blip::train {

inline BlipConfig fashion_mnist_config() {
  // BLIP-base's vocabulary, special tokens, temperature, alpha and momentum; small sizes.
  BlipConfig c = presets::blip_base();
  // Patch 14 (4 patches + CLS): with a 3-minute budget it beat patch 7 (16 + CLS) by ~1 point of
  // image-to-text R@1, training 1.2x more images per second. One text layer and three ViT layers:
  // the text encoder reads 5 sequences per image a step (ITC, its momentum copy, 3 ITM pairs) of
  // 40 fixed captions, so its second layer cost ~40 % of the step and bought nothing; a third
  // image layer over 5 tokens costs 3-7 %. 3 minutes: R@1 87.6-88.1 against 86.7-87.0 (docs/demo.md).
  c.vision = VisionConfig{.img_size = 28, .patch_size = 14, .in_channels = 1, .embed_dims = 64, .num_layers = 3,
                          .num_heads = 4, .feedforward_channels = 256, .layer_norm_eps = 1e-6};
  c.text.hidden_size = c.text.encoder_width = 64;
  c.text.num_hidden_layers = 1;
  c.text.num_attention_heads = 4;
  c.text.intermediate_size = 256;
  c.text.max_position_embeddings = 16;
  c.embed_dim = 64;
  c.queue_size = 4096;
  c.topk = 16;
  c.max_txt_len = 10;  // the longest caption, "a photo of a t-shirt", is 9 tokens with [CLS] and [SEP]
  // What fashion_mnist_images normalises with, on the 0-255 scale: the saved config then says how
  // to feed the model a gray image file (vision/pipeline.hpp, channels = 1).
  c.mean.fill(0.2860 * 255.0);
  c.std.fill(0.3530 * 255.0);
  return c;
}

// Fashion-MNIST training set statistics (pixels / 255).
inline constexpr float fashion_mnist_mean = 0.2860f, fashion_mnist_std = 0.3530f;

template <Differentiable T = float, Device D = Cpu>
Tensor<T, D> fashion_mnist_images(const data::FashionMnistSplit& split, const std::vector<int64_t>& rows) {
  constexpr int64_t P = data::fashion_mnist_side * data::fashion_mnist_side;
  std::vector<T> pixels(rows.size() * P);
  const float scale = 1.0f / (255.0f * fashion_mnist_std), shift = fashion_mnist_mean / fashion_mnist_std;
  for (size_t r = 0; r < rows.size(); ++r) {
    BLIP_CHECK(rows[r] >= 0 && rows[r] < split.size(), "fashion_mnist_images: row ", rows[r], " outside [0, ",
               split.size(), ")");
    const uint8_t* src = split.image(rows[r]);
    T* dst = pixels.data() + r * P;
    for (int64_t i = 0; i < P; ++i) dst[i] = static_cast<T>(static_cast<float>(src[i]) * scale - shift);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  return Tensor<T, D>::from_vector({n, 1, data::fashion_mnist_side, data::fashion_mnist_side}, pixels);
}

template <Differentiable T = float, Device D = Cpu>
Tensor<T, D> fashion_mnist_images(const data::FashionMnistSplit& split, int64_t begin, int64_t end) {
  std::vector<int64_t> rows(static_cast<size_t>(end - begin));
  std::iota(rows.begin(), rows.end(), begin);
  return fashion_mnist_images<T, D>(split, rows);
}

// The distinct captions (class by class) and each one's class.
struct CaptionSet {
  std::vector<std::string> texts;
  std::vector<int64_t> classes;
};

inline CaptionSet fashion_mnist_caption_set() {
  CaptionSet set;
  const auto& captions = data::fashion_mnist_captions();
  for (size_t c = 0; c < captions.size(); ++c)
    for (const auto& t : captions[c]) {
      set.texts.push_back(t);
      set.classes.push_back(static_cast<int64_t>(c));
    }
  return set;
}

template <Differentiable T = float, Device D = Cpu>
struct TrainBatch {
  Tensor<T, D> images;
  TextBatch<T, D> texts;
  std::vector<int64_t> image_ids;
};

template <Differentiable T = float, Device D = Cpu>
class FashionMnistBatches {
 public:
  // Distributed (world > 1): each epoch's order is cut into global batches of world * batch,
  // and rank r takes the r-th slice of batch of each, so the ranks' batches together are one
  // process's batch of world * batch.
  FashionMnistBatches(const data::FashionMnistSplit& split, const text::BertTokenizer& tokenizer, int64_t batch,
                      uint64_t seed, int rank = 0, int world = 1)
      : split_(split), captions_(fashion_mnist_caption_set()), batch_(batch), seed_(seed), rank_(rank), world_(world) {
    BLIP_CHECK(world > 0 && rank >= 0 && rank < world, "FashionMnistBatches: rank ", rank, " of world ", world);
    BLIP_CHECK(batch > 0 && batch * world <= split.size(), "FashionMnistBatches: batch ", batch, " x ", world,
               " ranks for ", split.size(), " images");
    const auto encoded = tokenizer.encode_batch<D>(captions_.texts);
    caption_ids_ = encoded.input_ids;
    caption_mask_ = encoded.attention_mask;
    for (size_t i = 0; i < captions_.classes.size(); ++i)
      by_class_[static_cast<size_t>(captions_.classes[i])].push_back(static_cast<int64_t>(i));
    seek(0, 0);
  }

  int64_t batches_per_epoch() const { return split_.size() / (batch_ * world_); }  // the last partial batch is dropped
  int64_t epoch() const { return epoch_; }
  int64_t batch_in_epoch() const { return batch_in_epoch_; }

  // Positions the stream at batch `batch_in_epoch` of `epoch` (a resume): batches are a function
  // of (seed, epoch, position) alone, as the DataLoader's.
  void seek(int64_t epoch, int64_t batch_in_epoch) {
    BLIP_CHECK(epoch >= 0 && batch_in_epoch >= 0 && batch_in_epoch <= batches_per_epoch(), "FashionMnistBatches: cannot seek to batch ",
               batch_in_epoch, " of epoch ", epoch, " (", batches_per_epoch(), " batches per epoch)");
    order_.resize(static_cast<size_t>(split_.size()));
    std::iota(order_.begin(), order_.end(), 0);
    Generator shuffle(seed_ + static_cast<uint64_t>(epoch));
    for (size_t i = order_.size(); i > 1; --i)
      std::swap(order_[i - 1], order_[static_cast<size_t>(shuffle.uniform_int(static_cast<int64_t>(i)))]);
    epoch_ = epoch;
    batch_in_epoch_ = batch_in_epoch;
  }

  TrainBatch<T, D> next() {
    if (batch_in_epoch_ == batches_per_epoch()) seek(epoch_ + 1, 0);
    std::vector<int64_t> rows, caption_rows, ids;
    for (int64_t b = 0; b < batch_; ++b) {
      const int64_t position = (batch_in_epoch_ * world_ + rank_) * batch_ + b;
      const int64_t row = order_[static_cast<size_t>(position)];
      const int64_t label = split_.labels[static_cast<size_t>(row)];
      const auto& options = by_class_[static_cast<size_t>(label)];
      Generator pick(data::item_seed(seed_, epoch_, position));
      rows.push_back(row);
      caption_rows.push_back(options[static_cast<size_t>(pick.uniform_int(static_cast<int64_t>(options.size())))]);
      ids.push_back(label);
    }
    ++batch_in_epoch_;
    const auto take = Tensor<int64_t, D>::from_vector({batch_}, caption_rows);
    return {fashion_mnist_images<T, D>(split_, rows), {index_select(caption_ids_, 0, take), index_select(caption_mask_, 0, take)},
            ids};
  }

 private:
  const data::FashionMnistSplit& split_;
  CaptionSet captions_;
  int64_t batch_;
  uint64_t seed_;
  int rank_, world_;
  Tensor<int64_t, D> caption_ids_, caption_mask_;
  std::array<std::vector<int64_t>, data::fashion_mnist_classes> by_class_;
  std::vector<int64_t> order_;
  int64_t epoch_ = 0, batch_in_epoch_ = 0;
};

template <Differentiable T = float, Device D = Cpu>
struct FashionMnistEval {
  eval::Metrics itc, itm;                 // ITC similarity; ITM re-ranked (no precision: -100 past top-k)
  Tensor<T, Cpu> sim_t2i, score_t2i;      // [captions, test images], on the host
  Tensor<T, D> image_feat, image_embeds;  // of the test images, on the model's device, for further queries
  CaptionSet captions;
};

// The model runs on its device; the score matrices come back to the host for the metrics.
template <class Model>
FashionMnistEval<typename Model::value_type, typename Model::device_type> evaluate_fashion_mnist(
    Model& model, const data::FashionMnistSplit& test, const text::BertTokenizer& tokenizer, int64_t batch = 500,
    bool quiet = false) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  NoGradGuard no_grad;
  FashionMnistEval<T, D> out;
  out.captions = fashion_mnist_caption_set();
  const auto encoded = tokenizer.encode_batch<D>(out.captions.texts);
  const TextBatch<T, D> texts{encoded.input_ids, encoded.attention_mask};
  const Tensor<T, D> text_feat = model.extract_feat(nullptr, &texts, false).text_feat;
  std::vector<Tensor<T, D>> feats, embeds;
  {
    ProgressBar bar("extract test images", test.size(), quiet, "img");
    for (int64_t begin = 0; begin < test.size(); begin += batch) {
      const int64_t end = std::min(test.size(), begin + batch);
      const Tensor<T, D> images = fashion_mnist_images<T, D>(test, begin, end);
      const Features<T, D> f = model.extract_feat(&images, nullptr, true);
      feats.push_back(f.image_feat);
      embeds.push_back(f.image_embeds);
      bar.advance(end - begin);
    }
  }
  out.image_feat = concat(feats, 0);
  out.image_embeds = concat(embeds, 0);
  const Tensor<T, D>& image_feat = out.image_feat;
  const Tensor<T, D>& image_embeds = out.image_embeds;
  std::vector<int64_t> image_classes(test.labels.begin(), test.labels.end());
  const bool fast = model.config().fast_match;
  model.set_fast_match(true);
  const Tensor<T, Cpu> sim_i2t =
      to<Cpu>(model.compute_score_matrix_i2t(image_feat, image_embeds, text_feat, texts.ids, texts.mask));
  out.sim_t2i = to<Cpu>(model.compute_score_matrix_t2i(image_feat, image_embeds, text_feat, texts.ids, texts.mask));
  out.itc = eval::class_retrieval(sim_i2t, out.sim_t2i, image_classes, out.captions.classes);
  model.set_fast_match(false);
  const Tensor<T, Cpu> score_i2t =
      to<Cpu>(model.compute_score_matrix_i2t(image_feat, image_embeds, text_feat, texts.ids, texts.mask));
  out.score_t2i = to<Cpu>(model.compute_score_matrix_t2i(image_feat, image_embeds, text_feat, texts.ids, texts.mask));
  model.set_fast_match(fast);
  const int64_t k = std::min<int64_t>(model.config().topk, 10);
  std::vector<int64_t> ks{1};
  if (k >= 5) ks.push_back(5);
  if (k >= 10) ks.push_back(10);
  out.itm = eval::class_retrieval(score_i2t, out.score_t2i, image_classes, out.captions.classes, ks, 0);
  return out;
}

}  // namespace blip::train
