// blip/data/coco_retrieval.hpp — mmpretrain's COCORetrieval: the COCO caption JSON layout of the
// Karpathy split files (caption_karpathy_{train,val,test}2014.json).
//
// Contract (coco_retrieval.py, load_data_list):
// - images: {"id", "coco_url", ...}; the first entry of each id counts (a repeated id is
//   skipped); its image_id is its position in "images" (so a repeated id leaves a gap), its
//   path image_root joined with the last two '/'-parts of coco_url ("val2014/COCO_....jpg").
//   Files without coco_url may give "file_name" (an extension; the reference needs coco_url).
// - annotations: {"image_id", "id", "caption"}; text_id is the position in "annotations";
//   an image's captions and gt_text_id follow annotation order. An annotation naming an unknown
//   image id is an error (the reference raises KeyError).
// - samples (train mode) follow annotation order; images (test mode) the images' first
//   appearance. text_size counts annotations, img_size distinct image ids.
// Ids compare as JSON values (5 and "5" differ, as in Python). Errors name the file and the key
// path ("annotations[12].caption") or the byte offset of a JSON syntax error.
#pragma once

#include <unordered_map>

#include "blip/data/retrieval_annotations.hpp"

namespace blip::data {

inline RetrievalAnnotations parse_coco_retrieval(std::string_view json_text, const std::string& name,
                                                 const std::string& image_root = "") {
  using detail::member;
  const nlohmann::json j = detail::parse_json(json_text, name);
  const nlohmann::json& images = detail::array_member(j, "images", "the top level", name);
  const nlohmann::json& annotations = detail::array_member(j, "annotations", "the top level", name);
  RetrievalAnnotations out;
  out.source = name;
  std::unordered_map<std::string, size_t> by_id;  // JSON text of the id -> position in out.images
  for (size_t idx = 0; idx < images.size(); ++idx) {
    const std::string path = str("images[", idx, "]");
    const std::string id = detail::id_text(member(images[idx], "id", path, name));
    if (by_id.count(id)) continue;
    std::string rel;
    if (images[idx].contains("coco_url")) {
      const std::string url = detail::string_member(images[idx], "coco_url", path, name);
      const size_t last = url.rfind('/');
      const size_t second = last == std::string::npos || last == 0 ? std::string::npos : url.rfind('/', last - 1);
      rel = second == std::string::npos ? url : url.substr(second + 1);
    } else {
      BLIP_CHECK(images[idx].is_object() && images[idx].contains("file_name"), "'", name, "': ", path,
                 " lacks the key 'coco_url' (or 'file_name')");
      rel = detail::string_member(images[idx], "file_name", path, name);
    }
    by_id.emplace(id, out.images.size());
    RetrievalImage img;
    img.img_path = detail::image_path(image_root, rel, path, name);
    img.image_id = static_cast<int64_t>(idx);
    out.images.push_back(std::move(img));
  }
  for (size_t idx = 0; idx < annotations.size(); ++idx) {
    const std::string path = str("annotations[", idx, "]");
    const nlohmann::json& a = annotations[idx];
    const std::string image_key = detail::id_text(member(a, "image_id", path, name));
    member(a, "id", path, name);
    std::string caption = detail::string_member(a, "caption", path, name);
    const auto it = by_id.find(image_key);
    BLIP_CHECK(it != by_id.end(), "'", name, "': ", path, ".image_id ", io::json_excerpt(a["image_id"]),
               " names no entry of 'images'");
    RetrievalImage& img = out.images[it->second];
    const int64_t text_id = static_cast<int64_t>(idx);
    out.samples.push_back({img.img_path, caption, img.image_id, text_id});
    img.gt_text_id.push_back(text_id);
    img.gt_image_id.push_back(img.image_id);
    img.text.push_back(std::move(caption));
  }
  out.img_size = static_cast<int64_t>(out.images.size());
  out.text_size = static_cast<int64_t>(annotations.size());
  return out;
}

inline RetrievalAnnotations load_coco_retrieval(const std::string& ann_file, const std::string& image_root = "") {
  return parse_coco_retrieval(detail::read_text_file(ann_file), ann_file, image_root);
}

}  // namespace blip::data
