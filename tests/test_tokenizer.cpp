// BlipTokenizer and CleanCaption against the reference's golden cases (HF tokenizers, mmpretrain).
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/testing/golden_inputs.hpp"
#include "golden_dirs.hpp"

using namespace blip::text;

namespace {

// The vocabulary the project ships (data/), byte-identical to ../shared/assets'.
std::string vocab_path() { return BLIP_SOURCE_DIR "/data/bert-base-uncased-vocab.txt"; }

}  // namespace

TEST_CASE("BlipTokenizer and CleanCaption reproduce every golden case", "[text][golden]") {
  const auto results = blip::testing::run_tokenizer_cases(golden_root() / "tokenizer", vocab_path());
  REQUIRE(results.size() >= 200);
  for (const auto& r : results) {
    INFO(r.name << ": " << r.detail);
    CHECK(r.ok);
  }
  const BertTokenizer tok = BertTokenizer::blip(vocab_path());
  REQUIRE(tok.token_id("[DEC]") == 30522);
  REQUIRE(tok.token_id("[ENC]") == 30523);
}

TEST_CASE("tokenizer edge cases: invalid UTF-8, empty, huge captions", "[text]") {
  const BertTokenizer tok = BertTokenizer::blip(vocab_path());
  const auto [empty_ids, empty_mask] = tok.encode("");
  REQUIRE(empty_ids[0] == 101);
  REQUIRE(empty_ids[1] == 102);
  REQUIRE(empty_mask[2] == 0);
  // invalid bytes become U+FFFD, which the normaliser drops
  REQUIRE(tok.tokenize("a\xff\xfe photo") == tok.tokenize("a photo"));
  REQUIRE(clean_caption("A \xc3 cat") == "a \xef\xbf\xbd cat");
  const std::string huge(100000, 'a');
  const auto [ids, mask] = tok.encode(huge + " b");
  REQUIRE(ids[1] == 100);  // a 100000-char word is [UNK]
  REQUIRE(ids.size() == 35);
  REQUIRE_THROWS_WITH(BertTokenizer::blip("/nonexistent/vocab.txt"), Catch::Matchers::Contains("cannot open"));
  const auto batch = tok.encode_batch({"a dog", "two cats on a mat"});
  REQUIRE(batch.input_ids.shape() == blip::Shape{2, 35});
}

TEST_CASE("decode inverts encode up to normalisation, like HuggingFace's decode", "[text]") {
  const BertTokenizer tok = BertTokenizer::blip(vocab_path());
  const auto [ids, mask] = tok.encode("A man's surfboard, isn't it?");
  REQUIRE(tok.decode(ids) == "a man's surfboard, isn't it?");
  REQUIRE(tok.decode(tok.piece_ids("unaffable")) == "unaffable");
  REQUIRE(tok.decode({101, 1037, 102}, false) == "[CLS] a [SEP]");
}
