// blip/data/retrieval_annotations.hpp — an image–text retrieval dataset's annotation lists, in
// mmpretrain's two modes, and the JSON helpers the format parsers share.
//
// Contract: RetrievalAnnotations holds both of mmpretrain's data lists, built by one parse:
// - `images` (test_mode=True): one entry per image, in the dataset's order, with its captions
//   (`text`), `gt_text_id` (the i2t ground truth) and `gt_image_id` (one per caption, the t2i
//   ground truth). The evaluation loop puts texts in the order of this list, image by image.
// - `samples` (test_mode=False): one entry per caption, with its `image_id` and `text_id`.
// `img_size` / `text_size` are the dataset's own counts (mmpretrain's img_size / text_size).
// Ids follow the reference exactly (see coco_retrieval.hpp, flickr30k_retrieval.hpp), quirks
// included, so recall computed from them matches mmpretrain's. check_eval_ids() rejects ids the
// reference's metric could not use (it would fail in one_hot) with the file and entry named.
// Parse errors name the file and the byte offset, key path or line.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "blip/core/error.hpp"
#include "blip/io/json_text.hpp"
#include "blip/io/regular_file.hpp"

namespace blip::data {

struct RetrievalImage {
  std::string img_path;
  int64_t image_id = 0;
  std::vector<std::string> text;
  std::vector<int64_t> gt_text_id;
  std::vector<int64_t> gt_image_id;
};

struct RetrievalSample {
  std::string img_path;
  std::string text;
  int64_t image_id = 0;
  int64_t text_id = 0;
};

struct RetrievalAnnotations {
  std::string source;  // the annotation file, for messages
  std::vector<RetrievalImage> images;
  std::vector<RetrievalSample> samples;
  int64_t img_size = 0, text_size = 0;

  // Captions in evaluation order (image by image), as the reference's loop concatenates them.
  std::vector<std::string> flat_texts() const {
    std::vector<std::string> out;
    for (const auto& img : images) out.insert(out.end(), img.text.begin(), img.text.end());
    return out;
  }
};

// mmengine's join_path (os.path.join): an absolute `rel` or an empty root leaves `rel` alone.
inline std::string join_path(const std::string& root, const std::string& rel) {
  if (root.empty() || (!rel.empty() && rel.front() == '/')) return rel;
  return root.back() == '/' ? root + rel : root + "/" + rel;
}

// The i2t / t2i ground truth must index the score matrices' columns.
inline void check_eval_ids(const RetrievalAnnotations& a) {
  int64_t texts = 0;
  for (const auto& img : a.images) texts += static_cast<int64_t>(img.text.size());
  const int64_t images = static_cast<int64_t>(a.images.size());
  BLIP_CHECK(images > 0, "'", a.source, "': the dataset has no images (check the split and the file)");
  BLIP_CHECK(texts > 0, "'", a.source, "': the dataset has no captions");
  for (size_t i = 0; i < a.images.size(); ++i) {
    for (int64_t t : a.images[i].gt_text_id)
      BLIP_CHECK(t >= 0 && t < texts, "'", a.source, "': image ", i, " ('", a.images[i].img_path, "') has text id ", t,
                 ", outside the ", texts, " captions of the evaluation (mmpretrain fails on it too: are some images "
                 "or captions duplicated or dangling?)");
    for (int64_t g : a.images[i].gt_image_id)
      BLIP_CHECK(g >= 0 && g < images, "'", a.source, "': image ", i, " ('", a.images[i].img_path, "') has image id ",
                 g, ", outside the ", images, " images of the evaluation (mmpretrain fails on it too: are image "
                 "entries duplicated?)");
  }
}

namespace detail {

// A regular file of at most 1 GiB (io/regular_file.hpp): Karpathy's COCO train split is ~90 MB.
inline std::string read_text_file(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_regular_file(path, uint64_t{1} << 30, "annotation file");
  return std::string(bytes.begin(), bytes.end());
}

// nlohmann's parse errors carry the byte offset; ours name the file and where.
// Nesting is bounded (io/json_text.hpp): ids are compared and printed, which recurses.
inline nlohmann::json parse_json(std::string_view text, const std::string& name, const std::string& where = {}) {
  return io::parse_json_text(text, str("'", name, "'", where));
}

// obj[key] with an error naming the file and the key path when absent or of the wrong kind.
inline const nlohmann::json& member(const nlohmann::json& obj, const char* key, const std::string& path,
                                    const std::string& name) {
  BLIP_CHECK(obj.is_object(), "'", name, "': ", path, " must be a JSON object, got ", obj.type_name());
  const auto it = obj.find(key);
  BLIP_CHECK(it != obj.end(), "'", name, "': ", path, " lacks the key '", key, "'");
  return *it;
}

inline const nlohmann::json& array_member(const nlohmann::json& obj, const char* key, const std::string& path,
                                          const std::string& name) {
  const nlohmann::json& v = member(obj, key, path, name);
  BLIP_CHECK(v.is_array(), "'", name, "': ", path, ".", key, " must be an array, got ", v.type_name());
  return v;
}

inline std::string string_member(const nlohmann::json& obj, const char* key, const std::string& path,
                                 const std::string& name) {
  const nlohmann::json& v = member(obj, key, path, name);
  BLIP_CHECK(v.is_string(), "'", name, "': ", path, ".", key, " must be a string, got ", v.type_name());
  return v.get<std::string>();
}

// An image's path under the image root; an empty name would stand for the root itself.
inline std::string image_path(const std::string& root, const std::string& rel, const std::string& path,
                              const std::string& name) {
  BLIP_CHECK(!rel.empty(), "'", name, "': ", path, " names an empty image path");
  return join_path(root, rel);
}

// An id as a map key: its JSON text, so 5 and "5" stay distinct as they are in Python.
inline std::string id_text(const nlohmann::json& id) {
  return id.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace detail
}  // namespace blip::data
