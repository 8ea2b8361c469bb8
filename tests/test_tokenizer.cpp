// BlipTokenizer and CleanCaption against the reference's golden cases (HF tokenizers, mmpretrain).
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
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

// Every code point against HF tokenizers' BertNormalizer and BertPreTokenizer (the fixture is
// tests/data/unicode/bert_normalizer.txt, made by make_unicode_fixture.py from the library):
// what the normaliser makes of it alone, and whether the pre-tokeniser treats it as whitespace,
// punctuation or part of a word. Unassigned code points (Cn), characters newer than the tables
// the tokenizers crate was built with, and every other category included.
TEST_CASE("BertNormalizer and BertPreTokenizer agree with HF tokenizers on every code point") {
  std::ifstream in(std::string(BLIP_SOURCE_DIR) + "/tests/data/unicode/bert_normalizer.txt");
  REQUIRE(in.good());
  struct Want {
    char norm = 'I', pre = 'w';
    CodePoints mapped;
  };
  std::vector<Want> want(0x110000);
  std::vector<bool> seen(0x110000, false);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string a, b;
    s >> a >> b;
    const auto first = static_cast<char32_t>(std::stoul(a, nullptr, 16));
    if (b[0] == 'M') {
      Want w{'M', b[1], {}};
      for (std::string h; s >> h;) w.mapped.push_back(static_cast<char32_t>(std::stoul(h, nullptr, 16)));
      want[first] = w;
      seen[first] = true;
      continue;
    }
    std::string cls;
    s >> cls;
    const auto last = static_cast<char32_t>(std::stoul(b, nullptr, 16));
    for (char32_t c = first; c <= last; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      want[c] = Want{cls[0], cls[1], {}};
      seen[c] = true;
    }
  }
  size_t checked = 0, norm_bad = 0, pre_bad = 0;
  std::string examples;
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    REQUIRE(seen[c]);
    std::string utf8;
    append_utf8(utf8, c);
    const CodePoints got = BertTokenizer::normalize(utf8);
    const Want& w = want[c];
    CodePoints expected;
    if (w.norm == 'I') expected = {c};
    else if (w.norm == 'S') expected = {U' '};
    else if (w.norm == 'C') expected = {U' ', c, U' '};
    else if (w.norm == 'M') expected = w.mapped;
    const char pre = is_white_space(c) ? 's' : BertTokenizer::is_bert_punctuation(c) ? 'p' : 'w';
    ++checked;
    if (got != expected) {
      if (++norm_bad <= 12) examples += blip::str(" norm U+", std::hex, uint32_t(c), std::dec, " (", w.norm, ")");
    }
    if (pre != w.pre) {
      if (++pre_bad <= 12) examples += blip::str(" pre U+", std::hex, uint32_t(c), std::dec, " (", w.pre, " vs ", pre, ")");
    }
  }
  INFO(checked << " code points; normaliser differs on " << norm_bad << ", pre-tokeniser on " << pre_bad << ":"
               << examples);
  CHECK(checked == 0x110000 - 0x800);
  CHECK(norm_bad == 0);
  CHECK(pre_bad == 0);
}
