// blip/io/torch_checkpoint.hpp — reading PyTorch torch.save checkpoints without Python.
//
// Contract: TorchCheckpoint(path) memory-maps a .pth file and reads its object pickle with the
// restricted unpickler (io/pickle.hpp: nothing is executed; globals other than OrderedDict,
// the tensor/parameter rebuild functions and the torch.*Storage types are refused).
// - Formats: the zip format of PyTorch >= 1.6 (`<archive>/data.pkl` + `<archive>/data/<key>`
//   storages, read in place when STORED) and the legacy format (magic number, protocol 1001,
//   sys_info, the object, the storage key list, then each storage as an 8-byte little-endian
//   element count and its bytes). Other files are refused with a message naming the formats.
// - Layouts: a top-level dict with a dict under 'state_dict' (mmengine) or else under 'model'
//   (BLIP) holds the tensors; otherwise the top-level dict itself is the state dict. keys() is
//   that dict's order. Values that are not tensors (numbers, strings, None, nested dicts) are
//   skipped: they are not part of keys(); a non-string key or a duplicate key is an error.
// - Tensors: storages of F32/F16/BF16/F64/I64/I32/U8/BOOL, any storage offset and non-negative
//   strides; every addressed element must lie inside the storage (overflow-safe), and a tensor
//   may not have more elements than its storage (broadcast views with zero strides are
//   refused). Storages shared by several tensors are located once. load<T> converts like
//   SafeTensorsFile::load<T> (io/tensor_bytes.hpp).
// - meta(): the top-level 'meta' as JSON (dicts, lists, tuples, strings, numbers, bools, None);
//   values JSON cannot hold (tensors, bytes, big ints) become null; null when there is no meta.
//   At most 2^20 values and 64 MiB of text are produced (memo references count each time).
// - Integrity and memory: every zip entry read is CRC-checked (io/zip_archive.hpp); a compressed
//   storage may declare no more uncompressed bytes than its tensors need, and all compressed
//   entries together inflate to at most 4x the file's size + 64 MiB.
// Every problem throws blip::Error naming the file and the key, entry, opcode or byte offset.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "blip/core/tensor.hpp"
#include "blip/io/mapped_file.hpp"
#include "blip/io/pickle.hpp"
#include "blip/io/tensor_bytes.hpp"
#include "blip/io/zip_archive.hpp"

namespace blip::io {

// The globals a torch.save state dict needs, and the dtype each storage type holds.
inline const std::map<std::string, std::string>& torch_storage_dtypes() {
  static const std::map<std::string, std::string> m = {
      {"torch.FloatStorage", "F32"}, {"torch.HalfStorage", "F16"}, {"torch.BFloat16Storage", "BF16"},
      {"torch.DoubleStorage", "F64"}, {"torch.LongStorage", "I64"}, {"torch.IntStorage", "I32"},
      {"torch.ByteStorage", "U8"},   {"torch.BoolStorage", "BOOL"}};
  return m;
}

inline const std::set<std::string>& torch_pickle_globals() {
  static const std::set<std::string> allowed = [] {
    std::set<std::string> s = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                               "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"};
    for (const auto& [name, dtype] : torch_storage_dtypes()) s.insert(name);
    return s;
  }();
  return allowed;
}

class TorchCheckpoint {
 public:
  explicit TorchCheckpoint(std::string path) : file_(std::make_shared<const MappedFile>(std::move(path))) { open(); }
  // Reads an in-memory image of a file (a copy is kept); `name` stands for the path in errors.
  TorchCheckpoint(const uint8_t* bytes, size_t size, std::string name)
      : file_(std::make_shared<const MappedFile>(bytes, size, std::move(name))) {
    open();
  }

  const std::string& path() const { return file_->path(); }
  bool legacy_format() const { return legacy_; }
  std::vector<std::string> keys() const {
    std::vector<std::string> names;
    names.reserve(tensors_.size());
    for (const TensorEntry& t : tensors_) names.push_back(t.name);
    return names;
  }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  Shape shape(const std::string& name) const { return entry(name).shape; }
  std::string dtype(const std::string& name) const { return entry(name).dtype; }
  const nlohmann::json& meta() const { return meta_; }

  template <Element T>
  Tensor<T, Cpu> load(const std::string& name) const {
    const TensorEntry& t = entry(name);
    const StorageBytes& s = storages_.at(t.storage);
    const uint8_t* first = s.data + static_cast<size_t>(t.offset) * safetensors_dtype_size(t.dtype);
    // Stored (uncompressed) storages are used in place from the mapping, which the tensor keeps alive.
    const std::shared_ptr<const void> owner = file_->holds(first) ? file_ : nullptr;
    return tensor_from_bytes<T>(first, t.dtype, t.shape, t.strides,
                                str("torch checkpoint: '", path(), "' tensor '", name, "'"), owner);
  }

 private:
  static constexpr uint32_t kMaxDepth = 64;
  static constexpr uint64_t kMaxPickleBytes = uint64_t{1} << 30;
  static constexpr uint64_t kMaxInflateFactor = 4;  // compressed storages: bytes inflated per file byte
  static constexpr uint64_t kMaxMetaValues = uint64_t{1} << 20;
  static constexpr uint64_t kMaxMetaBytes = uint64_t{64} << 20;

  struct StorageRef {  // what a persistent id says about a storage
    std::string key, dtype;
    uint64_t numel = 0;        // elements the tensor may address
    uint64_t root_numel = 0;   // elements of the whole stored storage (legacy views: more)
    uint64_t view_offset = 0;  // legacy storage views: first element inside the stored storage
  };
  struct StorageBytes {
    const uint8_t* data = nullptr;  // first byte the tensor's storage offset counts from
    uint64_t bytes = 0;
  };
  struct TensorEntry {
    std::string name, dtype;
    Shape shape;
    Strides strides;
    int64_t offset = 0;
    std::string storage;  // key into storages_
  };

  const TensorEntry& entry(const std::string& name) const {
    auto it = index_.find(name);
    BLIP_CHECK(it != index_.end(), "torch checkpoint: '", path(), "' has no tensor '", name, "'");
    return tensors_[it->second];
  }

  template <class... Args>
  [[noreturn]] void bad(const Args&... args) const {
    fail("torch checkpoint: '", path(), "' ", args...);
  }

  void open() {
    const uint8_t* d = file_->data();
    const uint64_t size = file_->size();
    if (ZipArchive::looks_like_zip(d, size)) {
      open_zip();
    } else if (size >= 2 && d[0] == 0x80 && d[1] <= 5) {
      open_legacy();
    } else {
      bad("(", size, " bytes) is neither a zip archive (PyTorch >= 1.6 torch.save) nor a legacy (pre-1.6) pickle "
          "checkpoint; the pre-0.4 tar format is not read either");
    }
  }

  // ---- the zip format ----
  void open_zip() {
    const ZipArchive zip(file_);
    std::string prefix;
    for (const ZipEntry& e : zip.entries()) {
      const size_t slash = e.name.find('/');
      if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
        prefix = e.name.substr(0, slash);
        break;
      }
    }
    BLIP_CHECK(!prefix.empty(), "torch checkpoint: '", path(), "' is a zip archive without an '<archive>/data.pkl' entry ",
               "(", zip.entries().size(), " entries), so not a torch.save file");
    if (const ZipEntry* order = zip.find(prefix + "/byteorder")) {
      const auto bytes = zip.read(order->name, 16);
      BLIP_CHECK(std::string(bytes.begin(), bytes.end()) == "little", "torch checkpoint: '", path(), "' entry '",
                 order->name, "' says the storages are not little-endian");
    }
    const std::string pkl = prefix + "/data.pkl";
    const uint64_t max_inflated = file_->size() * kMaxInflateFactor + (uint64_t{64} << 20);
    const std::vector<uint8_t> bytes = zip.read(pkl, std::min(kMaxPickleBytes, max_inflated));
    const PickleDocument doc =
        parse_pickle(bytes.data(), bytes.size(), str("'", path(), "' entry '", pkl, "'"), torch_pickle_globals());
    read_object(doc);
    // Locate every storage the tensors use, once each.
    std::map<std::string, uint64_t> need;  // storage key -> bytes its persistent id declares
    for (const auto& [key, ref] : refs_) need[key] = std::max(need[key], ref.root_numel * safetensors_dtype_size(ref.dtype));
    uint64_t inflate_budget = max_inflated;
    std::vector<std::string> stored_keys;
    std::vector<const ZipEntry*> stored_entries;  // CRC-checked together below, over all threads
    for (const auto& [key, bytes_needed] : need) {
      const std::string name = prefix + "/data/" + key;
      const ZipEntry* e = zip.find(name);
      BLIP_CHECK(e, "torch checkpoint: '", path(), "' has no storage entry '", name, "' (storage '", key, "')");
      BLIP_CHECK(e->size >= bytes_needed, "torch checkpoint: '", path(), "' storage entry '", name, "' holds ", e->size,
                 " bytes but its persistent id declares ", bytes_needed);
      if (e->stored) {
        stored_keys.push_back(key);
        stored_entries.push_back(e);
      } else {
        // Inflate only what the tensors need, and in total no more than a bound of the file's
        // size: a deflated entry may declare 1000x its compressed size.
        BLIP_CHECK(e->size <= bytes_needed, "torch checkpoint: '", path(), "' compressed storage entry '", name,
                   "' declares ", e->size, " uncompressed bytes but its tensors need ", bytes_needed,
                   "; refusing to inflate it");
        BLIP_CHECK(bytes_needed <= inflate_budget, "torch checkpoint: '", path(), "' compressed storages inflate to more than ",
                   max_inflated, " bytes in all (", kMaxInflateFactor, "x the file's size + 64 MiB)");
        inflate_budget -= bytes_needed;
        owned_.push_back(zip.read(name, bytes_needed));
        place_storage(key, owned_.back().data());
      }
    }
    const std::vector<const uint8_t*> stored = zip.stored_data(stored_entries);
    for (size_t i = 0; i < stored.size(); ++i) place_storage(stored_keys[i], stored[i]);
  }

  // ---- the legacy format ----
  void open_legacy() {
    legacy_ = true;
    const uint8_t* d = file_->data();
    const uint64_t size = file_->size();
    uint64_t at = 0;
    auto next = [&](const char* part, const std::set<std::string>& globals) {
      PickleDocument doc = parse_pickle(d + at, size - at, str("'", path(), "' (legacy format, ", part,
                                                              " pickle at byte ", at, ")"), globals);
      at += doc.end;
      return doc;
    };
    static const std::set<std::string> no_globals;
    const PickleDocument magic = next("magic number", no_globals);
    static const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);  // 0x1950a86a20f9469cfc6c
    BLIP_CHECK(magic.at(magic.root).kind == PickleKind::BigInt && magic.at(magic.root).text == kMagic,
               "torch checkpoint: '", path(), "' starts with a pickle but not with the legacy PyTorch magic number, "
               "so it is neither a zip (PyTorch >= 1.6) nor a legacy torch.save file");
    const PickleDocument protocol = next("protocol version", no_globals);
    const PickleValue& version = protocol.at(protocol.root);
    BLIP_CHECK(version.kind == PickleKind::Int && version.integer == 1001, "torch checkpoint: '", path(),
               "' has legacy protocol version ", version.kind == PickleKind::Int ? std::to_string(version.integer) : "?",
               "; only 1001 is read");
    const PickleDocument sys_info = next("sys_info", no_globals);
    if (const PickleRef little = find_key(sys_info, sys_info.root, "little_endian"); little != kNoPickleRef)
      BLIP_CHECK(sys_info.at(little).kind == PickleKind::Bool && sys_info.at(little).integer == 1, "torch checkpoint: '",
                 path(), "' was saved on a big-endian machine, which blip does not read");
    const PickleDocument object = next("object", torch_pickle_globals());
    read_object(object);
    // Every persistent id of the object (tensors outside the state dict too) says how to step over its storage.
    std::map<std::string, std::pair<size_t, uint64_t>> roots;  // key -> element size, element count
    for (size_t v = 0; v < object.size(); ++v)
      if (object.at(static_cast<PickleRef>(v)).kind == PickleKind::PersistentId) {
        const StorageRef ref = storage_ref(object, static_cast<PickleRef>(v), "a persistent id");
        const size_t item = safetensors_dtype_size(ref.dtype);
        auto [it, fresh] = roots.emplace(ref.key, std::make_pair(item, ref.root_numel));
        BLIP_CHECK(fresh || it->second == std::make_pair(item, ref.root_numel), "torch checkpoint: '", path(),
                   "' storage '", ref.key, "' is declared with two different types or sizes");
      }
    const PickleDocument key_list = next("storage keys", no_globals);
    const PickleValue& list = key_list.at(key_list.root);
    BLIP_CHECK(list.kind == PickleKind::List, "torch checkpoint: '", path(), "' legacy storage key list at byte ",
               at - key_list.end, " is a ", pickle_kind_name(list.kind), ", not a list");
    for (PickleRef k : list.items) {
      const PickleValue& key = key_list.at(k);
      BLIP_CHECK(key.kind == PickleKind::String, "torch checkpoint: '", path(), "' legacy storage key list holds a ",
                 pickle_kind_name(key.kind));
      auto it = roots.find(key.text);
      BLIP_CHECK(it != roots.end(), "torch checkpoint: '", path(), "' legacy storage '", key.text,
                 "' is used by no tensor, so its element size is unknown");
      const auto [item, numel] = it->second;
      BLIP_CHECK(size - at >= 8, "torch checkpoint: '", path(), "' legacy storage '", key.text, "' at byte ", at,
                 " is cut off (file of ", size, " bytes)");
      uint64_t count = 0;
      for (int i = 0; i < 8; ++i) count |= static_cast<uint64_t>(d[at + static_cast<uint64_t>(i)]) << (8 * i);
      BLIP_CHECK(count == numel, "torch checkpoint: '", path(), "' legacy storage '", key.text, "' at byte ", at,
                 " holds ", static_cast<int64_t>(count), " elements but its persistent id declares ", numel);
      at += 8;
      BLIP_CHECK(count <= (size - at) / item, "torch checkpoint: '", path(), "' legacy storage '", key.text, "' of ",
                 count, " elements from byte ", at, " runs past the end of the file (", size, " bytes)");
      if (refs_.count(key.text)) place_storage(key.text, d + at);
      at += count * item;
      roots.erase(it);  // a key listed twice would be read twice
    }
    for (const auto& [key, ref] : refs_)
      BLIP_CHECK(storages_.count(key), "torch checkpoint: '", path(), "' has no legacy storage '", key,
                 "' (missing from the storage key list)");
  }

  void place_storage(const std::string& key, const uint8_t* data) {
    const StorageRef& ref = refs_.at(key);
    storages_[key] = StorageBytes{data, ref.root_numel * safetensors_dtype_size(ref.dtype)};
  }

  // ---- the object: layout, tensors, meta ----
  static PickleRef find_key(const PickleDocument& doc, PickleRef dict, const std::string& key) {
    const PickleValue& v = doc.at(dict);
    if (v.kind != PickleKind::Dict) return kNoPickleRef;
    for (size_t i = 0; i + 1 < v.items.size(); i += 2) {
      const PickleValue& k = doc.at(v.items[i]);
      if (k.kind == PickleKind::String && k.text == key) return v.items[i + 1];
    }
    return kNoPickleRef;
  }

  void read_object(const PickleDocument& doc) {
    doc.check_depth(doc.root, kMaxDepth);
    BLIP_CHECK(doc.at(doc.root).kind == PickleKind::Dict, "torch checkpoint: '", path(), "' holds a ",
               pickle_kind_name(doc.at(doc.root).kind), " at the top, not a dict (state dict)");
    PickleRef sd = doc.root;
    for (const char* key : {"state_dict", "model"}) {
      const PickleRef v = find_key(doc, doc.root, key);
      if (v != kNoPickleRef && doc.at(v).kind == PickleKind::Dict) {
        sd = v;
        break;
      }
    }
    const PickleValue& dict = doc.at(sd);
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const PickleValue& k = doc.at(dict.items[i]);
      BLIP_CHECK(k.kind == PickleKind::String, "torch checkpoint: '", path(), "' state dict has a ",
                 pickle_kind_name(k.kind), " key (made at pickle byte ", k.offset, "), not a string");
      const PickleRef value = tensor_call(doc, dict.items[i + 1], k.text);
      if (value == kNoPickleRef) continue;  // not a tensor: skipped, see the contract
      BLIP_CHECK(!index_.count(k.text), "torch checkpoint: '", path(), "' state dict has the key '", k.text, "' twice");
      add_tensor(doc, value, k.text);
    }
    if (const PickleRef m = find_key(doc, doc.root, "meta"); m != kNoPickleRef) {
      MetaBudget budget;
      meta_ = to_json(doc, m, 0, budget);
    }
  }

  // The _rebuild_tensor_v2 call a state dict value stands for (through _rebuild_parameter), or
  // kNoPickleRef for a value that is not a tensor.
  PickleRef tensor_call(const PickleDocument& doc, PickleRef v, const std::string& name) const {
    for (int hop = 0; hop < 2; ++hop) {
      const PickleValue& value = doc.at(v);
      if (value.kind != PickleKind::Call) return kNoPickleRef;
      const std::string& fn = doc.at(value.items[0]).text;
      const PickleValue& args = doc.at(value.items[1]);
      if (fn == "torch._utils._rebuild_tensor_v2") return v;
      if ((fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") &&
          !args.items.empty()) {
        v = args.items[0];
        continue;
      }
      bad("value of '", name, "' (pickle byte ", value.offset, ") is a call to ", fn, ", not a tensor");
    }
    bad("value of '", name, "' nests parameters in parameters");
  }

  // `who` names the value in messages: "tensor 'w'" or "a persistent id".
  int64_t int_at(const PickleDocument& doc, PickleRef r, const std::string& who, const char* what) const {
    const PickleValue& v = doc.at(r);
    if (v.kind != PickleKind::Int)
      bad(who, " has a ", pickle_kind_name(v.kind), " for its ", what, " (pickle byte ", v.offset, ")");
    return v.integer;
  }

  std::vector<int64_t> ints_at(const PickleDocument& doc, PickleRef r, const std::string& who, const char* what) const {
    const PickleValue& v = doc.at(r);
    if (v.kind != PickleKind::Tuple)
      bad(who, " has a ", pickle_kind_name(v.kind), " for its ", what, " (pickle byte ", v.offset, ")");
    std::vector<int64_t> out;
    for (PickleRef item : v.items) {
      out.push_back(int_at(doc, item, who, what));
      if (out.back() < 0) bad(who, " has a negative ", what, " ", out.back(), " (pickle byte ", v.offset, ")");
    }
    return out;
  }

  StorageRef storage_ref(const PickleDocument& doc, PickleRef pid_value, const std::string& name) const {
    const PickleValue& pid = doc.at(doc.at(pid_value).items[0]);
    auto text = [&](size_t i) -> const PickleValue& { return doc.at(pid.items[i]); };
    if (pid.kind != PickleKind::Tuple || pid.items.size() < 5 || text(0).kind != PickleKind::String ||
        text(0).text != "storage" || text(1).kind != PickleKind::Global || text(2).kind != PickleKind::String)
      bad(name, ": the persistent id at pickle byte ", pid.offset,
          " is not ('storage', <storage type>, key, location, size[, view])");
    StorageRef ref;
    auto dtype = torch_storage_dtypes().find(text(1).text);
    if (dtype == torch_storage_dtypes().end())
      bad(name, ": persistent id at pickle byte ", pid.offset, " names ", text(1).text, ", not a storage type");
    ref.dtype = dtype->second;
    ref.key = text(2).text;
    const int64_t numel = int_at(doc, pid.items[4], name, "storage size");
    if (numel < 0) bad(name, ": storage '", ref.key, "' has a negative size ", numel);
    ref.numel = ref.root_numel = static_cast<uint64_t>(numel);
    if (ref.root_numel > file_->size() / safetensors_dtype_size(ref.dtype))
      bad(name, ": storage '", ref.key, "' of ", numel, " elements is larger than the file (", file_->size(), " bytes)");
    if (pid.items.size() >= 6 && text(5).kind != PickleKind::None) {  // legacy view: (view key, offset, size)
      const PickleValue& view = text(5);
      if (view.kind != PickleKind::Tuple || view.items.size() != 3)
        bad(name, ": storage '", ref.key, "' has a malformed view (pickle byte ", view.offset, ")");
      const int64_t offset = int_at(doc, view.items[1], name, "storage view offset");
      const int64_t count = int_at(doc, view.items[2], name, "storage view size");
      if (offset < 0 || count < 0 || static_cast<uint64_t>(offset) > ref.root_numel ||
          static_cast<uint64_t>(count) > ref.root_numel - static_cast<uint64_t>(offset))
        bad(name, ": storage view [", offset, ", +", count, ") lies outside storage '", ref.key, "' of ", numel,
            " elements");
      ref.view_offset = static_cast<uint64_t>(offset);
      ref.numel = static_cast<uint64_t>(count);
    }
    return ref;
  }

  void add_tensor(const PickleDocument& doc, PickleRef call, const std::string& name) {
    const PickleValue& args = doc.at(doc.at(call).items[1]);
    if (args.items.size() < 4 || doc.at(args.items[0]).kind != PickleKind::PersistentId)
      bad("tensor '", name, "' (pickle byte ", args.offset, ") is not rebuilt from (storage, offset, size, stride)");
    const std::string who = str("tensor '", name, "'");
    StorageRef ref = storage_ref(doc, args.items[0], who);
    TensorEntry t;
    t.name = name;
    t.dtype = ref.dtype;
    t.offset = int_at(doc, args.items[1], who, "storage offset");
    t.shape = ints_at(doc, args.items[2], who, "size");
    t.strides = ints_at(doc, args.items[3], who, "stride");
    if (t.offset < 0) bad("tensor '", name, "' has a negative storage offset ", t.offset);
    if (t.shape.size() != t.strides.size())
      bad("tensor '", name, "' has size ", t.shape, " but stride ", t.strides, " (ranks differ)");
    // Elements, and the last element addressed, without overflow.
    uint64_t count = 1, last = static_cast<uint64_t>(t.offset);
    bool overflow = false;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      const uint64_t extent = static_cast<uint64_t>(t.shape[i]), step = static_cast<uint64_t>(t.strides[i]);
      uint64_t span = 0;
      overflow |= __builtin_mul_overflow(count, extent, &count);
      if (extent > 0) overflow |= __builtin_mul_overflow(extent - 1, step, &span) || __builtin_add_overflow(last, span, &last);
    }
    if (overflow || count > ref.numel || (count > 0 && last >= ref.numel))
      bad("tensor '", name, "' (size ", t.shape, ", stride ", t.strides, ", storage offset ", t.offset,
          ") addresses elements outside its storage '", ref.key, "' of ", ref.numel, " elements");
    t.offset += static_cast<int64_t>(ref.view_offset);
    t.storage = ref.key;
    auto [it, fresh] = refs_.emplace(ref.key, ref);
    if (!fresh) {
      if (it->second.dtype != ref.dtype && !legacy_) {  // one untyped storage read as two dtypes: bytes are what matter
        if (ref.root_numel * safetensors_dtype_size(ref.dtype) > it->second.root_numel * safetensors_dtype_size(it->second.dtype))
          it->second = ref;
      } else if (it->second.dtype != ref.dtype || it->second.root_numel != ref.root_numel) {
        bad("storage '", ref.key, "' is declared with two different types or sizes");
      }
    }
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The memo lets one value appear many times; JSON copies it each time, so the text produced is
  // counted too (one 4 MiB string referenced 20,000 times would otherwise become 80 GB).
  struct MetaBudget {
    uint64_t values = kMaxMetaValues, bytes = kMaxMetaBytes;
  };

  nlohmann::json to_json(const PickleDocument& doc, PickleRef r, uint32_t depth, MetaBudget& budget) const {
    if (depth > kMaxDepth || budget.values == 0)
      bad("meta nests deeper than ", kMaxDepth, " levels or holds more than ", kMaxMetaValues, " values");
    --budget.values;
    const PickleValue& v = doc.at(r);
    switch (v.kind) {
      case PickleKind::Bool: return v.integer != 0;
      case PickleKind::Int: return v.integer;
      case PickleKind::Float: return v.real;
      case PickleKind::String: {
        if (v.text.size() > budget.bytes)
          bad("meta holds more than ", kMaxMetaBytes, " bytes of text (a string made at pickle byte ", v.offset,
              " is referenced too often)");
        budget.bytes -= v.text.size();
        nlohmann::json s = v.text;
        try {
          (void)s.dump();  // invalid UTF-8 cannot be JSON text
        } catch (const nlohmann::json::exception&) {
          return nullptr;
        }
        return s;
      }
      case PickleKind::List:
      case PickleKind::Tuple: {
        nlohmann::json a = nlohmann::json::array();
        for (PickleRef item : v.items) a.push_back(to_json(doc, item, depth + 1, budget));
        return a;
      }
      case PickleKind::Dict: {
        nlohmann::json o = nlohmann::json::object();
        for (size_t i = 0; i + 1 < v.items.size(); i += 2) {
          const nlohmann::json key = to_json(doc, v.items[i], depth + 1, budget);
          o[key.is_string() ? key.get<std::string>() : key.dump()] = to_json(doc, v.items[i + 1], depth + 1, budget);
        }
        return o;
      }
      default: return nullptr;
    }
  }

  std::shared_ptr<const MappedFile> file_;
  bool legacy_ = false;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, StorageRef> refs_;          // storage key -> the largest declaration
  std::map<std::string, StorageBytes> storages_;    // storage key -> where its bytes are
  std::vector<std::vector<uint8_t>> owned_;         // compressed storages, inflated once
  nlohmann::json meta_;
};

}  // namespace blip::io
