// blip/search/feature_index.hpp — the index file of `blip index` / `blip search`: a gallery's
// entries (image paths or texts) with their image_feat / text_feat rows and, optionally, the
// images' image_embeds for ITM re-ranking.
//
// Format, version 1, little-endian:
//   [0, 64)  header: "BLIPIDX\0", u32 version, u32 kind (1 images, 2 texts), u64 count N,
//            u32 feat_dim E, u32 embeds dtype (0 none, 1 f32, 2 f16, 3 bf16), u32 tokens S,
//            u32 width W, u64 model fingerprint, u64 strings_bytes, u64 checksum
//   strings  u32 length + bytes: the model name, then the N entries
//   embeds   N x S x W values of the embeds dtype (absent when none)
//   feats    N x E float32, L2-normalised rows
// The checksum is FNV-1a 64 over the header (checksum field as zero), strings and feats; the
// embeds section is checked by size only (it is read row by row, never whole). Readers check the
// magic, version, kind, dtype, every size against the file's size (overflow-safe, before any
// allocation), every string's length, the checksum and that features are finite; each error
// names the file and the byte offset. IndexWriter streams embeds batch by batch (a gallery's
// embeds can be gigabytes), writes to PATH.tmp and renames it into place on finish().
#pragma once

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "blip/core/dtype.hpp"
#include "blip/core/tensor.hpp"

namespace blip::search {

static_assert(std::endian::native == std::endian::little, "the index format is little-endian");

enum class IndexKind : uint32_t { images = 1, texts = 2 };
enum class EmbedsDtype : uint32_t { none = 0, f32 = 1, f16 = 2, bf16 = 3 };

inline const char* kind_name(IndexKind k) { return k == IndexKind::images ? "images" : "texts"; }
inline size_t dtype_size(EmbedsDtype d) { return d == EmbedsDtype::none ? 0 : d == EmbedsDtype::f32 ? 4 : 2; }
inline EmbedsDtype parse_embeds_dtype(const std::string& s) {
  if (s == "none") return EmbedsDtype::none;
  if (s == "f32") return EmbedsDtype::f32;
  if (s == "f16") return EmbedsDtype::f16;
  if (s == "bf16") return EmbedsDtype::bf16;
  fail("index: unknown embeds type '", s, "' (use none, f16, bf16 or f32)");
}

inline constexpr char kIndexMagic[8] = {'B', 'L', 'I', 'P', 'I', 'D', 'X', '\0'};
inline constexpr uint32_t kIndexVersion = 1;
inline constexpr size_t kIndexHeaderBytes = 64;
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

}  // namespace detail

// An index read into memory, except the embeds (read on demand by rows).
class FeatureIndex {
 public:
  static FeatureIndex read(const std::string& path) {
    FeatureIndex ix;
    ix.path_ = path;
    std::ifstream in(path, std::ios::binary);
    BLIP_CHECK(in.good(), "index: cannot open '", path, "'");
    std::error_code ec;
    const uint64_t file_size = std::filesystem::file_size(path, ec);
    BLIP_CHECK(!ec, "index: cannot stat '", path, "': ", ec.message());
    BLIP_CHECK(file_size >= kIndexHeaderBytes, "index '", path, "': ", file_size, " bytes, shorter than the ",
               kIndexHeaderBytes, "-byte header (not an index file?)");
    uint8_t raw[kIndexHeaderBytes];
    in.read(reinterpret_cast<char*>(raw), kIndexHeaderBytes);
    BLIP_CHECK(in.good(), "index '", path, "': cannot read the header");
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
    const uint64_t embeds_bytes = detail::checked_mul(
        detail::checked_mul(h.count, uint64_t{h.tokens} * h.width, path), dtype_size(h.embeds), path);
    const uint64_t feats_bytes = detail::checked_mul(h.count, uint64_t{h.feat_dim} * 4, path);
    ix.embeds_offset_ = detail::checked_add(kIndexHeaderBytes, h.strings_bytes, path);
    ix.feats_offset_ = detail::checked_add(ix.embeds_offset_, embeds_bytes, path);
    const uint64_t expected = detail::checked_add(ix.feats_offset_, feats_bytes, path);
    BLIP_CHECK(expected == file_size, "index '", path, "': the header describes ", expected, " bytes (strings ",
               h.strings_bytes, ", embeds ", embeds_bytes, ", features ", feats_bytes, ") but the file has ", file_size,
               " (truncated or corrupt)");

    detail::Fnv1a sum;
    const std::vector<uint8_t> zeroed = detail::encode_header(h, false);
    sum.add(zeroed.data(), zeroed.size());
    std::vector<uint8_t> strings(static_cast<size_t>(h.strings_bytes));
    in.read(reinterpret_cast<char*>(strings.data()), static_cast<std::streamsize>(strings.size()));
    BLIP_CHECK(in.good(), "index '", path, "': cannot read the strings at byte ", kIndexHeaderBytes);
    sum.add(strings.data(), strings.size());
    size_t at = 0;
    auto next_string = [&](const std::string& what) {
      BLIP_CHECK(strings.size() - at >= 4, "index '", path, "': ", what, " at byte ", kIndexHeaderBytes + at,
                 " runs past the strings section (ends at byte ", ix.embeds_offset_, ")");
      const uint32_t n = detail::get<uint32_t>(strings.data(), at);
      BLIP_CHECK(strings.size() - at - 4 >= n, "index '", path, "': ", what, " at byte ", kIndexHeaderBytes + at,
                 " has length ", n, ", past the end of the strings section (byte ", ix.embeds_offset_, ")");
      std::string s(reinterpret_cast<const char*>(strings.data() + at + 4), n);
      at += 4 + n;
      return s;
    };
    ix.model_ = next_string("the model name");
    ix.entries_.reserve(static_cast<size_t>(h.count));
    for (uint64_t i = 0; i < h.count; ++i) ix.entries_.push_back(next_string(str("entry ", i)));
    BLIP_CHECK(at == strings.size(), "index '", path, "': ", strings.size() - at,
               " unused bytes at the end of the strings section (byte ", kIndexHeaderBytes + at, ")");

    ix.feats_ = Tensor<float, Cpu>::empty({static_cast<int64_t>(h.count), static_cast<int64_t>(h.feat_dim)});
    in.seekg(static_cast<std::streamoff>(ix.feats_offset_));
    in.read(reinterpret_cast<char*>(ix.feats_.data()), static_cast<std::streamsize>(feats_bytes));
    BLIP_CHECK(in.good(), "index '", path, "': cannot read the features at byte ", ix.feats_offset_);
    sum.add(ix.feats_.data(), static_cast<size_t>(feats_bytes));
    BLIP_CHECK(sum.h == h.checksum, "index '", path, "': checksum mismatch (header byte 56): the file is corrupt");
    const float* f = ix.feats_.data();
    for (uint64_t i = 0; i < h.count * h.feat_dim; ++i)
      BLIP_CHECK(std::isfinite(f[i]), "index '", path, "': feature value at byte ", ix.feats_offset_ + 4 * i,
                 " is not finite");
    return ix;
  }

  const std::string& path() const { return path_; }
  const IndexHeader& header() const { return header_; }
  IndexKind kind() const { return header_.kind; }
  int64_t size() const { return static_cast<int64_t>(header_.count); }
  const std::string& model() const { return model_; }
  const std::vector<std::string>& entries() const { return entries_; }
  const Tensor<float, Cpu>& feats() const { return feats_; }
  bool has_embeds() const { return header_.embeds != EmbedsDtype::none; }

  // image_embeds [rows.size(), S, W] as float, read from the file.
  Tensor<float, Cpu> embeds(const std::vector<int64_t>& rows) const {
    BLIP_CHECK(has_embeds(), "index '", path_, "' holds no image_embeds (rebuild it with --embeds f16|bf16|f32)");
    const uint64_t per_row = uint64_t{header_.tokens} * header_.width;
    const size_t esize = dtype_size(header_.embeds);
    Tensor<float, Cpu> out = Tensor<float, Cpu>::empty(
        {static_cast<int64_t>(rows.size()), static_cast<int64_t>(header_.tokens), static_cast<int64_t>(header_.width)});
    std::ifstream in(path_, std::ios::binary);
    BLIP_CHECK(in.good(), "index: cannot reopen '", path_, "'");
    std::vector<uint8_t> buf(static_cast<size_t>(per_row * esize));
    for (size_t r = 0; r < rows.size(); ++r) {
      BLIP_CHECK(rows[r] >= 0 && rows[r] < size(), "index '", path_, "': embeds row ", rows[r], " outside [0, ", size(), ")");
      const uint64_t offset = embeds_offset_ + static_cast<uint64_t>(rows[r]) * per_row * esize;
      in.seekg(static_cast<std::streamoff>(offset));
      in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
      BLIP_CHECK(in.good(), "index '", path_, "': cannot read embeds row ", rows[r], " at byte ", offset);
      float* o = out.data() + r * per_row;
      if (header_.embeds == EmbedsDtype::f32) {
        std::memcpy(o, buf.data(), buf.size());
      } else {
        for (uint64_t i = 0; i < per_row; ++i) {
          const uint16_t bits = detail::get<uint16_t>(buf.data(), 2 * i);
          o[i] = header_.embeds == EmbedsDtype::f16 ? static_cast<float>(fp16::from_bits(bits))
                                                    : static_cast<float>(bf16::from_bits(bits));
        }
      }
    }
    return out;
  }

 private:
  std::string path_, model_;
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
              uint32_t tokens = 0, uint32_t width = 0)
      : path_(std::move(path)), tmp_(path_ + ".tmp") {
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
    detail::append_string(strings_, model, "the model name");
    for (size_t i = 0; i < entries.size(); ++i) detail::append_string(strings_, entries[i], str("entry ", i));
    h_.strings_bytes = strings_.size();
    out_.open(tmp_, std::ios::binary | std::ios::trunc);
    BLIP_CHECK(out_.good(), "index: cannot create '", tmp_, "'");
    const std::vector<uint8_t> header = detail::encode_header(h_, false);
    write(header.data(), header.size());
    write(strings_.data(), strings_.size());
    feats_.reserve(static_cast<size_t>(h_.count * feat_dim));
  }

  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;
  ~IndexWriter() {
    if (!finished_) {
      out_.close();
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  // The next rows: features [n, E] and, when the index keeps them, image_embeds [n, S, W].
  void append(const Tensor<float, Cpu>& feats, const Tensor<float, Cpu>* embeds = nullptr) {
    BLIP_CHECK(feats.dim() == 2 && feats.size(1) == h_.feat_dim, "IndexWriter: features ", feats.shape(),
               " do not have ", h_.feat_dim, " columns");
    const int64_t n = feats.size(0);
    BLIP_CHECK(rows_ + static_cast<uint64_t>(n) <= h_.count, "IndexWriter: more rows than the ", h_.count, " entries");
    const std::vector<float> f = feats.to_vector();
    feats_.insert(feats_.end(), f.begin(), f.end());
    if (h_.embeds != EmbedsDtype::none) {
      BLIP_CHECK(embeds && embeds->dim() == 3 && embeds->size(0) == n && embeds->size(1) == h_.tokens &&
                     embeds->size(2) == h_.width,
                 "IndexWriter: image_embeds must be [", n, ", ", h_.tokens, ", ", h_.width, "]");
      const std::vector<float> e = embeds->to_vector();
      if (h_.embeds == EmbedsDtype::f32) {
        write(e.data(), e.size() * 4);
      } else {
        std::vector<uint16_t> half(e.size());
        for (size_t i = 0; i < e.size(); ++i)
          half[i] = h_.embeds == EmbedsDtype::f16 ? fp16(e[i]).bits : bf16(e[i]).bits;
        write(half.data(), half.size() * 2);
      }
    }
    rows_ += static_cast<uint64_t>(n);
  }

  void finish() {
    BLIP_CHECK(rows_ == h_.count, "IndexWriter: ", rows_, " rows appended for ", h_.count, " entries");
    write(feats_.data(), feats_.size() * 4);
    detail::Fnv1a sum;
    const std::vector<uint8_t> zeroed = detail::encode_header(h_, false);
    sum.add(zeroed.data(), zeroed.size());
    sum.add(strings_.data(), strings_.size());
    sum.add(feats_.data(), feats_.size() * 4);
    h_.checksum = sum.h;
    const std::vector<uint8_t> header = detail::encode_header(h_, true);
    out_.seekp(0);
    write(header.data(), header.size());
    out_.close();
    BLIP_CHECK(out_.good(), "index: writing '", tmp_, "' failed");
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    BLIP_CHECK(!ec, "index: cannot move '", tmp_, "' to '", path_, "': ", ec.message());
    finished_ = true;
  }

 private:
  void write(const void* data, size_t n) {
    out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    BLIP_CHECK(out_.good(), "index: writing '", tmp_, "' failed (disk full?)");
  }

  std::string path_, tmp_;
  IndexHeader h_;
  std::vector<uint8_t> strings_;
  std::vector<float> feats_;
  std::ofstream out_;
  uint64_t rows_ = 0;
  bool finished_ = false;
};

}  // namespace blip::search
