// blip/io/zip_archive.hpp — reading zip archives (libzip) over a memory-mapped file.
//
// Contract: ZipArchive opens the mapped bytes with libzip (consistency checks on) and lists
// the entries in central-directory order. read(name, max_bytes) returns an entry's bytes,
// refusing entries larger than max_bytes before allocating; stored_data(entry) points at a
// STORED (uncompressed) entry's bytes inside the mapping, with no copy. Every failure throws
// blip::Error naming the file and, where one is involved, the entry. Every entry read is
// CRC-checked: compressed ones by libzip as they inflate, STORED ones by stored_data() (io/crc32.hpp
// over the mapping, once per call: call it once per entry, or once for all of them, which splits
// the work over the threads), as Python's zipfile does.
#pragma once

#include <zip.h>

#include <cstdio>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "blip/backend/cpu/byte_shares.hpp"
#include "blip/core/error.hpp"
#include "blip/io/crc32.hpp"
#include "blip/io/mapped_file.hpp"

namespace blip::io {

struct ZipEntry {
  std::string name;
  uint64_t index = 0;            // libzip's index (central-directory order)
  uint64_t size = 0;             // uncompressed bytes
  uint64_t compressed_size = 0;
  bool stored = false;           // method STORE and not encrypted: the bytes lie in the file as they are
  uint64_t data_offset = 0;      // file offset of the first data byte (stored entries only)
  uint32_t crc = 0;              // CRC-32 of the uncompressed bytes, from the central directory
};

class ZipArchive {
 public:
  explicit ZipArchive(std::string path) : ZipArchive(std::make_shared<const MappedFile>(std::move(path))) {}
  explicit ZipArchive(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t* src = zip_source_buffer_create(file_->data(), file_->size(), 0, &err);
    if (src) zip_ = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!zip_) {
      const std::string reason = zip_error_strerror(&err);
      if (src) zip_source_free(src);
      zip_error_fini(&err);
      fail("zip: '", path(), "' (", file_->size(), " bytes) is not a readable zip archive: ", reason);
    }
    zip_error_fini(&err);
    try {
      list_entries();
      locate_stored_data();
    } catch (...) {
      zip_discard(zip_);
      throw;
    }
  }
  ~ZipArchive() { zip_discard(zip_); }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  // A quick test of the first bytes: a local file header or an empty archive's end record.
  static bool looks_like_zip(const uint8_t* data, uint64_t size) {
    return size >= 4 && data[0] == 'P' && data[1] == 'K' &&
           ((data[2] == 3 && data[3] == 4) || (data[2] == 5 && data[3] == 6));
  }

  const std::string& path() const { return file_->path(); }
  const MappedFile& file() const { return *file_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }
  const ZipEntry& entry(const std::string& name) const {
    const ZipEntry* e = find(name);
    BLIP_CHECK(e, "zip: '", path(), "' has no entry '", name, "'");
    return *e;
  }

  // The bytes of STORED entries inside the mapping, each CRC-checked: all of them in one pass
  // split by bytes over the threads (the CRC of an entry cut between threads is joined with
  // zlib's crc32_combine), since a checkpoint's entries are ~1,000 tensors of 1-100 MB.
  std::vector<const uint8_t*> stored_data(std::span<const ZipEntry* const> entries) const {
    std::vector<uint64_t> sizes(entries.size());
    uint64_t total = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      const ZipEntry& e = *entries[i];
      BLIP_CHECK(e.stored, "zip: '", path(), "' entry '", e.name, "' is compressed or encrypted, not stored");
      total += sizes[i] = e.size;
    }
    // Each entry has at most one piece per share; the slots are allocated before the parallel pass.
    const int shares = cpu::byte_share_count(total);
    const size_t slots = static_cast<size_t>(shares);
    std::vector<uint32_t> piece_crc(entries.size() * slots, 0);
    std::vector<uint64_t> piece_length(entries.size() * slots, 0);
    cpu::for_byte_shares(sizes.data(), sizes.size(), shares, [&](int share, size_t i, uint64_t offset, uint64_t length) {
      const uint8_t* p = file_->data() + entries[i]->data_offset + offset;
      piece_crc[i * slots + static_cast<size_t>(share)] = crc32(crc32_init(), p, static_cast<size_t>(length));
      piece_length[i * slots + static_cast<size_t>(share)] = length;
    });
    std::vector<uint32_t> crc(entries.size(), crc32_init());
    for (size_t i = 0; i < entries.size(); ++i)
      for (size_t share = 0; share < slots; ++share)
        if (piece_length[i * slots + share] > 0)
          crc[i] = crc32_join(crc[i], piece_crc[i * slots + share], piece_length[i * slots + share]);
    std::vector<const uint8_t*> out(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      const ZipEntry& e = *entries[i];
      BLIP_CHECK(crc[i] == e.crc, "zip: '", path(), "' entry '", e.name, "' (", e.size, " bytes from byte ",
                 e.data_offset, ") has CRC-32 ", hex32(crc[i]), " but the archive records ", hex32(e.crc),
                 ": the file is corrupt");
      out[i] = file_->data() + e.data_offset;
    }
    return out;
  }
  const uint8_t* stored_data(const ZipEntry& e) const {
    const ZipEntry* one = &e;
    return stored_data(std::span(&one, 1))[0];
  }

  std::vector<uint8_t> read(const std::string& name, uint64_t max_bytes) const {
    const ZipEntry& e = entry(name);
    BLIP_CHECK(e.size <= max_bytes, "zip: '", path(), "' entry '", name, "' is ", e.size, " bytes, more than the ",
               max_bytes, " allowed");
    if (e.stored) {
      const uint8_t* p = stored_data(e);
      return std::vector<uint8_t>(p, p + e.size);
    }
    // Deflate expands at most 1032:1, so a larger declared size is a lie; refuse it before allocating.
    BLIP_CHECK(e.size <= e.compressed_size * 1032 + 64, "zip: '", path(), "' entry '", name, "' claims ", e.size,
               " bytes from ", e.compressed_size, " compressed bytes");
    std::vector<uint8_t> out(e.size);
    zip_file_t* f = zip_fopen_index(zip_, e.index, 0);
    BLIP_CHECK(f, "zip: '", path(), "' entry '", name, "' cannot be opened: ", zip_strerror(zip_));
    uint64_t got = 0;
    while (got < e.size) {
      const zip_int64_t n = zip_fread(f, out.data() + got, e.size - got);
      if (n <= 0) {
        const std::string reason = n < 0 ? zip_file_strerror(f) : "unexpected end of data";
        zip_fclose(f);
        fail("zip: '", path(), "' entry '", name, "' cannot be read after ", got, " of ", e.size, " bytes: ", reason);
      }
      got += static_cast<uint64_t>(n);
    }
    char extra = 0;  // the entry must end where its size says (libzip checks the CRC there)
    const zip_int64_t tail = zip_fread(f, &extra, 1);
    zip_fclose(f);
    BLIP_CHECK(tail == 0, "zip: '", path(), "' entry '", name, "' does not end at its declared size ", e.size);
    return out;
  }

 private:
  static std::string hex32(uint32_t v) {
    char b[11];
    std::snprintf(b, sizeof b, "0x%08x", v);
    return b;
  }
  static uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
  static uint32_t le32(const uint8_t* p) { return le16(p) | (static_cast<uint32_t>(le16(p + 2)) << 16); }
  static uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

  void list_entries() {
    const zip_int64_t n = zip_get_num_entries(zip_, 0);
    BLIP_CHECK(n >= 0, "zip: '", path(), "' has no readable entry count");
    entries_.reserve(static_cast<size_t>(n));
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      BLIP_CHECK(zip_stat_index(zip_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW, &st) == 0, "zip: '", path(),
                 "' entry #", i, " cannot be read: ", zip_strerror(zip_));
      const zip_uint64_t need = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_CRC;
      BLIP_CHECK((st.valid & need) == need, "zip: '", path(), "' entry #", i, " lacks a name, size, method or CRC");
      ZipEntry e;
      e.name = st.name;
      e.index = static_cast<uint64_t>(i);
      e.size = st.size;
      e.compressed_size = st.comp_size;
      e.crc = st.crc;
      const bool encrypted = (st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE;
      e.stored = st.comp_method == ZIP_CM_STORE && !encrypted;
      by_name_.emplace(e.name, entries_.size());
      entries_.push_back(std::move(e));
    }
  }

  // libzip 1.7.3 exposes no entry offsets, so the central directory is walked here for the local
  // header offsets only; libzip has validated the structure already and every record read here
  // is bounds-checked and must agree with libzip's listing.
  void locate_stored_data() {
    const uint8_t* d = file_->data();
    const uint64_t size = file_->size();
    auto need = [&](uint64_t at, uint64_t len, const char* what) {
      BLIP_CHECK(at <= size && len <= size - at, "zip: '", path(), "' ", what, " at byte ", at, " runs past the end (",
                 size, " bytes)");
    };
    auto bad = [&](uint64_t at, const char* what) { fail("zip: '", path(), "' has no valid ", what, " at byte ", at); };
    // End of central directory: the last signature whose record (and comment) fits in the file.
    need(0, 22, "end of central directory");
    uint64_t eocd = size - 22;
    const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    while (!(le32(d + eocd) == 0x06054b50 && eocd + 22 + le16(d + eocd + 20) <= size)) {
      if (eocd == lowest) bad(size, "end of central directory record");
      --eocd;
    }
    uint64_t count = le16(d + eocd + 10), cd = le32(d + eocd + 16);
    if (count == 0xffff || cd == 0xffffffffu || le32(d + eocd + 12) == 0xffffffffu) {  // zip64
      if (eocd < 20 || le32(d + eocd - 20) != 0x07064b50) bad(eocd, "zip64 end of central directory locator");
      const uint64_t rec = le64(d + eocd - 20 + 8);
      need(rec, 56, "zip64 end of central directory record");
      if (le32(d + rec) != 0x06064b50) bad(rec, "zip64 end of central directory record");
      count = le64(d + rec + 32);
      cd = le64(d + rec + 48);
    }
    BLIP_CHECK(count == entries_.size(), "zip: '", path(), "' central directory at byte ", cd, " lists ", count,
               " entries but libzip read ", entries_.size());
    uint64_t at = cd;
    for (ZipEntry& e : entries_) {
      need(at, 46, "central directory record");
      if (le32(d + at) != 0x02014b50) bad(at, "central directory record");
      const uint64_t name_len = le16(d + at + 28), extra_len = le16(d + at + 30), comment_len = le16(d + at + 32);
      need(at, 46 + name_len + extra_len + comment_len, "central directory record");
      const std::string name(reinterpret_cast<const char*>(d + at + 46), name_len);
      BLIP_CHECK(name == e.name, "zip: '", path(), "' central directory record at byte ", at, " names '", name,
                 "' where libzip has '", e.name, "'");
      uint64_t comp = le32(d + at + 20), local = le32(d + at + 42);
      const bool big_size = le32(d + at + 24) == 0xffffffffu;
      for (uint64_t x = at + 46 + name_len, end = x + extra_len; x + 4 <= end;) {
        const uint64_t id = le16(d + x), len = le16(d + x + 2);
        BLIP_CHECK(x + 4 + len <= end, "zip: '", path(), "' entry '", e.name, "' has a malformed extra field at byte ", x);
        if (id == 0x0001) {  // zip64: the 64-bit values, in this order, of the fields set to 0xffffffff
          uint64_t y = x + 4;
          auto next = [&]() {
            BLIP_CHECK(y + 8 <= x + 4 + len, "zip: '", path(), "' entry '", e.name, "' has a short zip64 field at byte ", x);
            y += 8;
            return le64(d + y - 8);
          };
          if (big_size) (void)next();
          if (comp == 0xffffffffu) comp = next();
          if (local == 0xffffffffu) local = next();
        }
        x += 4 + len;
      }
      BLIP_CHECK(comp == e.compressed_size, "zip: '", path(), "' entry '", e.name, "' has compressed size ", comp,
                 " in the central directory but ", e.compressed_size, " in libzip");
      if (e.stored) {
        need(local, 30, "local file header");
        if (le32(d + local) != 0x04034b50) bad(local, str("local file header for entry '", e.name, "'").c_str());
        const uint64_t data = local + 30 + le16(d + local + 26) + le16(d + local + 28);
        BLIP_CHECK(e.size == e.compressed_size && data <= size && e.size <= size - data, "zip: '", path(), "' entry '",
                   e.name, "' (", e.size, " bytes from byte ", data, ") runs past the end of the file (", size, " bytes)");
        e.data_offset = data;
      }
      at += 46 + name_len + extra_len + comment_len;
    }
  }

  std::shared_ptr<const MappedFile> file_;
  zip_t* zip_ = nullptr;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace blip::io
