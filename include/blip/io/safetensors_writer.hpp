// blip/io/safetensors_writer.hpp — writing safetensors files, streamed and atomic.
//
// Contract: write_safetensors(path, tensors, metadata) writes the header first (from each
// entry's name, dtype and shape; padded with spaces to a multiple of 8 bytes, as Python's
// safetensors does), then each tensor's bytes in entry order, contiguous from offset 0. Each
// entry's load() is called only when its bytes are due and its result is written in chunks, so
// at most one source tensor plus one chunk is in memory (plus the source gathered row-major when
// it is a non-contiguous view). Stored dtypes: F32, F16, BF16, F64 from any floating tensor; I64,
// I32 from any integer tensor; U8 and BOOL (0/1 only) from U8 tensors.
// Floating <-> integer conversion is refused. Names must be unique and not `__metadata__`;
// `metadata` becomes `__metadata__` (string values). The file appears atomically (AtomicFile):
// on any error nothing is left under `path` and a previous file there is untouched.
#pragma once

#include <bit>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "blip/io/atomic_file.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/state_dict.hpp"
#include "blip/ops/view.hpp"

namespace blip::io {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian; blip writes native bytes");

struct TensorToWrite {
  std::string name;
  std::string dtype;  // stored dtype
  Shape shape;
  std::function<AnyTensor()> load;  // called once, when the tensor's bytes are written
};

namespace detail {

// Element conversion and layout through tensor_bytes' convert_run / gather on raw memory, not
// through tensor ops: this runs for 7 x 7 type pairs in every translation unit that includes the
// writer, and contiguous() / cast<>() of tensors instantiated the op machinery for each type
// (~1 s of each unit's compile time).
template <Element U>
void write_as(AtomicFile& file, const AnyTensor& any) {
  std::visit([&](const auto& x) {
    using S = typename std::decay_t<decltype(x)>::value_type;
    const auto* bytes = reinterpret_cast<const uint8_t*>(x.data());
    const int64_t total = x.numel();
    if (!x.is_contiguous()) {  // rare in a state dict: gathered whole
      std::vector<U> gathered(static_cast<size_t>(total));
      detail::gather<S>(bytes, x.shape(), x.strides(), gathered.data());
      file.write(gathered.data(), sizeof(U) * static_cast<size_t>(total));
    } else if constexpr (std::same_as<S, U>) {
      file.write(bytes, sizeof(U) * static_cast<size_t>(total));
    } else {
      constexpr int64_t chunk = int64_t{1} << 16;
      std::vector<U> converted(static_cast<size_t>(std::min(chunk, total)));
      for (int64_t start = 0; start < total; start += chunk) {
        const int64_t n = std::min(chunk, total - start);
        detail::convert_run<S>(bytes + static_cast<size_t>(start) * sizeof(S), 1, n, converted.data());
        file.write(converted.data(), sizeof(U) * static_cast<size_t>(n));
      }
    }
  }, any);
}

inline void write_tensor(AtomicFile& file, const TensorToWrite& e, const AnyTensor& t) {
  BLIP_CHECK(shape_of(t) == e.shape, "write_safetensors: '", file.path(), "' tensor '", e.name, "' was declared ",
             e.shape, " but holds ", shape_of(t));
  const std::string from = dtype_of(t);
  const bool from_float = is_floating_dtype(from), to_float = is_floating_dtype(e.dtype);
  BLIP_CHECK(from_float == to_float && ((e.dtype != "U8" && e.dtype != "BOOL") || from == "U8"),
             "write_safetensors: '", file.path(), "' tensor '", e.name, "' holds ", from, ", which blip does not store as ",
             e.dtype);
  if (e.dtype == "BOOL") {
    for (uint8_t v : std::get<Tensor<uint8_t, Cpu>>(t).to_vector())
      BLIP_CHECK(v <= 1, "write_safetensors: '", file.path(), "' BOOL tensor '", e.name, "' holds the value ", int(v));
  }
  if (e.dtype == "F32") write_as<float>(file, t);
  else if (e.dtype == "F64") write_as<double>(file, t);
  else if (e.dtype == "F16") write_as<fp16>(file, t);
  else if (e.dtype == "BF16") write_as<bf16>(file, t);
  else if (e.dtype == "I64") write_as<int64_t>(file, t);
  else if (e.dtype == "I32") write_as<int32_t>(file, t);
  else write_as<uint8_t>(file, t);
}

}  // namespace detail

inline void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const TensorToWrite& e : tensors) {
    BLIP_CHECK(e.name != "__metadata__" && !e.name.empty() && names.insert(e.name).second, "write_safetensors: '", path,
               "' tensor name '", e.name, "' is empty, reserved or repeated");
    const size_t item = safetensors_dtype_size(e.dtype);
    BLIP_CHECK(item > 0 && e.dtype != "U16" && e.dtype != "U32" && e.dtype != "U64" && e.dtype != "I16" &&
                   e.dtype != "I8",
               "write_safetensors: '", path, "' tensor '", e.name, "' has dtype '", e.dtype,
               "', not one of F32, F16, BF16, F64, I64, I32, U8, BOOL");
    for (int64_t d : e.shape)
      BLIP_CHECK(d >= 0, "write_safetensors: '", path, "' tensor '", e.name, "' has shape ", e.shape);
    const uint64_t bytes = static_cast<uint64_t>(numel(e.shape)) * item;
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFile file(path);
  const uint64_t header_len = text.size();
  file.write(&header_len, 8);
  file.write(text.data(), text.size());
  for (const TensorToWrite& e : tensors) {
    const uint64_t before = file.size();
    detail::write_tensor(file, e, e.load());
    BLIP_CHECK(file.size() - before == static_cast<uint64_t>(numel(e.shape)) * safetensors_dtype_size(e.dtype),
               "write_safetensors: '", path, "' tensor '", e.name, "' wrote ", file.size() - before, " bytes");
  }
  file.commit();
}

// A StateDict as a safetensors file; float_dtype ("F32", "F16", "BF16", "F64") converts the
// floating tensors, integer tensors keep their dtype.
inline void save_safetensors(const std::string& path, const StateDict& tensors,
                             const std::map<std::string, std::string>& metadata = {},
                             const std::optional<std::string>& float_dtype = std::nullopt) {
  std::vector<TensorToWrite> entries;
  for (const std::string& name : tensors.keys()) {
    const AnyTensor& t = tensors.at(name);
    const std::string dtype = float_dtype && is_floating_dtype(dtype_of(t)) ? *float_dtype : dtype_of(t);
    entries.push_back({name, dtype, shape_of(t), [&t] { return t; }});
  }
  write_safetensors(path, entries, metadata);
}

}  // namespace blip::io
