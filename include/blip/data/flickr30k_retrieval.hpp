// blip/data/flickr30k_retrieval.hpp — mmpretrain's Flickr30kRetrieval: Karpathy's
// dataset_flickr30k.json ({"images": [{"split", "imgid", "filename", "sentences": [{"raw",
// "sentid"}, ...]}, ...]}).
//
// Contract (flickr30k_retrieval.py, load_data_list): only images whose "split" equals `split`
// ("train", "val" or "test") are kept; image_id counts the kept images and text_id their
// sentences, in file order; the path is image_root joined with "filename". A repeated imgid
// replaces the earlier entry's data but keeps its position (Python's OrderedDict), and its
// sentences still count in text_size, as in the reference. Errors name the file and the key path
// or the byte offset of a JSON syntax error.
#pragma once

#include <unordered_map>

#include "blip/data/retrieval_annotations.hpp"

namespace blip::data {

inline RetrievalAnnotations parse_flickr30k_retrieval(std::string_view json_text, const std::string& name,
                                                      const std::string& image_root, const std::string& split) {
  BLIP_CHECK(split == "train" || split == "val" || split == "test", "Flickr30kRetrieval: split must be train, val or "
             "test, got '", split, "'");
  using detail::member;
  const nlohmann::json j = detail::parse_json(json_text, name);
  const nlohmann::json& images = detail::array_member(j, "images", "the top level", name);
  RetrievalAnnotations out;
  out.source = name;
  std::unordered_map<std::string, size_t> by_id;
  int64_t img_idx = 0, sentence_idx = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string path = str("images[", i, "]");
    const nlohmann::json& img = images[i];
    if (detail::string_member(img, "split", path, name) != split) continue;
    RetrievalImage entry;
    const std::string id = detail::id_text(member(img, "imgid", path, name));
    entry.img_path =
        detail::image_path(image_root, detail::string_member(img, "filename", path, name), path + ".filename", name);
    entry.image_id = img_idx;
    const nlohmann::json& sentences = detail::array_member(img, "sentences", path, name);
    for (size_t s = 0; s < sentences.size(); ++s) {
      const std::string spath = str(path, ".sentences[", s, "]");
      std::string raw = detail::string_member(sentences[s], "raw", spath, name);
      member(sentences[s], "sentid", spath, name);
      out.samples.push_back({entry.img_path, raw, entry.image_id, sentence_idx});
      entry.text.push_back(std::move(raw));
      entry.gt_text_id.push_back(sentence_idx);
      entry.gt_image_id.push_back(entry.image_id);
      ++sentence_idx;
    }
    if (const auto it = by_id.find(id); it != by_id.end()) {
      out.images[it->second] = std::move(entry);
    } else {
      by_id.emplace(id, out.images.size());
      out.images.push_back(std::move(entry));
    }
    ++img_idx;
  }
  out.img_size = static_cast<int64_t>(out.images.size());
  out.text_size = static_cast<int64_t>(out.samples.size());
  return out;
}

inline RetrievalAnnotations load_flickr30k_retrieval(const std::string& ann_file, const std::string& image_root,
                                                     const std::string& split) {
  return parse_flickr30k_retrieval(detail::read_text_file(ann_file), ann_file, image_root, split);
}

}  // namespace blip::data
