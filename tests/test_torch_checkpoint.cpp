// PyTorch checkpoints: the golden torch.save files load to the reference tensors; damaged
// files, hostile pickles and impossible tensor layouts give errors naming what is wrong.
#include <catch2/catch.hpp>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "blip/backend/cpu/parallel.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/torch_checkpoint.hpp"
#include "golden_dirs.hpp"

using namespace blip;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// One scratch folder per run, removed at exit.
fs::path temp_dir() {
  static const struct Scratch {
    fs::path dir = fs::temp_directory_path() / ("blip_test_torch_checkpoint_" + std::to_string(::getpid()));
    Scratch() { fs::create_directories(dir); }
    ~Scratch() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } scratch;
  return scratch.dir;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string write_bytes(const std::string& name, const std::string& bytes) {
  const fs::path path = temp_dir() / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

// A zip written by libzip: entries (name, bytes), each stored or deflated.
std::string write_zip(const std::string& name, const std::vector<std::pair<std::string, std::string>>& entries,
                      bool deflate = false) {
  const std::string path = (temp_dir() / name).string();
  int error = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  REQUIRE(za);
  for (const auto& [entry, bytes] : entries) {
    zip_source_t* src = zip_source_buffer(za, bytes.data(), bytes.size(), 0);
    REQUIRE(src);
    const zip_int64_t index = zip_file_add(za, entry.c_str(), src, ZIP_FL_OVERWRITE);
    REQUIRE(index >= 0);
    REQUIRE(zip_set_file_compression(za, static_cast<zip_uint64_t>(index), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) == 0);
  }
  REQUIRE(zip_close(za) == 0);
  return path;
}

// Hand-written pickles, opcode by opcode (protocol 2, as torch.save writes them).
struct Pickle {
  std::string bytes = "\x80\x02";
  Pickle& op(const std::string& s) {
    bytes += s;
    return *this;
  }
  Pickle& text(const std::string& s) {  // BINUNICODE
    bytes += 'X';
    for (int i = 0; i < 4; ++i) bytes += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    bytes += s;
    return *this;
  }
  Pickle& integer(int64_t v) {  // BININT, or LONG1 of 8 bytes beyond 32 bits
    const bool small = v == static_cast<int32_t>(v);
    bytes += small ? "J" : "\x8a\x08";
    for (int i = 0; i < (small ? 4 : 8); ++i) bytes += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    return *this;
  }
  Pickle& ints(const std::vector<int64_t>& v) {
    op("(");
    for (int64_t x : v) integer(x);
    return op("t");
  }
  // key -> _rebuild_tensor_v2(('storage', FloatStorage, storage, 'cpu', numel), offset, size, stride, False, OrderedDict())
  Pickle& tensor(const std::string& key, const std::string& storage, int64_t numel, int64_t offset,
                 const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    text(key).op("ctorch._utils\n_rebuild_tensor_v2\n(");
    op("(").text("storage").op("ctorch\nFloatStorage\n").text(storage).text("cpu").integer(numel).op("tQ");
    integer(offset).ints(size).ints(stride);
    return op("\x89" "ccollections\nOrderedDict\n)RtR");
  }
};

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A checkpoint with one state dict entry 'w' over storage '0' holding `stored` floats.
std::string one_tensor_file(const std::string& name, int64_t numel, int64_t offset, const std::vector<int64_t>& size,
                            const std::vector<int64_t>& stride, size_t stored) {
  Pickle p;
  p.op("}(").tensor("w", "0", numel, offset, size, stride).op("u.");
  return write_zip(name, {{"archive/data.pkl", p.bytes}, {"archive/data/0", floats(std::vector<float>(stored, 1.f))}});
}

std::string pickle_file(const std::string& name, const std::string& pickle) {
  return write_zip(name, {{"archive/data.pkl", pickle}});
}

std::vector<fs::path> checkpoint_files() {
  std::vector<fs::path> files;
  const fs::path dir = golden_root() / "checkpoints";
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".pth") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("every golden torch.save checkpoint loads to the reference tensors", "[io][torch][golden]") {
  const auto files = checkpoint_files();
  if (files.empty()) {
    WARN("skipped: no checkpoints/ under " << golden_root() << " (set BLIP_GOLDEN_DIR)");
    return;
  }
  REQUIRE(files.size() >= 6);
  for (const fs::path& file : files) {
    INFO(file);
    const std::string stem = file.stem().string();
    const std::string variant = stem.substr(stem.rfind('_') + 1);
    const io::SafeTensorsFile ref((golden_root() / stem.substr(0, stem.rfind('_')) / "weights.safetensors").string());
    const io::TorchCheckpoint ck(file.string());
    REQUIRE(ck.legacy_format() == (variant == "legacy"));
    auto keys = ck.keys();
    REQUIRE(std::set<std::string>(keys.begin(), keys.end()).size() == keys.size());
    std::sort(keys.begin(), keys.end());
    REQUIRE(keys == ref.keys());
    for (const std::string& key : keys) {
      INFO(key);
      const std::string ref_dtype = ref.entry(key).dtype;
      REQUIRE(ck.shape(key) == ref.entry(key).shape);
      if (ref_dtype == "I64") {
        REQUIRE(ck.dtype(key) == "I64");
        REQUIRE(ck.load<int64_t>(key).to_vector() == ref.load<int64_t>(key).to_vector());
        continue;
      }
      REQUIRE(ref_dtype == "F32");
      std::vector<float> expected = ref.load<float>(key).to_vector();
      if (variant == "fp16") {
        REQUIRE(ck.dtype(key) == "F16");
        for (float& x : expected) x = static_cast<float>(fp16(x));
      } else if (variant == "bf16") {
        REQUIRE(ck.dtype(key) == "BF16");
        for (float& x : expected) x = static_cast<float>(bf16(x));
      } else {
        REQUIRE(ck.dtype(key) == "F32");
      }
      const auto got = ck.load<float>(key);
      REQUIRE(got.shape() == ck.shape(key));
      REQUIRE(got.to_vector() == expected);
    }
    REQUIRE(ck.load<float>("temp").item() == ck.load<float>("head.temp").item());
  }
}

TEST_CASE("golden checkpoints: shared storages, views, meta", "[io][torch][golden]") {
  const fs::path dir = golden_root() / "checkpoints";
  if (!fs::exists(dir / "shared_a_mmengine.pth")) {
    WARN("skipped: no golden checkpoints under " << dir);
    return;
  }
  // temp and head.temp are one storage: the archive has one storage entry fewer than tensors.
  const io::TorchCheckpoint ck((dir / "shared_a_mmengine.pth").string());
  const io::ZipArchive zip((dir / "shared_a_mmengine.pth").string());
  const auto storages = std::count_if(zip.entries().begin(), zip.entries().end(), [](const io::ZipEntry& e) {
    return e.name.find("/data/") != std::string::npos;
  });
  REQUIRE(static_cast<size_t>(storages) + 1 == ck.keys().size());
  REQUIRE(std::all_of(zip.entries().begin(), zip.entries().end(), [](const io::ZipEntry& e) { return e.stored; }));
  // mmengine's meta comes through as JSON; a bare state dict has none.
  REQUIRE(ck.meta().is_object());
  REQUIRE(ck.meta()["mmpretrain_version"] == "1.2.0");
  REQUIRE(ck.meta()["epoch"] == 6);
  REQUIRE(ck.meta()["dataset_meta"].is_object());
  REQUIRE(io::TorchCheckpoint((dir / "shared_a_plain.pth").string()).meta().is_null());
  // The strided file's entries hold some tensors transposed or inside longer storages, yet load equal.
  const io::TorchCheckpoint strided((dir / "shared_a_strided.pth").string());
  const io::ZipArchive strided_zip((dir / "shared_a_strided.pth").string());
  uint64_t plain_bytes = 0, strided_bytes = 0;
  for (const auto& e : zip.entries()) plain_bytes += e.name.find("/data/") != std::string::npos ? e.size : 0;
  for (const auto& e : strided_zip.entries()) strided_bytes += e.name.find("/data/") != std::string::npos ? e.size : 0;
  REQUIRE(strided_bytes > plain_bytes);  // views with offsets keep longer storages
  for (const std::string& key : ck.keys()) {
    if (ck.dtype(key) != "F32") continue;
    REQUIRE(strided.load<float>(key).to_vector() == ck.load<float>(key).to_vector());
  }
}

TEST_CASE("hand-made checkpoints: strides, offsets, deflate, layouts, non-tensor values", "[io][torch]") {
  // A 2x3 tensor stored column-major inside a storage of 8, from offset 1: element (i, j) at 1 + i + 2j.
  std::vector<float> storage = {-1, 0, 10, 1, 11, 2, 12, -2};
  for (bool deflate : {false, true}) {
    Pickle p;
    p.op("}(").text("meta").op("}(").text("epoch").integer(3).text("note").text("x").op("u");
    p.text("state_dict").op("}(").tensor("w", "s", 8, 1, {2, 3}, {1, 2}).tensor("v", "s", 8, 3, {2}, {2});
    p.text("step").integer(7).text("none").op("N").op("uu.");
    const auto path = write_zip(deflate ? "views_deflate.pth" : "views.pth",
                                {{"ck/data.pkl", p.bytes}, {"ck/data/s", floats(storage)}, {"ck/version", "3\n"}},
                                deflate);
    const io::TorchCheckpoint ck(path);
    REQUIRE(ck.keys() == std::vector<std::string>{"w", "v"});  // file order; 'step' and 'none' are not tensors
    REQUIRE(ck.shape("w") == Shape{2, 3});
    REQUIRE(ck.load<float>("w").to_vector() == std::vector<float>{0, 1, 2, 10, 11, 12});
    REQUIRE(ck.load<double>("v").to_vector() == std::vector<double>{1, 2});
    REQUIRE(ck.meta()["epoch"] == 3);
    REQUIRE(ck.meta()["note"] == "x");
    REQUIRE_THROWS_WITH(ck.load<float>("step"), Contains("has no tensor 'step'"));
  }
  // BLIP's {'model': ...} layout, a 0-d tensor and an empty one.
  Pickle p;
  p.op("}(").text("model").op("}(").tensor("scalar", "0", 2, 1, {}, {}).tensor("empty", "0", 2, 0, {0, 4}, {4, 1});
  p.op("uu.");
  const io::TorchCheckpoint ck(write_zip("model.pth", {{"m/data.pkl", p.bytes}, {"m/data/0", floats({5, 6})}}));
  REQUIRE(ck.load<float>("scalar").item() == 6);
  REQUIRE(ck.shape("scalar").empty());
  REQUIRE(ck.load<float>("empty").numel() == 0);
}

TEST_CASE("damaged checkpoint files give errors naming the problem", "[io][torch][errors]") {
  const fs::path golden = golden_root() / "checkpoints" / "shared_a_plain.pth";
  if (fs::exists(golden)) {
    const std::string bytes = read_bytes(golden);
    REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("truncated.pth", bytes.substr(0, bytes.size() / 2))),
                        Contains("truncated.pth") && Contains("not a readable zip archive"));
    std::string corrupt = bytes;
    const size_t cd = corrupt.rfind(std::string("PK\x01\x02", 4));
    corrupt[cd + 20] ^= 0x55;  // the compressed size of the last central directory record
    REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("corrupt.pth", corrupt)), Contains("corrupt.pth"));
    const std::string legacy = read_bytes(golden_root() / "checkpoints" / "shared_a_legacy.pth");
    REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("legacy_cut.pth", legacy.substr(0, legacy.size() - 100))),
                        Contains("legacy storage") && Contains("runs past the end"));
    REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("legacy_head.pth", legacy.substr(0, 300))),
                        Contains("legacy format") && Contains("before STOP"));
  }
  if (fs::exists(golden)) {
    // torch.save writes zip64 end records too; with the classic record's fields set to "see zip64"
    // both libzip and the offset walk must take the zip64 one.
    std::string bytes = read_bytes(golden);
    const size_t eocd = bytes.rfind(std::string("PK\x05\x06", 4));
    REQUIRE(bytes.rfind(std::string("PK\x06\x06", 4)) != std::string::npos);
    for (size_t i = 8; i < 12; ++i) bytes[eocd + i] = '\xff';   // entry counts
    for (size_t i = 16; i < 20; ++i) bytes[eocd + i] = '\xff';  // central directory offset
    const io::TorchCheckpoint zip64(write_bytes("zip64.pth", bytes));
    REQUIRE(zip64.keys() == io::TorchCheckpoint(golden.string()).keys());
    REQUIRE(zip64.load<float>("temp").item() == io::TorchCheckpoint(golden.string()).load<float>("temp").item());
    const size_t locator = bytes.rfind(std::string("PK\x06\x07", 4));
    bytes[locator + 8] ^= 0x10;  // the zip64 record's offset
    REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("zip64_bad.pth", bytes)), Contains("zip64_bad.pth"));
  }
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("empty.pth", "")), Contains("neither a zip archive"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("text.pth", "hello world")), Contains("neither a zip archive"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint("/nonexistent/x.pth"), Contains("cannot open '/nonexistent/x.pth'"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_zip("nopkl.pth", {{"a/b", "x"}})), Contains("without an '<archive>/data.pkl'"));
}

TEST_CASE("hostile pickles are refused, never executed", "[io][torch][pickle]") {
  // An unknown opcode (0xff), with its byte offset.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("opcode.pth", Pickle().op("}\xff.").bytes)),
                      Contains("opcode 0xff at byte 3") && Contains("archive/data.pkl"));
  // os.system is a global outside the allow-list: refused before anything could run.
  const fs::path marker = temp_dir() / "executed";
  const std::string command = "touch " + marker.string();
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("system.pth", Pickle().op("cos\nsystem\n").text(command).op("\x85R.").bytes)),
                      Contains("GLOBAL 'os.system' at byte 2") && Contains("not allowed"));
  REQUIRE_FALSE(fs::exists(marker));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("class.pth", Pickle().op("}(").text("a").op("c__main__\nNet\n)Ru.").bytes)),
                      Contains("GLOBAL '__main__.Net'"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("stack_global.pth",
                                                      Pickle().text("builtins").text("eval").op("\x93.").bytes)),
                      Contains("STACK_GLOBAL 'builtins.eval'"));
  // Nesting bombs: marks, and lists appended into lists.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("marks.pth", Pickle().op(std::string(100000, '(')).bytes)),
                      Contains("MARK at byte 66") && Contains("nests deeper than 64"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("lists.pth", Pickle().op(std::string(1000, ']') + std::string(999, 'a') + ".").bytes)),
                      Contains("APPEND") && Contains("deeper than 64"));
  // A list that holds itself (through the memo) is a cycle: found by the depth walk, not followed forever.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("cycle.pth", Pickle().op("}(").text("m").op("]q\x01h\x01" "au.").bytes)),
                      Contains("nests deeper than 64"));
  // Length fields larger than the data: refused before allocating.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("long_string.pth", Pickle().op("\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.").bytes)),
                      Contains("BINUNICODE8 at byte 2") && Contains("exceeds the limit"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("short_string.pth", Pickle().op(std::string("X\x10\0\0\0abc", 8)).bytes)),
                      Contains("runs past the end of the data"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("memo.pth", Pickle().op("j\xff\xff\xff\x7f.").bytes)),
                      Contains("LONG_BINGET at byte 2") && Contains("never stored"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("nostop.pth", Pickle().op("}").bytes)), Contains("before STOP"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("list_top.pth", Pickle().op("].").bytes)),
                      Contains("holds a list at the top"));
}

TEST_CASE("impossible tensor layouts and missing storages are refused", "[io][torch][errors]") {
  // Storage of 4 floats: size 10 needs 10.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("small.pth", 4, 0, {10}, {1}, 4)),
                      Contains("tensor 'w'") && Contains("outside its storage '0' of 4 elements"));
  // A stride that walks off the end, and one that overflows 64 bits.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("stride.pth", 4, 0, {2, 2}, {3, 1}, 4)),
                      Contains("stride [3, 1]") && Contains("outside its storage"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("overflow.pth", 4, 0, {4, 4}, {int64_t{1} << 62, 1}, 4)),
                      Contains("outside its storage"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("negative.pth", 4, 0, {-2}, {1}, 4)),
                      Contains("tensor 'w' has a negative size -2"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("negstride.pth", 4, 0, {2}, {-1}, 4)),
                      Contains("negative stride"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("offset.pth", 4, 10, {1}, {1}, 4)),
                      Contains("storage offset 10") && Contains("outside its storage"));
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("rank.pth", 4, 0, {2, 2}, {1}, 4)), Contains("ranks differ"));
  // Zero strides would let a few bytes make a huge tensor.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("broadcast.pth", 1, 0, {100000, 100000}, {0, 0}, 1)),
                      Contains("outside its storage"));
  // The persistent id claims more than the entry holds; an entry that is missing.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("entry_small.pth", 8, 0, {8}, {1}, 4)),
                      Contains("storage entry 'archive/data/0' holds 16 bytes") && Contains("declares 32"));
  Pickle p;
  p.op("}(").tensor("w", "7", 1, 0, {1}, {1}).op("u.");
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_zip("missing.pth", {{"archive/data.pkl", p.bytes}})),
                      Contains("no storage entry 'archive/data/7'"));
  // A storage size no file could hold.
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(one_tensor_file("huge.pth", 0x7fffffff, 0, {1}, {1}, 4)),
                      Contains("larger than the file"));
}

TEST_CASE("zip archive: listing, stored data in place, bounded reads", "[io][zip]") {
  const auto path = write_zip("plain.zip", {{"a.txt", "hello"}, {"dir/b.bin", std::string(1000, 'b')}});
  const io::ZipArchive zip(path);
  REQUIRE(zip.entries().size() == 2);
  REQUIRE(zip.entries()[1].name == "dir/b.bin");
  const io::ZipEntry& a = zip.entry("a.txt");
  REQUIRE(a.stored);
  REQUIRE(std::string(reinterpret_cast<const char*>(zip.stored_data(a)), 5) == "hello");
  REQUIRE(zip.read("dir/b.bin", 1000) == std::vector<uint8_t>(1000, 'b'));
  REQUIRE_THROWS_WITH(zip.read("dir/b.bin", 999), Contains("'dir/b.bin' is 1000 bytes, more than the 999 allowed"));
  REQUIRE_THROWS_WITH(zip.entry("c"), Contains("plain.zip' has no entry 'c'"));
  const auto deflated = write_zip("deflated.zip", {{"z", std::string(5000, 'z')}}, true);
  const io::ZipArchive dz(deflated);
  REQUIRE_FALSE(dz.entry("z").stored);
  REQUIRE(dz.read("z", 5000) == std::vector<uint8_t>(5000, 'z'));
  REQUIRE_THROWS_WITH(dz.stored_data(dz.entry("z")), Contains("not stored"));
}

TEST_CASE("files of PyTorch 2.x: every dtype, views, parameters and module state dicts", "[io][torch]") {
  // Seeds of the checkpoint fuzzer, written by torch.save (2.x): a dict of w, b, t = b[1:3],
  // wt = randn(4, 3).t(), h (half), bf (bfloat16), i = arange(3), i32 = arange(2, int32),
  // u8 = [1, 2], flag = [True, False], d (double), s = 1.5; once plain, once under
  // {'meta', 'state_dict'}, once under {'model'} in the legacy format.
  const fs::path dir = fs::path(BLIP_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "torch_checkpoint";
  const io::TorchCheckpoint plain((dir / "plain_small.pth").string());
  const std::vector<std::string> keys = {"w", "b", "t", "wt", "h", "bf", "i", "i32", "u8", "flag", "d", "s"};
  REQUIRE(plain.keys() == keys);
  const std::vector<std::string> dtypes = {"F32", "F32", "F32", "F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F64", "F32"};
  for (size_t k = 0; k < keys.size(); ++k) REQUIRE(plain.dtype(keys[k]) == dtypes[k]);
  REQUIRE(plain.load<int64_t>("i").to_vector() == std::vector<int64_t>{0, 1, 2});
  REQUIRE(plain.load<int64_t>("i32").to_vector() == std::vector<int64_t>{0, 1});
  REQUIRE(plain.load<uint8_t>("u8").to_vector() == std::vector<uint8_t>{1, 2});
  REQUIRE(plain.load<float>("flag").to_vector() == std::vector<float>{1, 0});
  REQUIRE(plain.load<float>("s").item() == 1.5f);
  REQUIRE(plain.shape("wt") == Shape{3, 4});
  const auto b = plain.load<float>("b").to_vector();
  REQUIRE(plain.load<float>("t").to_vector() == std::vector<float>{b[1], b[2]});
  for (const char* file : {"mmengine_small.pth", "model_small.pth", "legacy_small.pth"}) {
    INFO(file);
    const io::TorchCheckpoint other((dir / file).string());
    REQUIRE(other.keys() == keys);
    for (const std::string& key : keys) REQUIRE(other.load<double>(key).to_vector() == plain.load<double>(key).to_vector());
  }
  REQUIRE(io::TorchCheckpoint((dir / "mmengine_small.pth").string()).meta()["cls"] == nlohmann::json({"a", "b"}));
  // nn.Sequential(Linear(2, 2), BatchNorm1d(2)).state_dict(): an OrderedDict with _metadata (BUILD).
  const io::TorchCheckpoint module((dir / "module_state_dict.pth").string());
  REQUIRE(module.keys() == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                    "1.running_var", "1.num_batches_tracked"});
  REQUIRE(module.load<float>("1.weight").to_vector() == std::vector<float>{1, 1});
  REQUIRE(module.load<float>("1.running_mean").to_vector() == std::vector<float>{0, 0});
  REQUIRE(module.dtype("1.num_batches_tracked") == "I64");
  REQUIRE(module.shape("1.num_batches_tracked").empty());
}

// Issue 11, classes 2, 3 and 12: the bounds that keep a small hostile .pth small, and the CRC
// check of stored entries (Python's zipfile says "Bad CRC-32" for a flipped byte).
TEST_CASE("robust inputs: stored entries are CRC-checked", "[io][torch][zip][robust]") {
  const std::vector<float> values = {1.5f, -2.25f, 3.125f, 4.0625f};
  Pickle p;
  p.op("}(").tensor("w", "0", 4, 0, {4}, {1}).op("u.");
  const std::string path = write_zip("crc.pth", {{"archive/data.pkl", p.bytes}, {"archive/data/0", floats(values)}});
  REQUIRE(io::TorchCheckpoint(path).load<float>("w").to_vector() == values);
  std::string bytes = read_bytes(path);
  const size_t at = bytes.find(floats(values));
  REQUIRE(at != std::string::npos);
  bytes[at + 5] ^= 0x01;  // one bit of the second float: libzip's consistency checks do not see it
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("crc_flipped.pth", bytes)),
                      Contains("crc_flipped.pth") && Contains("archive/data/0") && Contains("CRC-32"));
  std::string pkl = read_bytes(path);
  const size_t stop = pkl.find("u.");
  REQUIRE(stop != std::string::npos);
  pkl[stop] = 's';  // inside data.pkl: read through ZipArchive::read, checked the same way
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(write_bytes("crc_pickle.pth", pkl)), Contains("archive/data.pkl") && Contains("CRC-32"));
}

TEST_CASE("robust inputs: stored entries checked together, split over threads, name the corrupt one", "[io][zip][robust]") {
  // 17 MiB in three entries: with two threads the middle one is cut between them and its CRC is
  // joined from two pieces (crc32_join); a flipped byte in either piece names that entry.
  const std::vector<std::pair<std::string, std::string>> entries = {
      {"a", std::string(5u << 20, 'a')}, {"b", std::string(9u << 20, 'b')}, {"c", std::string(3u << 20, 'c')}};
  const std::string path = write_zip("shares.zip", entries);
  const int saved = cpu::num_threads();
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    cpu::set_num_threads(threads);
    const io::ZipArchive zip(path);
    const std::vector<const io::ZipEntry*> all = {&zip.entry("a"), &zip.entry("b"), &zip.entry("c")};
    const std::vector<const uint8_t*> data = zip.stored_data(all);
    for (size_t i = 0; i < all.size(); ++i)
      REQUIRE(std::string(reinterpret_cast<const char*>(data[i]), entries[i].second.size()) == entries[i].second);
  }
  const std::string bytes = read_bytes(path);
  const size_t b_at = bytes.find(std::string(4096, 'b'));
  REQUIRE(b_at != std::string::npos);
  for (size_t offset : {size_t{100}, (size_t{9} << 20) - 100}) {  // before and after the threads' cut
    std::string bad = bytes;
    bad[b_at + offset] ^= 0x20;
    const std::string bad_path = write_bytes("shares_flipped.zip", bad);
    for (int threads : {1, 2}) {
      cpu::set_num_threads(threads);
      const io::ZipArchive zip(bad_path);
      const std::vector<const io::ZipEntry*> all = {&zip.entry("a"), &zip.entry("b"), &zip.entry("c")};
      REQUIRE_THROWS_WITH(zip.stored_data(all), Contains("entry 'b'") && Contains("CRC-32"));
    }
  }
  cpu::set_num_threads(saved);
}

TEST_CASE("robust inputs: a compressed storage inflates only to what its tensors need", "[io][torch][zip][robust]") {
  // 4 floats declared, 4 MB of zeros deflated to a few KB: refused before inflating.
  Pickle p;
  p.op("}(").tensor("w", "0", 4, 0, {4}, {1}).op("u.");
  const std::string path = write_zip("bomb.pth", {{"archive/data.pkl", p.bytes},
                                                  {"archive/data/0", std::string(4u << 20, '\0')}}, true);
  REQUIRE(fs::file_size(path) < 100000);
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(path), Contains("bomb.pth") && Contains("declares 4194304 uncompressed bytes") &&
                                                     Contains("need 16"));
}

TEST_CASE("robust inputs: memo references in meta cannot multiply its size", "[io][torch][pickle][robust]") {
  // meta = [s] * 100 with s one 1 MiB string put in the memo once: 100 MiB of JSON text.
  Pickle p;
  p.op("}(").text("state_dict").op("}").text("meta").op("(").text(std::string(1u << 20, 'a')).op(std::string("q\x00", 2));
  for (int i = 0; i < 99; ++i) p.op(std::string("h\x00", 2));
  p.op("lu.");
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("memo.pth", p.bytes)),
                      Contains("memo.pth") && Contains("meta holds more than"));
  // Referenced a few times it is fine.
  Pickle q;
  q.op("}(").text("state_dict").op("}").text("meta").op("(").text("abc").op(std::string("q\x00", 2));
  q.op(std::string("h\x00", 2)).op("lu.");
  REQUIRE(io::TorchCheckpoint(pickle_file("memo_ok.pth", q.bytes)).meta() == nlohmann::json({"abc", "abc"}));
}

TEST_CASE("robust inputs: a bad storage size names the tensor once", "[io][torch][errors][robust]") {
  Pickle p;
  p.op("}(").text("w").op("ctorch._utils\n_rebuild_tensor_v2\n(");
  p.op("(").text("storage").op("ctorch\nFloatStorage\n").text("0").text("cpu").text("four").op("tQ");
  p.integer(0).ints({4}).ints({1}).op("\x89" "ccollections\nOrderedDict\n)RtRu.");
  REQUIRE_THROWS_WITH(io::TorchCheckpoint(pickle_file("str_size.pth", p.bytes)),
                      Contains("tensor 'w' has a str for its storage size") && !Contains("tensor 'tensor"));
}
