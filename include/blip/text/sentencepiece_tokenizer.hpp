// blip/text/sentencepiece_tokenizer.hpp — a SentencePiece tokenizer (libsentencepiece) with the
// same encode()/encode_batch()/decode() interface as BertTokenizer, for models trained with
// their own vocabulary.
//
// Contract: encode(text) = [cls] + pieces (truncated to max_length - 2) + [sep], padded with
// pad to max_length, mask 1 on real tokens; cls/sep/pad are pieces of the model (ALBERT-style
// "[CLS]", "[SEP]", "<pad>" by default). `lowercase` lower-cases (Unicode simple mapping) before
// encoding, as ALBERT does. A model that cannot be loaded, or lacks a named piece, throws
// blip::Error naming the file and piece. Needs the sentencepiece component (BLIP_WITH_SENTENCEPIECE).
#pragma once

#include <sentencepiece_processor.h>

#include "blip/text/bert_tokenizer.hpp"

namespace blip::text {

class SentencePieceTokenizer {
 public:
  struct Options {
    int64_t max_length = 35;
    bool lowercase = true;
    std::string cls = "[CLS]", sep = "[SEP]", pad = "<pad>";
  };

  explicit SentencePieceTokenizer(const std::string& model_path) : SentencePieceTokenizer(model_path, Options{}) {}
  SentencePieceTokenizer(const std::string& model_path, Options options) : options_(std::move(options)), path_(model_path) {
    const auto status = processor_.Load(model_path);
    BLIP_CHECK(status.ok(), "SentencePieceTokenizer: cannot load '", model_path, "': ", status.ToString());
    cls_ = piece_id(options_.cls);
    sep_ = piece_id(options_.sep);
    pad_ = piece_id(options_.pad);
    BLIP_CHECK(options_.max_length >= 2, "SentencePieceTokenizer: max_length ", options_.max_length, " is too small");
  }

  int64_t vocab_size() const { return processor_.GetPieceSize(); }
  int64_t piece_id(const std::string& piece) const {
    const int id = processor_.PieceToId(piece);
    BLIP_CHECK(id != processor_.unk_id() || piece == processor_.IdToPiece(processor_.unk_id()), "SentencePieceTokenizer: '",
               path_, "' has no piece '", piece, "'");
    return id;
  }

  std::vector<int64_t> piece_ids(std::string_view text) const {
    std::string input(text);
    if (options_.lowercase) {
      CodePoints cps = decode_utf8(text);
      for (char32_t& c : cps) c = simple_lower(c);
      input = encode_utf8(cps);
    }
    std::vector<int> ids;
    const auto status = processor_.Encode(input, &ids);
    BLIP_CHECK(status.ok(), "SentencePieceTokenizer: encoding failed: ", status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::vector<std::string> tokenize(std::string_view text) const {
    std::vector<std::string> out;
    for (int64_t id : piece_ids(text)) out.push_back(processor_.IdToPiece(static_cast<int>(id)));
    return out;
  }

  IdsAndMask encode(std::string_view text) const {
    return frame_and_pad(piece_ids(text), cls_, sep_, pad_, options_.max_length);
  }

  template <Device D = Cpu>
  Encoded<D> encode_batch(const std::vector<std::string>& texts) const {
    return encode_rows<D>(*this, texts, options_.max_length);
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const {
    std::vector<int> kept;
    for (int64_t id : ids) {
      if (skip_special_tokens && (id == cls_ || id == sep_ || id == pad_)) continue;
      kept.push_back(static_cast<int>(id));
    }
    std::string out;
    processor_.Decode(kept, &out);
    return out;
  }

 private:
  static CodePoints decode_utf8(std::string_view s) { return text::decode(s); }
  static std::string encode_utf8(const CodePoints& c) { return text::encode(c); }

  sentencepiece::SentencePieceProcessor processor_;
  Options options_;
  std::string path_;
  int64_t cls_ = 0, sep_ = 0, pad_ = 0;
};

// The interface both tokenizers share (what data loaders and the CLI need).
template <class T>
concept TextTokenizer = requires(const T& t, std::string_view s, const std::vector<std::string>& batch,
                                 const std::vector<int64_t>& ids) {
  { t.encode(s) } -> std::same_as<std::pair<std::vector<int64_t>, std::vector<int64_t>>>;
  { t.encode_batch(batch) } -> std::same_as<Encoded<Cpu>>;
  { t.decode(ids) } -> std::same_as<std::string>;
};
static_assert(TextTokenizer<BertTokenizer> && TextTokenizer<SentencePieceTokenizer>);

}  // namespace blip::text
