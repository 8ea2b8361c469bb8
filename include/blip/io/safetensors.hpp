// blip/io/safetensors.hpp — reading safetensors files (memory-mapped, validated).
//
// Contract: SafeTensorsFile(path) maps the file (copy-on-write, io/mapped_file.hpp) and validates the whole header before any
// tensor is read: an 8-byte little-endian header length inside the file, a JSON object whose
// entries have a known dtype, non-negative shape, and data_offsets [begin, end) that lie inside
// the data section, agree with dtype x shape, and do not overlap. Any violation throws
// blip::Error naming the file, the key and the byte offsets. load<T>(name) converts
// F32/F64/F16/BF16/I64/I32/U8/BOOL into T through io/tensor_bytes.hpp (integers into floats
// and back only where exact types ask); a tensor already of type T is a view of the mapping,
// which keeps the mapping alive after the SafeTensorsFile is gone.
// `__metadata__` is kept as a string map. The header's JSON may nest at most kMaxJsonDepth levels
// (io/json_text.hpp); messages quote header values cut short.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "blip/core/tensor.hpp"
#include "blip/io/json_text.hpp"
#include "blip/io/mapped_file.hpp"
#include "blip/io/tensor_bytes.hpp"

namespace blip::io {

struct SafeTensorsEntry {
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the first data byte
};

class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(std::string path) : path_(path), file_(open_file(std::move(path))) {
    base_ = file_->data();
    size_ = file_->size();
    parse_header();
  }
  // Parses an in-memory image of a file (a copy is kept); `name` stands for the path in errors.
  SafeTensorsFile(const uint8_t* bytes, size_t size, std::string name)
      : path_(name), file_(std::make_shared<const MappedFile>(bytes, size, std::move(name))) {
    base_ = file_->data();
    size_ = file_->size();
    parse_header();
  }
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, SafeTensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  // The TensorSource interface (io/tensor_source.hpp): names in sorted order.
  std::vector<std::string> keys() const {
    std::vector<std::string> names;
    for (const auto& [name, e] : entries_) names.push_back(name);
    return names;
  }
  const Shape& shape(const std::string& name) const { return entry(name).shape; }
  const std::string& dtype(const std::string& name) const { return entry(name).dtype; }
  const SafeTensorsEntry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    BLIP_CHECK(it != entries_.end(), "safetensors: '", path_, "' has no tensor '", name, "'");
    return it->second;
  }

  template <Element T>
  Tensor<T, Cpu> load(const std::string& name) const {
    const SafeTensorsEntry& e = entry(name);
    // In place (a view of the mapping, which the tensor keeps alive) when already of type T.
    return tensor_from_bytes<T>(base_ + data_start_ + e.begin, e.dtype, e.shape, contiguous_strides(e.shape),
                                str("safetensors: '", path_, "' tensor '", name, "'"), file_);
  }

 private:
  static std::shared_ptr<const MappedFile> open_file(std::string path) {
    try {
      return std::make_shared<const MappedFile>(std::move(path));
    } catch (const Error& e) {
      fail("safetensors: ", e.what());
    }
  }

  void parse_header() {
    BLIP_CHECK(size_ >= 8, "safetensors: '", path_, "' is ", size_, " bytes, too short for the 8-byte header length");
    uint64_t header_len = 0;
    std::memcpy(&header_len, base_, 8);
    BLIP_CHECK(header_len <= size_ - 8, "safetensors: '", path_, "' header length ", header_len,
               " at byte 0 runs past the end of the file (", size_, " bytes)");
    data_start_ = 8 + header_len;
    const uint64_t data_size = size_ - data_start_;
    const nlohmann::json header =
        parse_json_text(std::string_view(reinterpret_cast<const char*>(base_ + 8), header_len),
                        str("safetensors: '", path_, "' header (bytes 8..", data_start_, ", offsets from byte 8)"));
    BLIP_CHECK(header.is_object(), "safetensors: '", path_, "' header is not a JSON object");
    std::vector<std::pair<uint64_t, std::string>> spans;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& key = it.key();
      const nlohmann::json& v = it.value();
      if (key == "__metadata__") {
        BLIP_CHECK(v.is_object(), "safetensors: '", path_, "' __metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m)  // non-strings are kept as their JSON text
          metadata_[m.key()] = m.value().is_string()
                                   ? m.value().get<std::string>()
                                   : m.value().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        continue;
      }
      BLIP_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets") &&
                     v["dtype"].is_string() && v["shape"].is_array() && v["data_offsets"].is_array() &&
                     v["data_offsets"].size() == 2,
                 "safetensors: '", path_, "' entry '", key, "' needs dtype, shape and data_offsets [begin, end]");
      SafeTensorsEntry e;
      e.dtype = v["dtype"].get<std::string>();
      const size_t item = safetensors_dtype_size(e.dtype);
      BLIP_CHECK(item > 0, "safetensors: '", path_, "' entry '", key, "' has unknown dtype '", e.dtype, "'");
      uint64_t count = 1;
      for (const auto& d : v["shape"]) {
        BLIP_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, "safetensors: '", path_, "' entry '", key,
                   "' has an invalid shape ", json_excerpt(v["shape"]));
        const uint64_t extent = d.get<uint64_t>();
        BLIP_CHECK(extent == 0 || count <= data_size / extent, "safetensors: '", path_, "' entry '", key,
                   "' shape ", json_excerpt(v["shape"]), " needs more bytes than the file holds");
        count *= extent;
        e.shape.push_back(static_cast<int64_t>(extent));
      }
      for (const auto& o : v["data_offsets"])
        BLIP_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), "safetensors: '",
                   path_, "' entry '", key, "' has invalid data_offsets ", json_excerpt(v["data_offsets"]));
      e.begin = v["data_offsets"][0].get<uint64_t>();
      e.end = v["data_offsets"][1].get<uint64_t>();
      BLIP_CHECK(e.begin <= e.end && e.end <= data_size, "safetensors: '", path_, "' entry '", key,
                 "' data_offsets [", e.begin, ", ", e.end, ") lie outside the data section of ", data_size,
                 " bytes (file offset ", data_start_, ")");
      BLIP_CHECK(e.end - e.begin == count * item, "safetensors: '", path_, "' entry '", key, "' holds ",
                 e.end - e.begin, " bytes but dtype ", e.dtype, " x shape ", e.shape, " needs ", count * item);
      if (e.end > e.begin) spans.emplace_back(e.begin, key);
      entries_[key] = std::move(e);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      const SafeTensorsEntry& prev = entries_[spans[i - 1].second];
      BLIP_CHECK(spans[i].first >= prev.end, "safetensors: '", path_, "' entries '", spans[i - 1].second, "' and '",
                 spans[i].second, "' overlap at data offset ", spans[i].first);
    }
  }

  std::string path_;
  std::shared_ptr<const MappedFile> file_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;
  std::map<std::string, SafeTensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace blip::io
