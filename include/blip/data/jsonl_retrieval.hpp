// blip/data/jsonl_retrieval.hpp — a simple retrieval format for users' own data: one JSON object
// per line, {"image": "path", "captions": ["...", ...]}.
//
// Contract: blank lines are skipped; "image" is joined to image_root unless absolute; an image
// may have no captions (it is then only a gallery entry). image_id counts the images and text_id
// the captions in file order, so test and train lists look as mmpretrain's datasets make them.
// Errors name the file and the 1-based line (and the byte offset within it for bad JSON).
#pragma once

#include "blip/data/retrieval_annotations.hpp"

namespace blip::data {

inline RetrievalAnnotations parse_jsonl_retrieval(std::string_view text, const std::string& name,
                                                  const std::string& image_root = "") {
  RetrievalAnnotations out;
  out.source = name;
  int64_t text_id = 0;
  size_t pos = 0;
  for (int64_t line_no = 1; pos < text.size(); ++line_no) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = str(" line ", line_no);
    const nlohmann::json j = detail::parse_json(line, name, where);
    const std::string path = str("line ", line_no);
    RetrievalImage img;
    img.img_path = detail::image_path(image_root, detail::string_member(j, "image", path, name), path + ".image", name);
    img.image_id = static_cast<int64_t>(out.images.size());
    const nlohmann::json& captions = detail::array_member(j, "captions", path, name);
    for (size_t c = 0; c < captions.size(); ++c) {
      BLIP_CHECK(captions[c].is_string(), "'", name, "': line ", line_no, ": captions[", c, "] must be a string, got ",
                 captions[c].type_name());
      std::string caption = captions[c].get<std::string>();
      out.samples.push_back({img.img_path, caption, img.image_id, text_id});
      img.text.push_back(std::move(caption));
      img.gt_text_id.push_back(text_id++);
      img.gt_image_id.push_back(img.image_id);
    }
    out.images.push_back(std::move(img));
  }
  out.img_size = static_cast<int64_t>(out.images.size());
  out.text_size = text_id;
  return out;
}

inline RetrievalAnnotations load_jsonl_retrieval(const std::string& ann_file, const std::string& image_root = "") {
  return parse_jsonl_retrieval(detail::read_text_file(ann_file), ann_file, image_root);
}

}  // namespace blip::data
