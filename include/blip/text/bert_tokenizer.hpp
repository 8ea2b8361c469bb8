// blip/text/bert_tokenizer.hpp — BlipTokenizer: BERT WordPiece (bert-base-uncased) plus the
// added special tokens [DEC] and [ENC], exactly as HuggingFace tokenizers' BertTokenizerFast
// with mmpretrain's additions.
//
// Contract (the reference's pipeline, in order):
// 1. Added tokens ([PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC]) are found in the raw text,
//    case-sensitively, leftmost-longest; they become their ids and split the text.
// 2. Each remaining segment is normalised (BertNormalizer): drop NUL, U+FFFD and the crate's
//    control characters (Cc, Cf, Co of its Unicode tables, not unassigned code points; \t \n \r
//    kept: text/bert_char_classes.hpp); White_Space -> ' '; spaces around CJK ideographs (the
//    tokenizers crate's ranges, with its gap at U+2B820..U+2B91F); NFD + drop the crate's Mn;
//    per-char lowercase (Rust's mapping). Every code point is checked against HF tokenizers (test_tokenizer).
// 3. Pre-tokenised on whitespace and punctuation (ASCII punctuation or P* of the crate's tables).
// 4. WordPiece: greedy longest match with "##" continuations; a word over 100 chars, or one with
//    an unmatched piece, is a single [UNK].
// 5. encode(): [CLS] + first max_length-2 pieces + [SEP], padded with [PAD] to max_length,
//    attention mask 1 on real tokens. encode_batch() gives int64 tensors [N, max_length].
// The vocabulary file is one token per line (line number = id); a missing file or a vocabulary
// without the special tokens throws blip::Error naming the file and token.
#pragma once

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "blip/core/tensor.hpp"
#include "blip/io/regular_file.hpp"
#include "blip/text/bert_char_classes.hpp"
#include "blip/text/utf8.hpp"

namespace blip::text {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class Vocab {
 public:
  static Vocab load(const std::string& path) {
    // A regular file of at most 64 MiB (bert-base's is 230 KB): a FIFO or /dev/zero is refused.
    const std::vector<uint8_t> bytes = io::read_regular_file(path, uint64_t{64} << 20, "vocabulary");
    return from_text(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
  }
  // One token per line (vocab.txt's layout; a checkpoint's embedded "blip.vocab").
  static Vocab from_text(std::string_view text, const std::string& origin) {
    Vocab v;
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.find('\n', begin);
      if (end == std::string_view::npos) end = text.size();
      std::string line(text.substr(begin, end - begin));
      if (!line.empty() && line.back() == '\r') line.pop_back();
      v.add(line);
      begin = end + 1;
    }
    BLIP_CHECK(v.size() > 0, "Vocab: '", origin, "' is empty");
    v.origin_ = origin;
    return v;
  }
  // Tokens in id order, each followed by '\n': what from_text reads back.
  std::string text() const {
    std::string out;
    for (const auto& t : tokens_) out += t + "\n";
    return out;
  }
  const std::string& origin() const { return origin_; }
  int64_t add(const std::string& token) {
    auto [it, inserted] = ids_.emplace(token, static_cast<int64_t>(tokens_.size()));
    if (inserted) tokens_.push_back(token);
    return it->second;
  }
  int64_t find(std::string_view token) const {
    auto it = ids_.find(token);
    return it == ids_.end() ? -1 : it->second;
  }
  int64_t id(std::string_view token) const {
    const int64_t i = find(token);
    BLIP_CHECK(i >= 0, "Vocab: '", origin_, "' has no token '", std::string(token), "'");
    return i;
  }
  const std::string& token(int64_t id) const {
    BLIP_CHECK(id >= 0 && id < size(), "Vocab: id ", id, " is outside [0, ", size(), ")");
    return tokens_[static_cast<size_t>(id)];
  }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> ids_;
  std::vector<std::string> tokens_;
  std::string origin_ = "vocab";
};

template <Device D = Cpu>
struct Encoded {
  Tensor<int64_t, D> input_ids, attention_mask;  // [N, max_length]
};

using IdsAndMask = std::pair<std::vector<int64_t>, std::vector<int64_t>>;

// [cls] + the first max_length - 2 pieces + [sep], padded to max_length; mask 1 on real tokens.
// (HF's TemplateProcessing + right truncation + Fixed padding, shared by every tokenizer.)
inline IdsAndMask frame_and_pad(std::vector<int64_t> pieces, int64_t cls, int64_t sep, int64_t pad, int64_t max_length) {
  const size_t room = static_cast<size_t>(max_length - 2);
  if (pieces.size() > room) pieces.resize(room);
  std::vector<int64_t> ids{cls};
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(sep);
  std::vector<int64_t> mask(ids.size(), 1);
  ids.resize(static_cast<size_t>(max_length), pad);
  mask.resize(static_cast<size_t>(max_length), 0);
  return {ids, mask};
}

// Rows of encode() stacked into [N, max_length] tensors.
template <Device D, class Tokenizer>
Encoded<D> encode_rows(const Tokenizer& tok, const std::vector<std::string>& texts, int64_t max_length) {
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<int64_t> ids, mask;
  ids.reserve(static_cast<size_t>(n * max_length));
  mask.reserve(static_cast<size_t>(n * max_length));
  for (const auto& t : texts) {
    auto [row_ids, row_mask] = tok.encode(t);
    ids.insert(ids.end(), row_ids.begin(), row_ids.end());
    mask.insert(mask.end(), row_mask.begin(), row_mask.end());
  }
  return {Tensor<int64_t, D>::from_vector({n, max_length}, ids), Tensor<int64_t, D>::from_vector({n, max_length}, mask)};
}

class BertTokenizer {
 public:
  struct Options {
    int64_t max_length = 35;
    int64_t max_input_chars_per_word = 100;
    std::vector<std::string> added_tokens = {"[DEC]", "[ENC]"};  // appended after the vocab (BLIP)
  };

  explicit BertTokenizer(Vocab vocab) : BertTokenizer(std::move(vocab), Options{}) {}
  BertTokenizer(Vocab vocab, Options options) : vocab_(std::move(vocab)), options_(std::move(options)) {
    for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) specials_.push_back(t);
    for (const auto& t : options_.added_tokens) {
      vocab_.add(t);
      specials_.push_back(t);
    }
    pad_ = vocab_.id("[PAD]");
    unk_ = vocab_.id("[UNK]");
    cls_ = vocab_.id("[CLS]");
    sep_ = vocab_.id("[SEP]");
    BLIP_CHECK(options_.max_length >= 2, "BertTokenizer: max_length ", options_.max_length, " leaves no room for [CLS]/[SEP]");
  }
  static BertTokenizer blip(const std::string& vocab_path, int64_t max_length = 35) {
    Options o;
    o.max_length = max_length;
    return BertTokenizer(Vocab::load(vocab_path), o);
  }

  const Vocab& vocab() const { return vocab_; }
  int64_t token_id(std::string_view t) const { return vocab_.id(t); }

  // Word pieces of a text (tokenizer.tokenize): no [CLS]/[SEP], no truncation.
  std::vector<std::string> tokenize(std::string_view text) const {
    std::vector<std::string> out;
    for (int64_t id : piece_ids(text)) out.push_back(vocab_.token(id));
    return out;
  }

  std::vector<int64_t> piece_ids(std::string_view text) const {
    std::vector<int64_t> ids;
    size_t pos = 0;
    while (pos <= text.size()) {
      // leftmost-longest added token
      size_t best_at = std::string_view::npos, best_len = 0;
      int64_t best_id = -1;
      for (const auto& s : specials_) {
        const size_t at = text.find(s, pos);
        if (at == std::string_view::npos) continue;
        if (at < best_at || (at == best_at && s.size() > best_len)) {
          best_at = at;
          best_len = s.size();
          best_id = vocab_.id(s);
        }
      }
      const size_t segment_end = best_at == std::string_view::npos ? text.size() : best_at;
      if (segment_end > pos) encode_segment(text.substr(pos, segment_end - pos), ids);
      if (best_at == std::string_view::npos) break;
      ids.push_back(best_id);
      pos = best_at + best_len;
    }
    return ids;
  }

  // [CLS] pieces [SEP] [PAD]..., with the attention mask.
  IdsAndMask encode(std::string_view text) const {
    return frame_and_pad(piece_ids(text), cls_, sep_, pad_, options_.max_length);
  }

  template <Device D = Cpu>
  Encoded<D> encode_batch(const std::vector<std::string>& texts) const {
    return encode_rows<D>(*this, texts, options_.max_length);
  }

  // Text from ids as HuggingFace's decode(): special tokens skipped (by default), pieces joined
  // with spaces, "##" continuations glued, then clean_up_tokenization_spaces.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const {
    std::string out;
    for (int64_t id : ids) {
      const std::string& t = vocab_.token(id);
      if (skip_special_tokens && std::find(specials_.begin(), specials_.end(), t) != specials_.end()) continue;
      if (t.starts_with("##")) {
        out += t.substr(2);
      } else {
        if (!out.empty()) out += ' ';
        out += t;
      }
    }
    for (const char* from : {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"}) {
      const std::string f = from;
      const std::string to = f == " ' " ? "'" : f.substr(1);
      for (size_t at = out.find(f); at != std::string::npos; at = out.find(f, at + to.size())) out.replace(at, f.size(), to);
    }
    return out;
  }

  // The crate's own character classes (text/bert_char_classes.hpp), not the current Unicode's.
  static bool is_bert_control(char32_t c) { return in_ranges(bert_control, c); }
  static bool is_bert_punctuation(char32_t c) { return in_ranges(bert_punctuation, c); }
  static bool is_bert_mark(char32_t c) { return in_ranges(bert_nonspacing_mark, c); }

  // Normalised text of a segment (BertNormalizer), as code points.
  static CodePoints normalize(std::string_view segment) {
    CodePoints spaced;
    for (char32_t c : text::decode(segment)) {
      if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
      if (is_white_space(c)) {
        spaced.push_back(U' ');
      } else if (is_chinese_char(c)) {
        spaced.push_back(U' ');
        spaced.push_back(c);
        spaced.push_back(U' ');
      } else {
        spaced.push_back(c);
      }
    }
    CodePoints out;
    for (char32_t c : nfd(spaced, [](char32_t k) { return in_ranges(bert_nfd_kept, k); }))
      if (!is_bert_mark(c)) out.push_back(bert_lower(c));
    return out;
  }

 private:
  static bool is_chinese_char(char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
  }

  void encode_segment(std::string_view segment, std::vector<int64_t>& ids) const {
    const CodePoints norm = normalize(segment);
    // pre-tokenise: whitespace separates, punctuation stands alone
    size_t i = 0;
    while (i < norm.size()) {
      if (is_white_space(norm[i])) {
        ++i;
        continue;
      }
      if (is_bert_punctuation(norm[i])) {
        word_pieces(norm, i, i + 1, ids);
        ++i;
        continue;
      }
      size_t j = i;
      while (j < norm.size() && !is_white_space(norm[j]) && !is_bert_punctuation(norm[j])) ++j;
      word_pieces(norm, i, j, ids);
      i = j;
    }
  }

  void word_pieces(const CodePoints& cps, size_t begin, size_t end, std::vector<int64_t>& ids) const {
    if (static_cast<int64_t>(end - begin) > options_.max_input_chars_per_word) {
      ids.push_back(unk_);
      return;
    }
    // byte offsets of each code point of the word
    std::string word;
    std::vector<size_t> offsets;
    for (size_t k = begin; k < end; ++k) {
      offsets.push_back(word.size());
      append_utf8(word, cps[k]);
    }
    offsets.push_back(word.size());
    const size_t n = end - begin;
    std::vector<int64_t> pieces;
    std::string candidate;
    for (size_t start = 0; start < n;) {
      int64_t found = -1;
      size_t stop = n;
      for (; stop > start; --stop) {
        candidate.assign(start > 0 ? "##" : "");
        candidate.append(word, offsets[start], offsets[stop] - offsets[start]);
        found = vocab_.find(candidate);
        if (found >= 0) break;
      }
      if (found < 0) {
        ids.push_back(unk_);
        return;
      }
      pieces.push_back(found);
      start = stop;
    }
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  Vocab vocab_;
  Options options_;
  std::vector<std::string> specials_;
  int64_t pad_ = 0, unk_ = 100, cls_ = 101, sep_ = 102;
};

}  // namespace blip::text
