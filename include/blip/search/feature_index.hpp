// blip/search/feature_index.hpp — the index file of `blip index` / `blip search`: a gallery's
// entries (image paths or texts) with their image_feat / text_feat rows and, optionally, the
// images' image_embeds for ITM re-ranking.
//
// Format, version 3, little-endian:
//   [0, 64)  header: "BLIPIDX\0", u32 version, u32 kind (1 images, 2 texts), u64 count N,
//            u32 feat_dim E, u32 embeds dtype (0 none, 1 f32, 2 f16, 3 bf16), u32 tokens S,
//            u32 width W, u64 model fingerprint, u64 strings_bytes, u64 checksum
//   strings  u32 length + bytes: the model name, the root folder ("" for texts), then the N
//            entries (image paths relative to the root, or texts); zero-padded to 64 bytes
//   embeds   N x S x W values of the embeds dtype (absent when none); zero-padded to 64 bytes
//   feats    N x E float32, L2-normalised rows, 64-byte aligned: used in place from the mapping
// The checksum is zlib's CRC-32 of the whole file with the checksum field as zero. Version 1
// (FNV-1a, embeds unchecked) and 2 (absolute paths, unaligned features) are refused with a
// request to rebuild. Readers map a regular file only (io/mapped_file.hpp), check the magic,
// version, kind, dtype, every size against the file's size (overflow-safe, before any
// allocation), every string's length, the padding, the checksum, and that every feature and
// embeds value is finite; each error names the file and the byte offset. IndexWriter streams
// embeds batch by batch (a gallery's embeds can be gigabytes), refuses non-finite values, and
// writes through io/atomic_file.hpp (unique temporary created exclusively, fsync, rename,
// directory fsync) on finish().
#pragma once

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blip/core/dtype.hpp"
#include "blip/core/tensor.hpp"
#include "blip/io/atomic_file.hpp"
#include "blip/io/crc32.hpp"
#include "blip/io/mapped_file.hpp"

namespace blip::search {

static_assert(std::endian::native == std::endian::little, "the index format is little-endian");

enum class IndexKind : uint32_t { images = 1, texts = 2 };
enum class EmbedsDtype : uint32_t { none = 0, f32 = 1, f16 = 2, bf16 = 3 };

inline const char* kind_name(IndexKind k) { return k == IndexKind::images ? "images" : "texts"; }
inline size_t dtype_size(EmbedsDtype d) { return d == EmbedsDtype::none ? 0 : d == EmbedsDtype::f32 ? 4 : 2; }
inline const char* embeds_name(EmbedsDtype d) {
  return d == EmbedsDtype::none ? "none" : d == EmbedsDtype::f32 ? "f32" : d == EmbedsDtype::f16 ? "f16" : "bf16";
}
inline EmbedsDtype parse_embeds_dtype(const std::string& s) {
  if (s == "none") return EmbedsDtype::none;
  if (s == "f32") return EmbedsDtype::f32;
  if (s == "f16") return EmbedsDtype::f16;
  if (s == "bf16") return EmbedsDtype::bf16;
  fail("index: unknown embeds type '", s, "' (use none, f16, bf16 or f32)");
}

inline constexpr char kIndexMagic[8] = {'B', 'L', 'I', 'P', 'I', 'D', 'X', '\0'};
inline constexpr uint32_t kIndexVersion = 3;
inline constexpr size_t kIndexHeaderBytes = 64;
inline constexpr uint64_t kIndexAlign = 64;  // the sections after the strings start on this boundary
inline constexpr uint32_t kMaxFeatDim = 1u << 16, kMaxTokens = 1u << 20, kMaxWidth = 1u << 16;

struct IndexHeader {
  IndexKind kind = IndexKind::images;
  uint64_t count = 0;
  uint32_t feat_dim = 0;
  EmbedsDtype embeds = EmbedsDtype::none;
  uint32_t tokens = 0, width = 0;
  uint64_t fingerprint = 0;
  uint64_t strings_bytes = 0;
  uint64_t checksum = 0;
};

namespace detail {

struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ULL;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  }
};

// zlib's CRC-32 (io/crc32.hpp), continued over consecutive pieces of a file.
struct Crc32 {
  uint32_t c = io::crc32_init();
  void add(const void* data, size_t n) { c = io::crc32(c, data, n); }
};

// Index of the first non-finite value of `n` embeds values of type d, or n.
inline uint64_t first_non_finite(const uint8_t* p, uint64_t n, EmbedsDtype d) {
  for (uint64_t i = 0; i < n; ++i) {
    if (d == EmbedsDtype::f32) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      if (!std::isfinite(v)) return i;
    } else {
      uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      const uint16_t exp = d == EmbedsDtype::f16 ? 0x7c00 : 0x7f80;  // all-ones exponent: inf or NaN
      if ((bits & exp) == exp) return i;
    }
  }
  return n;
}

template <class U>
void put(std::vector<uint8_t>& out, size_t at, U v) {
  std::memcpy(out.data() + at, &v, sizeof v);
}
template <class U>
U get(const uint8_t* p, size_t at) {
  U v;
  std::memcpy(&v, p + at, sizeof v);
  return v;
}

inline std::vector<uint8_t> encode_header(const IndexHeader& h, bool with_checksum) {
  std::vector<uint8_t> b(kIndexHeaderBytes, 0);
  std::memcpy(b.data(), kIndexMagic, 8);
  put<uint32_t>(b, 8, kIndexVersion);
  put<uint32_t>(b, 12, static_cast<uint32_t>(h.kind));
  put<uint64_t>(b, 16, h.count);
  put<uint32_t>(b, 24, h.feat_dim);
  put<uint32_t>(b, 28, static_cast<uint32_t>(h.embeds));
  put<uint32_t>(b, 32, h.tokens);
  put<uint32_t>(b, 36, h.width);
  put<uint64_t>(b, 40, h.fingerprint);
  put<uint64_t>(b, 48, h.strings_bytes);
  put<uint64_t>(b, 56, with_checksum ? h.checksum : 0);
  return b;
}

inline void append_string(std::vector<uint8_t>& out, const std::string& s, const std::string& what) {
  BLIP_CHECK(s.size() <= 0xffffffffu, "index: ", what, " is longer than 4 GiB");
  const uint32_t n = static_cast<uint32_t>(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(&n);
  out.insert(out.end(), p, p + 4);
  out.insert(out.end(), s.begin(), s.end());
}

// a * b (* c) without wrapping, or an error naming the file.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& path) {
  uint64_t r;
  BLIP_CHECK(!__builtin_mul_overflow(a, b, &r), "index '", path, "': header sizes overflow (", a, " x ", b, ")");
  return r;
}
inline uint64_t checked_add(uint64_t a, uint64_t b, const std::string& path) {
  uint64_t r;
  BLIP_CHECK(!__builtin_add_overflow(a, b, &r), "index '", path, "': header sizes overflow");
  return r;
}
inline uint64_t align_up(uint64_t a, const std::string& path) {
  return checked_add(a, (kIndexAlign - a % kIndexAlign) % kIndexAlign, path);
}

}  // namespace detail

// An index file mapped into memory: the features are a tensor over the mapping (a gallery of
// millions costs no copy and shares the page cache), the embeds are decoded by rows on demand.
class FeatureIndex {
 public:
  static FeatureIndex read(const std::string& path) {
    FeatureIndex ix;
    ix.path_ = path;
    ix.map_ = std::make_shared<io::MappedFile>(path, "index");
    const uint8_t* base = ix.map_->data();
    const uint64_t file_size = ix.map_->size();
    BLIP_CHECK(file_size >= kIndexHeaderBytes, "index '", path, "': ", file_size, " bytes, shorter than the ",
               kIndexHeaderBytes, "-byte header (not an index file?)");
    const uint8_t* raw = base;
    BLIP_CHECK(std::memcmp(raw, kIndexMagic, 8) == 0, "index '", path, "': bad magic at byte 0 (not a blip index file)");
    const uint32_t version = detail::get<uint32_t>(raw, 8);
    BLIP_CHECK(version == kIndexVersion, "index '", path, "': format version ", version, " at byte 8; this blip reads version ",
               kIndexVersion, " (rebuild the index with this blip)");
    IndexHeader& h = ix.header_;
    const uint32_t kind = detail::get<uint32_t>(raw, 12);
    BLIP_CHECK(kind == 1 || kind == 2, "index '", path, "': kind ", kind, " at byte 12 is neither 1 (images) nor 2 (texts)");
    h.kind = static_cast<IndexKind>(kind);
    h.count = detail::get<uint64_t>(raw, 16);
    h.feat_dim = detail::get<uint32_t>(raw, 24);
    const uint32_t dtype = detail::get<uint32_t>(raw, 28);
    BLIP_CHECK(dtype <= 3, "index '", path, "': embeds type ", dtype, " at byte 28 is not 0-3");
    h.embeds = static_cast<EmbedsDtype>(dtype);
    h.tokens = detail::get<uint32_t>(raw, 32);
    h.width = detail::get<uint32_t>(raw, 36);
    h.fingerprint = detail::get<uint64_t>(raw, 40);
    h.strings_bytes = detail::get<uint64_t>(raw, 48);
    h.checksum = detail::get<uint64_t>(raw, 56);
    BLIP_CHECK(h.feat_dim > 0 && h.feat_dim <= kMaxFeatDim, "index '", path, "': feature size ", h.feat_dim,
               " at byte 24 is outside 1..", kMaxFeatDim);
    if (h.embeds == EmbedsDtype::none) {
      BLIP_CHECK(h.tokens == 0 && h.width == 0, "index '", path, "': embeds sizes at byte 32 without an embeds type");
    } else {
      BLIP_CHECK(h.kind == IndexKind::images, "index '", path, "': a text index cannot hold image_embeds (byte 28)");
      BLIP_CHECK(h.tokens > 0 && h.tokens <= kMaxTokens && h.width > 0 && h.width <= kMaxWidth, "index '", path,
                 "': embeds size ", h.tokens, " x ", h.width, " at byte 32 is out of range");
    }
    // Every entry takes at least its 4-byte length, so count is bounded by the file before use.
    BLIP_CHECK(h.count <= file_size / 4, "index '", path, "': count ", h.count, " at byte 16 cannot fit in ",
               file_size, " bytes");
    BLIP_CHECK(h.strings_bytes % kIndexAlign == 0, "index '", path, "': the strings section (", h.strings_bytes,
               " bytes, byte 48) does not end on a ", kIndexAlign, "-byte boundary");
    const uint64_t embeds_bytes = detail::checked_mul(
        detail::checked_mul(h.count, uint64_t{h.tokens} * h.width, path), dtype_size(h.embeds), path);
    const uint64_t feats_bytes = detail::checked_mul(h.count, uint64_t{h.feat_dim} * 4, path);
    ix.embeds_offset_ = detail::checked_add(kIndexHeaderBytes, h.strings_bytes, path);
    ix.feats_offset_ = detail::align_up(detail::checked_add(ix.embeds_offset_, embeds_bytes, path), path);
    const uint64_t expected = detail::checked_add(ix.feats_offset_, feats_bytes, path);
    BLIP_CHECK(expected == file_size, "index '", path, "': the header describes ", expected, " bytes (strings ",
               h.strings_bytes, ", embeds ", embeds_bytes, ", features ", feats_bytes, ") but the file has ", file_size,
               " (truncated or corrupt)");

    const uint8_t* strings = base + kIndexHeaderBytes;
    const uint64_t strings_size = h.strings_bytes;
    uint64_t at = 0;
    auto next_string = [&](const std::string& what) {
      BLIP_CHECK(strings_size - at >= 4, "index '", path, "': ", what, " at byte ", kIndexHeaderBytes + at,
                 " runs past the strings section (ends at byte ", ix.embeds_offset_, ")");
      const uint32_t n = detail::get<uint32_t>(strings, static_cast<size_t>(at));
      BLIP_CHECK(strings_size - at - 4 >= n, "index '", path, "': ", what, " at byte ", kIndexHeaderBytes + at,
                 " has length ", n, ", past the end of the strings section (byte ", ix.embeds_offset_, ")");
      std::string s(reinterpret_cast<const char*>(strings + at + 4), n);
      at += 4 + n;
      return s;
    };
    ix.model_ = next_string("the model name");
    ix.root_ = next_string("the root folder");
    ix.entries_.reserve(static_cast<size_t>(h.count));
    for (uint64_t i = 0; i < h.count; ++i) {
      const uint64_t entry_at = kIndexHeaderBytes + at;
      ix.entries_.push_back(next_string(str("entry ", i)));
      // Under a root, an entry is a relative path that stays below it (blip serve's /thumb
      // serves exactly these files).
      const std::string& e = ix.entries_.back();
      BLIP_CHECK(ix.root_.empty() || (!e.empty() && e[0] != '/' && e.find('\0') == std::string::npos &&
                                      ("/" + e + "/").find("/../") == std::string::npos),
                 "index '", path, "': entry ", i, " at byte ", entry_at, " is not a relative path below the root folder");
    }
    for (uint64_t i = at; i < strings_size; ++i)
      BLIP_CHECK(strings[i] == 0 && strings_size - at < kIndexAlign, "index '", path, "': ", strings_size - at,
                 " unused bytes at the end of the strings section (byte ", kIndexHeaderBytes + at, ")");
    // One pass over the file for the checksum (the embeds may be gigabytes); the values are
    // checked once the checksum has shown the bytes are the ones written. (The strings come
    // first: their lengths are checked against the section, and a bad one is named exactly.)
    detail::Crc32 sum;
    const std::vector<uint8_t> zeroed = detail::encode_header(h, false);
    sum.add(zeroed.data(), zeroed.size());
    sum.add(base + kIndexHeaderBytes, static_cast<size_t>(file_size - kIndexHeaderBytes));
    BLIP_CHECK(sum.c == h.checksum, "index '", path, "': checksum mismatch (CRC-32 of the file is ", sum.c,
               ", header byte 56 says ", h.checksum, "): the file is corrupt");

    const uint64_t bad_embed =
        detail::first_non_finite(base + ix.embeds_offset_, embeds_bytes / std::max<size_t>(dtype_size(h.embeds), 1), h.embeds);
    BLIP_CHECK(h.embeds == EmbedsDtype::none || bad_embed * dtype_size(h.embeds) == embeds_bytes, "index '", path,
               "': image_embeds value at byte ", ix.embeds_offset_ + bad_embed * dtype_size(h.embeds), " is not finite");
    const uint64_t bad_feat = detail::first_non_finite(base + ix.feats_offset_, h.count * h.feat_dim, EmbedsDtype::f32);
    BLIP_CHECK(bad_feat == h.count * h.feat_dim, "index '", path, "': feature value at byte ", ix.feats_offset_ + 4 * bad_feat,
               " is not finite");
    // The features in place: the tensor keeps the mapping alive.
    float* feats = reinterpret_cast<float*>(const_cast<uint8_t*>(base + ix.feats_offset_));
    const auto rows = static_cast<int64_t>(h.count), cols = static_cast<int64_t>(h.feat_dim);
    ix.feats_ = Tensor<float, Cpu>(std::shared_ptr<float>(ix.map_, feats), rows * cols, 0, {rows, cols}, {cols, 1});
    return ix;
  }

  const std::string& path() const { return path_; }
  const IndexHeader& header() const { return header_; }
  IndexKind kind() const { return header_.kind; }
  int64_t size() const { return static_cast<int64_t>(header_.count); }
  const std::string& model() const { return model_; }
  // The folder an image index's entries are relative to ("" for a text index).
  const std::string& root() const { return root_; }
  const std::vector<std::string>& entries() const { return entries_; }
  // Entry i as a path to open: root/entry for an image index, the text itself for a text index.
  std::string entry_path(int64_t i) const {
    const std::string& e = entries_.at(static_cast<size_t>(i));
    return root_.empty() || (!e.empty() && e[0] == '/') ? e : root_ + "/" + e;
  }
  // The same index with its images found under another folder (the gallery moved).
  void set_root(std::string root) { root_ = std::move(root); }
  const Tensor<float, Cpu>& feats() const { return feats_; }
  bool has_embeds() const { return header_.embeds != EmbedsDtype::none; }

  // image_embeds [rows.size(), S, W] as float, decoded from the mapping.
  Tensor<float, Cpu> embeds(const std::vector<int64_t>& rows) const {
    BLIP_CHECK(has_embeds(), "index '", path_, "' holds no image_embeds (rebuild it with --embeds f16|bf16|f32)");
    const uint64_t per_row = uint64_t{header_.tokens} * header_.width;
    const size_t esize = dtype_size(header_.embeds);
    Tensor<float, Cpu> out = Tensor<float, Cpu>::empty(
        {static_cast<int64_t>(rows.size()), static_cast<int64_t>(header_.tokens), static_cast<int64_t>(header_.width)});
    for (size_t r = 0; r < rows.size(); ++r) {
      BLIP_CHECK(rows[r] >= 0 && rows[r] < size(), "index '", path_, "': embeds row ", rows[r], " outside [0, ", size(), ")");
      const uint8_t* in = map_->data() + embeds_offset_ + static_cast<uint64_t>(rows[r]) * per_row * esize;
      float* o = out.data() + r * per_row;
      if (header_.embeds == EmbedsDtype::f32) {
        std::memcpy(o, in, per_row * 4);
      } else {
        for (uint64_t i = 0; i < per_row; ++i) {
          const uint16_t bits = detail::get<uint16_t>(in, 2 * i);
          o[i] = header_.embeds == EmbedsDtype::f16 ? static_cast<float>(fp16::from_bits(bits))
                                                    : static_cast<float>(bf16::from_bits(bits));
        }
      }
    }
    return out;
  }

 private:
  std::string path_, model_, root_;
  std::shared_ptr<io::MappedFile> map_;  // the features view it; embeds rows are decoded from it
  IndexHeader header_;
  std::vector<std::string> entries_;
  Tensor<float, Cpu> feats_;
  uint64_t embeds_offset_ = 0, feats_offset_ = 0;
};

// Streams an index to disk: the entries up front, then features (and embeds) batch by batch.
class IndexWriter {
 public:
  IndexWriter(std::string path, IndexKind kind, std::string model, uint64_t fingerprint,
              const std::vector<std::string>& entries, uint32_t feat_dim, EmbedsDtype embeds = EmbedsDtype::none,
              uint32_t tokens = 0, uint32_t width = 0, const std::string& root = {})
      : path_(std::move(path)) {
    BLIP_CHECK(feat_dim > 0 && feat_dim <= kMaxFeatDim, "IndexWriter: feature size ", feat_dim, " out of range");
    BLIP_CHECK(embeds == EmbedsDtype::none || (kind == IndexKind::images && tokens > 0 && tokens <= kMaxTokens &&
                                               width > 0 && width <= kMaxWidth),
               "IndexWriter: embeds need an image index and sizes in range, got ", tokens, " x ", width);
    h_.kind = kind;
    h_.count = entries.size();
    h_.feat_dim = feat_dim;
    h_.embeds = embeds;
    h_.tokens = embeds == EmbedsDtype::none ? 0 : tokens;
    h_.width = embeds == EmbedsDtype::none ? 0 : width;
    h_.fingerprint = fingerprint;
    entries_ = entries;
    std::vector<uint8_t> strings;
    detail::append_string(strings, model, "the model name");
    detail::append_string(strings, root, "the root folder");
    for (size_t i = 0; i < entries.size(); ++i) detail::append_string(strings, entries[i], str("entry ", i));
    strings.resize(static_cast<size_t>(detail::align_up(strings.size(), path_)), 0);
    h_.strings_bytes = strings.size();
    out_ = std::make_unique<io::AtomicFile>(path_);
    const std::vector<uint8_t> header = detail::encode_header(h_, false);
    write(header.data(), header.size());
    write(strings.data(), strings.size());
    feats_.reserve(static_cast<size_t>(h_.count * feat_dim));
  }

  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;

  // Where the model came from (its checkpoint), for the message about non-finite values.
  void set_model_source(std::string source) { model_source_ = std::move(source); }

  // The next rows: features [n, E] and, when the index keeps them, image_embeds [n, S, W].
  // Non-finite values are refused, naming the entry (a damaged model must not make an index
  // that every later search refuses).
  void append(const Tensor<float, Cpu>& feats, const Tensor<float, Cpu>* embeds = nullptr) {
    BLIP_CHECK(feats.dim() == 2 && feats.size(1) == h_.feat_dim, "IndexWriter: features ", feats.shape(),
               " do not have ", h_.feat_dim, " columns");
    const int64_t n = feats.size(0);
    BLIP_CHECK(rows_ + static_cast<uint64_t>(n) <= h_.count, "IndexWriter: more rows than the ", h_.count, " entries");
    const std::vector<float> f = feats.to_vector();
    check_finite(f, h_.feat_dim, "feature");
    std::vector<float> e;
    if (h_.embeds != EmbedsDtype::none) {
      BLIP_CHECK(embeds && embeds->dim() == 3 && embeds->size(0) == n && embeds->size(1) == h_.tokens &&
                     embeds->size(2) == h_.width,
                 "IndexWriter: image_embeds must be [", n, ", ", h_.tokens, ", ", h_.width, "]");
      e = embeds->to_vector();
      check_finite(e, uint64_t{h_.tokens} * h_.width, "image_embeds");
    }
    feats_.insert(feats_.end(), f.begin(), f.end());
    if (h_.embeds == EmbedsDtype::f32) {
      write(e.data(), e.size() * 4);
    } else if (h_.embeds != EmbedsDtype::none) {
      std::vector<uint16_t> half(e.size());
      for (size_t i = 0; i < e.size(); ++i) half[i] = h_.embeds == EmbedsDtype::f16 ? fp16(e[i]).bits : bf16(e[i]).bits;
      const auto* bytes = reinterpret_cast<const uint8_t*>(half.data());
      const uint64_t bad = detail::first_non_finite(bytes, half.size(), h_.embeds);
      const uint64_t row = rows_ + bad / (uint64_t{h_.tokens} * h_.width);
      BLIP_CHECK(bad == half.size(), "IndexWriter: image_embeds of entry ", row, " ('",
                 entries_[static_cast<size_t>(std::min(row, h_.count - 1))], "') overflow the embeds type (use --embeds f32)");
      write(half.data(), half.size() * 2);
    }
    rows_ += static_cast<uint64_t>(n);
  }

  void finish() {
    BLIP_CHECK(rows_ == h_.count, "IndexWriter: ", rows_, " rows appended for ", h_.count, " entries");
    const uint64_t embeds_end = kIndexHeaderBytes + h_.strings_bytes +
                                h_.count * uint64_t{h_.tokens} * h_.width * dtype_size(h_.embeds);
    const std::vector<uint8_t> pad(static_cast<size_t>(detail::align_up(embeds_end, path_) - embeds_end), 0);
    write(pad.data(), pad.size());
    write(feats_.data(), feats_.size() * 4);
    h_.checksum = sum_.c;
    const std::vector<uint8_t> header = detail::encode_header(h_, true);
    out_->write_at(56, header.data() + 56, 8);
    out_->commit();
  }

 private:
  void write(const void* data, size_t n) {
    sum_.add(data, n);
    out_->write(data, n);
  }

  void check_finite(const std::vector<float>& v, uint64_t per_row, const char* what) const {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) {
        const uint64_t row = rows_ + i / per_row;
        fail("index '", path_, "': the model", model_source_.empty() ? "" : " of checkpoint '" + model_source_ + "'",
             " gives a non-finite ", what, " value for entry ", row, " ('", entries_[static_cast<size_t>(row)],
             "'): are its weights damaged or diverged?");
      }
  }

  std::string path_, model_source_;
  IndexHeader h_;
  std::vector<std::string> entries_;
  std::vector<float> feats_;
  std::unique_ptr<io::AtomicFile> out_;  // removes its temporary unless finish() commits it
  detail::Crc32 sum_;
  uint64_t rows_ = 0;
};

}  // namespace blip::search
