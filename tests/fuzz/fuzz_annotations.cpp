// libFuzzer target: the retrieval annotation parsers (COCO, Flickr30k, JSONL) and the
// evaluation's id checks. The first byte picks the format, the rest is the file's text. Any
// input must parse or throw blip::Error: no crash, hang, other exception or huge allocation.
#include <cstdint>
#include <string_view>

#include "blip/data/coco_retrieval.hpp"
#include "blip/data/flickr30k_retrieval.hpp"
#include "blip/data/jsonl_retrieval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    blip::data::RetrievalAnnotations a;
    switch (data[0] % 3) {
      case 0: a = blip::data::parse_coco_retrieval(text, "fuzz.json", "root"); break;
      case 1: a = blip::data::parse_flickr30k_retrieval(text, "fuzz.json", "root", "test"); break;
      default: a = blip::data::parse_jsonl_retrieval(text, "fuzz.jsonl", "root"); break;
    }
    (void)a.flat_texts();
    blip::data::check_eval_ids(a);
  } catch (const blip::Error&) {
  }
  return 0;
}
