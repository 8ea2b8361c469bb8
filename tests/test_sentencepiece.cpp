// SentencePieceTokenizer with a real model (ALBERT 30k-clean, Apache-2.0) from ../shared/assets.
#include <catch2/catch.hpp>

#include "blip/text/sentencepiece_tokenizer.hpp"
#include "golden_dirs.hpp"

using namespace blip::text;

namespace {
std::string model_path() { return (golden_root().parent_path() / "assets" / "albert-30k-clean.model").string(); }
}

TEST_CASE("SentencePiece: the ids the model's README gives, and its own round trips", "[text][sentencepiece]") {
  // Raw (no lower-casing): "H" is not a piece of this lower-case model -> <unk> = 1.
  SentencePieceTokenizer raw(model_path(), {.max_length = 35, .lowercase = false});
  REQUIRE(raw.piece_ids("Hello world, a photo of a cat.") == std::vector<int64_t>{13, 1, 7523, 126, 15, 21, 3056, 16, 21, 2008, 9});
  REQUIRE(raw.vocab_size() == 30000);
  SentencePieceTokenizer tok(model_path());
  const auto pieces = tok.tokenize("A photo of a cat.");
  REQUIRE(pieces.front() == "\xe2\x96\x81" "a");  // "▁a"
  const auto [ids, mask] = tok.encode("A photo of a cat.");
  REQUIRE(ids.front() == 2);  // [CLS]
  REQUIRE(ids[pieces.size() + 1] == 3);  // [SEP]
  REQUIRE(ids.back() == 0);  // <pad>
  REQUIRE(mask[pieces.size() + 1] == 1);
  REQUIRE(mask[pieces.size() + 2] == 0);
  REQUIRE(tok.decode(ids) == "a photo of a cat.");
  // Pieces and ids agree both ways (the processor's own inverse).
  const std::string sentence = "two dogs playing frisbee in a park";
  const auto sentence_ids = tok.piece_ids(sentence);
  const auto sentence_pieces = tok.tokenize(sentence);
  REQUIRE(sentence_ids.size() == sentence_pieces.size());
  for (size_t i = 0; i < sentence_ids.size(); ++i) REQUIRE(tok.piece_id(sentence_pieces[i]) == sentence_ids[i]);
  REQUIRE_THROWS_WITH(tok.piece_id("no-such-piece"), Catch::Matchers::Contains("no piece"));
  REQUIRE_THROWS_WITH(SentencePieceTokenizer("/nonexistent.model"), Catch::Matchers::Contains("cannot load"));
  const auto batch = tok.encode_batch({"a", "b c"});
  REQUIRE(batch.input_ids.shape() == blip::Shape{2, 35});
}
