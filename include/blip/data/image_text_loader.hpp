// blip/data/image_text_loader.hpp — DataLoaders for retrieval data: the test pipeline (image
// files to model input, for feature extraction and indexing) and the train pipeline (augmented
// image, cleaned caption, image id per caption).
//
// Contract:
// - make_image_loader(paths, pipeline, options): batches of [B, 3, S, S] float images, by the
//   test pipeline (vision/pipeline.hpp: decode, Pillow bicubic resize, normalise), with each
//   batch's positions in `paths`.
// - make_train_loader(annotations, pipeline, options): one item per caption (mmpretrain's train
//   list): LoadImageFromFile (BGR) -> TrainAugment -> normalise; CleanCaption on the text;
//   batches carry images [B, 3, S, S], texts, image_ids, text_ids. The augmentation's randomness
//   is the item's own Generator (see loader.hpp), so batches are reproducible from the seed.
// - All images of a batch must come out the same size; errors name the files.
#pragma once

#include <array>
#include <cstring>
#include <memory>

#include "blip/data/loader.hpp"
#include "blip/data/retrieval_annotations.hpp"
#include "blip/text/clean_caption.hpp"
#include "blip/vision/augment.hpp"
#include "blip/vision/pipeline.hpp"

namespace blip::data {

struct ImageItem {
  Tensor<float, Cpu> image;  // [3, S, S]
  int64_t index = 0;
};

struct ImageBatch {
  Tensor<float, Cpu> images;     // [B, 3, S, S]
  std::vector<int64_t> indices;  // positions in the loader's list
};

struct ImageTextItem {
  Tensor<float, Cpu> image;
  std::string text;
  int64_t image_id = 0, text_id = 0, index = 0;
};

struct ImageTextBatch {
  Tensor<float, Cpu> images;
  std::vector<std::string> texts;
  std::vector<int64_t> image_ids, text_ids, indices;
};

// [B, 3, H, W] from B images of one size; `name(i)` names image i in errors.
template <class NameFn>
Tensor<float, Cpu> stack_images(const std::vector<const Tensor<float, Cpu>*>& images, NameFn&& name) {
  BLIP_CHECK(!images.empty(), "stack_images: no images");
  const Shape first = images[0]->shape();
  BLIP_CHECK(first.size() == 3, "stack_images: ", name(0), " gave shape ", first, ", expected [3, H, W]");
  Shape shape{static_cast<int64_t>(images.size())};
  shape.insert(shape.end(), first.begin(), first.end());
  Tensor<float, Cpu> out = Tensor<float, Cpu>::empty(shape);
  const size_t n = static_cast<size_t>(images[0]->numel());
  for (size_t i = 0; i < images.size(); ++i) {
    BLIP_CHECK(images[i]->shape() == first && images[i]->is_contiguous(), "stack_images: ", name(i), " gave shape ",
               images[i]->shape(), (images[i]->is_contiguous() ? "" : " (not contiguous)"), ", but ", name(0), " gave ", first);
    std::memcpy(out.data() + i * n, images[i]->data(), n * sizeof(float));
  }
  return out;
}

using ImageLoader = DataLoader<ImageItem, ImageBatch>;

// The test pipeline of a model: its image size, mean, std and channels (1: luma) from its config.
template <class Model>
vision::PipelineOptions test_pipeline(const Model& model) {
  vision::PipelineOptions p;
  p.size = model.config().vision.img_size;
  p.mean = model.config().mean;
  p.std = model.config().std;
  p.channels = model.config().vision.in_channels;
  return p;
}

inline std::unique_ptr<ImageLoader> make_image_loader(std::vector<std::string> paths, vision::PipelineOptions pipeline,
                                                      LoaderOptions options) {
  auto shared = std::make_shared<const std::vector<std::string>>(std::move(paths));
  const int64_t n = static_cast<int64_t>(shared->size());
  return std::make_unique<ImageLoader>(
      n,
      [shared, pipeline](int64_t i, Generator&) {
        return ImageItem{vision::load_and_preprocess((*shared)[static_cast<size_t>(i)], pipeline), i};
      },
      [shared](std::vector<ImageItem>&& items) {
        std::vector<const Tensor<float, Cpu>*> images;
        ImageBatch batch;
        for (const auto& it : items) {
          images.push_back(&it.image);
          batch.indices.push_back(it.index);
        }
        batch.images = stack_images(images, [&](size_t i) { return str("'", (*shared)[static_cast<size_t>(items[i].index)], "'"); });
        return batch;
      },
      options);
}

struct TrainPipeline {
  vision::TrainAugment augment;  // augment.crop.size is the output size
  std::array<double, 3> mean{122.770938, 116.7460125, 104.09373615};
  std::array<double, 3> std{68.5005327, 66.6321579, 70.32316305};
  vision::DecodeOptions decode;  // BGR, as LoadImageFromFile
  text::CleanCaptionOptions clean;
};

using TrainLoader = DataLoader<ImageTextItem, ImageTextBatch>;

inline std::unique_ptr<TrainLoader> make_train_loader(const RetrievalAnnotations& annotations, TrainPipeline pipeline,
                                                      LoaderOptions options) {
  BLIP_CHECK(!annotations.samples.empty(), "make_train_loader: '", annotations.source, "' has no captions to train on");
  auto samples = std::make_shared<const std::vector<RetrievalSample>>(annotations.samples);
  return std::make_unique<TrainLoader>(
      static_cast<int64_t>(samples->size()),
      [samples, pipeline](int64_t i, Generator& gen) {
        const RetrievalSample& s = (*samples)[static_cast<size_t>(i)];
        const vision::Image decoded = vision::load_image(s.img_path, pipeline.decode);
        const vision::Image augmented = pipeline.augment(decoded, gen);
        return ImageTextItem{vision::normalize_to_chw(augmented, pipeline.mean, pipeline.std),
                             text::clean_caption(s.text, pipeline.clean), s.image_id, s.text_id, i};
      },
      [samples](std::vector<ImageTextItem>&& items) {
        std::vector<const Tensor<float, Cpu>*> images;
        ImageTextBatch batch;
        for (auto& it : items) {
          images.push_back(&it.image);
          batch.texts.push_back(std::move(it.text));
          batch.image_ids.push_back(it.image_id);
          batch.text_ids.push_back(it.text_id);
          batch.indices.push_back(it.index);
        }
        batch.images = stack_images(images, [&](size_t i) {
          return str("'", (*samples)[static_cast<size_t>(items[i].index)].img_path, "'");
        });
        return batch;
      },
      options);
}

}  // namespace blip::data
