// libFuzzer target: BlipTokenizer and CleanCaption on arbitrary bytes (any UTF-8 validity).
// Every input must encode to max_length ids within the vocabulary, without crashing.
#include <cstdint>
#include <cstdlib>

#include "blip/text/bert_tokenizer.hpp"
#include "blip/text/clean_caption.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const blip::text::BertTokenizer tok = blip::text::BertTokenizer::blip(BLIP_VOCAB);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto [ids, mask] = tok.encode(text);
  if (ids.size() != 35 || mask.size() != 35) std::abort();
  for (int64_t id : ids)
    if (id < 0 || id >= tok.vocab().size()) std::abort();
  (void)tok.encode(blip::text::clean_caption(text));
  return 0;
}
