// Issue 11 ("Robust inputs"): each defect class of the bad-input audit, reproduced in small and
// asserted to give a clear error (or a documented, warned skip) — never a crash, a hang, an
// unbounded allocation or a silent success. The torch checkpoint classes (2, 3, 12) are in
// test_torch_checkpoint.cpp; the CLI-level ones (9, 10, exit codes) in tests/cli/.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "blip/data/coco_retrieval.hpp"
#include "blip/data/flickr30k_retrieval.hpp"
#include "blip/data/jsonl_retrieval.hpp"
#include "blip/io/atomic_file.hpp"
#include "blip/io/checkpoint_file.hpp"
#include "blip/io/crc32.hpp"
#include "blip/io/json_text.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/search/feature_index.hpp"
#include "blip/search/gallery.hpp"
#include "blip/vision/decode.hpp"
#include "golden_dirs.hpp"
#include "retrieval_fixtures.hpp"

using namespace blip;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
std::string safetensors_bytes(const std::string& header) {
  const uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header;
}

}  // namespace

// ---- class 1: deeply nested JSON ------------------------------------------------------------
TEST_CASE("class 1: JSON from files nests at most 64 levels, refused before parsing", "[robust][json]") {
  const std::string deep = nested(70000);  // ~140 KB, the audit's size: recursing on it overflows the stack
  REQUIRE_THROWS_WITH(io::parse_json_text(deep, "x.json"), Contains("x.json") && Contains("deeper than 64") &&
                                                                Contains("at byte 64"));
  REQUIRE(io::parse_json_text(nested(64), "ok.json").is_array());
  // Brackets inside strings (escaped quotes included) do not count.
  REQUIRE(io::parse_json_text("[\"" + std::string(100, '[') + "\\\"\"]", "s.json").size() == 1);

  // safetensors: in a shape, in data_offsets, in __metadata__.
  for (const std::string& header :
       {"{\"w\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,0]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":" + deep + "}}", "{\"__metadata__\":{\"k\":" + deep + "}}"}) {
    const std::string bytes = safetensors_bytes(header);
    REQUIRE_THROWS_WITH(io::SafeTensorsFile(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "deep.st"),
                        Contains("deep.st") && Contains("deeper than 64"));
  }
  // Messages quote hostile values cut short.
  const std::string long_shape = "[" + std::string(100000, '1') + "]";
  const std::string wide = safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1," + std::string(5000, '7') +
                                             "],\"data_offsets\":[0,0]}}");
  try {
    io::SafeTensorsFile(reinterpret_cast<const uint8_t*>(wide.data()), wide.size(), "wide.st");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).size() < 400);
  }

  // Annotations: COCO ids, Flickr30k ids, a JSONL record.
  REQUIRE_THROWS_WITH(data::parse_coco_retrieval("{\"images\":[{\"id\":" + deep + "}],\"annotations\":[]}", "coco.json"),
                      Contains("coco.json") && Contains("deeper than 64"));
  REQUIRE_THROWS_WITH(data::parse_flickr30k_retrieval("{\"images\":[{\"imgid\":" + deep + "}]}", "f.json", "", "test"),
                      Contains("f.json") && Contains("deeper than 64"));
  REQUIRE_THROWS_WITH(data::parse_jsonl_retrieval("{\"image\":\"a.png\",\"captions\":[]}\n" + deep + "\n", "a.jsonl"),
                      Contains("a.jsonl") && Contains("line 2") && Contains("deeper than 64"));
  // An unknown image id, however long, is quoted cut short.
  try {
    data::parse_coco_retrieval("{\"images\":[],\"annotations\":[{\"image_id\":\"" + std::string(100000, 'x') +
                                   "\",\"id\":1,\"caption\":\"c\"}]}",
                               "ids.json");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("names no entry"));
    CHECK(std::string(e.what()).size() < 400);
  }
}

// ---- class 4 and the path messages: non-regular files ---------------------------------------
TEST_CASE("class 4: directories, FIFOs and devices are refused by name, never read or waited on", "[robust][files]") {
  fixtures::TempDir dir;
  const std::string fifo = dir / "pipe.png";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string sub = dir / "folder.png";
  fs::create_directories(sub);
  REQUIRE_THROWS_WITH(vision::load_image("/dev/zero"), Contains("'/dev/zero'") && Contains("character device"));
  REQUIRE_THROWS_WITH(vision::load_image(fifo), Contains("pipe.png") && Contains("FIFO"));  // returns: no block
  REQUIRE_THROWS_WITH(vision::load_image(sub), Contains("folder.png") && Contains("is a directory"));
  REQUIRE_THROWS_WITH(vision::load_image(""), Contains("the path is empty"));
  REQUIRE_THROWS_WITH(data::load_jsonl_retrieval(fifo), Contains("pipe.png") && Contains("FIFO"));
  REQUIRE_THROWS_WITH(data::load_coco_retrieval("/dev/zero"), Contains("/dev/zero") && Contains("annotation file"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(fifo), Contains("FIFO"));
  REQUIRE_THROWS_WITH(io::with_checkpoint_file(sub, [](const auto&) { return 0; }),
                      Contains("folder.png") && Contains("is a directory"));
  REQUIRE_THROWS_WITH(search::FeatureIndex::read(fifo), Contains("FIFO"));
  REQUIRE_THROWS_WITH(search::read_text_lines("/dev/zero"), Contains("character device"));
  // The byte limit on encoded images applies before reading.
  fixtures::write_random_png(dir / "a.png", 8, 8, 1);
  vision::DecodeOptions small;
  small.max_file_bytes = 10;
  REQUIRE_THROWS_WITH(vision::load_image(dir / "a.png", small), Contains("a.png") && Contains("more than the 10 allowed"));
  // An empty image name in an annotation would stand for the image root.
  REQUIRE_THROWS_WITH(data::parse_jsonl_retrieval("{\"image\": \"\", \"captions\": [\"c\"]}\n", "e.jsonl", "root"),
                      Contains("e.jsonl") && Contains("line 1.image") && Contains("empty image path"));
  REQUIRE_THROWS_WITH(data::parse_coco_retrieval("{\"images\":[{\"id\":1,\"file_name\":\"\"}],\"annotations\":[]}",
                                                 "c.json", "root"),
                      Contains("images[0]") && Contains("empty image path"));
}

TEST_CASE("the checkpoint sniffer says what it saw", "[robust][files]") {
  fixtures::TempDir dir;
  auto sniff = [&](const std::string& name, const std::string& bytes) {
    fixtures::write_text(dir / name, bytes);
    return io::with_checkpoint_file(dir / name, [](const auto&) { return 0; });
  };
  REQUIRE_THROWS_WITH(sniff("short.pth", std::string("\x80\x02\x8a", 3)), Contains("short.pth") && Contains("legacy format"));
  REQUIRE_THROWS_WITH(sniff("magic.pth", std::string("\x80\x02K\x05.", 5)), Contains("legacy PyTorch magic number"));
  REQUIRE_THROWS_WITH(sniff("text.bin", "hello world"), Contains("text.bin") && Contains("11 bytes") &&
                                                             Contains("68 65 6c 6c 6f") && Contains("nor a safetensors"));
  REQUIRE_THROWS_WITH(sniff("empty.bin", ""), Contains("starts with nothing"));
}

// ---- class 7: JPEG warnings and claimed sizes -----------------------------------------------
TEST_CASE("class 7: a truncated JPEG and one whose header claims 16000x16000 are errors", "[robust][vision]") {
  const std::string jpg = (golden_root() / "image" / "decode" / "chelsea_exif_rot6_jpg.jpg").string();
  REQUIRE(fs::exists(jpg));
  std::vector<uint8_t> bytes = vision::read_file_bytes(jpg);
  REQUIRE_NOTHROW(vision::decode_image(bytes.data(), bytes.size(), "whole.jpg"));
  // Cut past the headers: libjpeg only warns ("Premature end of JPEG file") and pads with gray.
  for (size_t keep : {bytes.size() / 2, bytes.size() * 9 / 10, bytes.size() - 2}) {
    INFO("kept " << keep << " of " << bytes.size());
    REQUIRE_THROWS_WITH(vision::decode_image(bytes.data(), keep, "cut.jpg"), Contains("cut.jpg") && Contains("JPEG"));
  }
  // Corrupt entropy-coded data in the middle.
  std::vector<uint8_t> corrupt = bytes;
  for (size_t i = corrupt.size() / 2; i < corrupt.size() / 2 + 64; ++i) corrupt[i] = 0xff;
  REQUIRE_THROWS_WITH(vision::decode_image(corrupt.data(), corrupt.size(), "corrupt.jpg"), Contains("corrupt.jpg"));
  // The frame header (SOF0/SOF2: FF C0|C2, length, precision, height, width) claims 16000x16000.
  std::vector<uint8_t> huge = bytes;
  size_t sof = 2;
  while (sof + 9 < huge.size() && !(huge[sof] == 0xff && (huge[sof + 1] == 0xc0 || huge[sof + 1] == 0xc2))) ++sof;
  REQUIRE(sof + 9 < huge.size());
  for (size_t at : {sof + 5, sof + 7}) {
    huge[at] = 16000 >> 8;
    huge[at + 1] = 16000 & 0xff;
  }
  huge.resize(3000);  // the audit's 3 KB file
  REQUIRE_THROWS_WITH(vision::decode_image(huge.data(), huge.size(), "huge.jpg"),
                      Contains("huge.jpg") && Contains("16000x16000") && Contains("3000 bytes"));
}

// ---- classes 5 and 6: the image folder walk -------------------------------------------------
TEST_CASE("class 5: symlink loops end, and each file is listed once", "[robust][search]") {
  fixtures::TempDir dir;
  fs::create_directories(dir / "imgs/sub");
  fixtures::write_random_png(dir / "imgs/a.png", 4, 4, 1);
  fixtures::write_random_png(dir / "imgs/sub/b.png", 4, 4, 2);
  fs::create_directory_symlink(".", dir / "imgs/x");    // three links to the folder itself:
  fs::create_directory_symlink(".", dir / "imgs/sub/y");  // without cycle detection, an exponential walk
  fs::create_directory_symlink("..", dir / "imgs/sub/z");
  fs::create_directory_symlink("sub", dir / "imgs/again");  // a second path to sub
  fs::create_symlink("a.png", dir / "imgs/a_link.png");    // the same file under another name
  const std::vector<std::string> files = search::list_image_files(dir / "imgs");
  const std::string root = fs::canonical(dir.path).string();
  REQUIRE(files == std::vector<std::string>{root + "/imgs/a.png", root + "/imgs/sub/b.png"});
  // A link out of the tree is followed, once.
  fixtures::TempDir other;
  fixtures::write_random_png(other / "c.png", 4, 4, 3);
  fs::create_directory_symlink(other.path, dir / "imgs/outside");
  REQUIRE(search::list_image_files(dir / "imgs").size() == 3);
}

TEST_CASE("class 6: a folder that cannot be listed is an error, or a warned skip with skip_errors", "[robust][search]") {
  fixtures::TempDir dir;
  fs::create_directories(dir / "imgs");
  fixtures::write_random_png(dir / "imgs/a.png", 4, 4, 1);
  // A folder whose path is longer than PATH_MAX cannot be opened by path, even by root (tests run
  // as root, for whom permission bits do not stop a listing). Built with *at() calls.
  int fd = ::open((dir / "imgs").c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd >= 0);
  const std::string name(200, 'd');
  std::vector<int> fds{fd};
  for (int level = 0; level < 24; ++level) {
    REQUIRE(::mkdirat(fds.back(), name.c_str(), 0755) == 0);
    const int next = ::openat(fds.back(), name.c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(next >= 0);
    fds.push_back(next);
  }
  const int img = ::openat(fds.back(), "deep.png", O_WRONLY | O_CREAT, 0644);
  REQUIRE(img >= 0);
  ::close(img);
  REQUIRE_THROWS_WITH(search::list_image_files(dir / "imgs"),
                      Contains("cannot list folder") && Contains("name too long") && Contains("--skip-errors"));
  std::vector<std::string> warnings;
  search::ListOptions skip;
  skip.skip_errors = true;
  skip.warn = [&](const std::string& w) { warnings.push_back(w); };
  const auto files = search::list_image_files(dir / "imgs", skip);
  REQUIRE(files.size() == 1);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Contains("cannot list folder") && Contains("(skipped)"));
  // Clean up bottom-up: remove_all goes by path, which is too long here.
  ::unlinkat(fds.back(), "deep.png", 0);
  for (size_t i = fds.size() - 1; i > 0; --i) {
    ::close(fds[i]);
    ::unlinkat(fds[i - 1], name.c_str(), AT_REMOVEDIR);
  }
  ::close(fds[0]);
}

// ---- class 8: the index checksum covers the whole file; non-finite values refused ----------
TEST_CASE("class 8: a flipped embeds byte fails the checksum, NaN embeds are refused", "[robust][search]") {
  fixtures::TempDir dir;
  const std::string path = dir / "g.idx";
  const auto feats = Tensor<float, Cpu>::from_vector({2, 2}, {1, 0, 0, 1});
  const auto embeds = Tensor<float, Cpu>::from_vector({2, 1, 3}, {0.5f, 0.25f, 1, 2, 3, 4});
  {
    search::IndexWriter w(path, search::IndexKind::images, "m", 1, {"a.png", "b.png"}, 2, search::EmbedsDtype::f32, 1, 3);
    w.append(feats, &embeds);
    w.finish();
  }
  REQUIRE(search::FeatureIndex::read(path).embeds({1}).to_vector() == std::vector<float>{2, 3, 4});
  const std::vector<uint8_t> good = read_bytes(path);
  const size_t embeds_at = 128;  // the header, then the strings (27 bytes) padded to 64
  std::vector<uint8_t> flipped = good;
  flipped[embeds_at + 13] ^= 0x40;  // inside row 1's embeds
  write_bytes(dir / "flipped.idx", flipped);
  REQUIRE_THROWS_WITH(search::FeatureIndex::read(dir / "flipped.idx"), Contains("flipped.idx") && Contains("checksum mismatch"));
  // A NaN written with a valid checksum (a producer's bug, not a damaged file) is still refused.
  std::vector<uint8_t> nan = good;
  const float q = std::nanf("");
  std::memcpy(nan.data() + embeds_at + 16, &q, 4);
  std::fill(nan.begin() + 56, nan.begin() + 64, 0);
  search::detail::Crc32 sum;
  sum.add(nan.data(), nan.size());
  const uint64_t crc = sum.c;
  std::memcpy(nan.data() + 56, &crc, 8);
  write_bytes(dir / "nan.idx", nan);
  REQUIRE_THROWS_WITH(search::FeatureIndex::read(dir / "nan.idx"),
                      Contains("nan.idx") && Contains("image_embeds value at byte ") && Contains("not finite"));
  // Writers refuse non-finite values, naming the entry.
  search::IndexWriter w(dir / "w.idx", search::IndexKind::images, "m", 1, {"a.png", "b.png"}, 2);
  REQUIRE_THROWS_WITH(w.append(Tensor<float, Cpu>::from_vector({2, 2}, {1, 0, INFINITY, 0})),
                      Contains("non-finite feature value for entry 1 ('b.png')"));
}

TEST_CASE("class 8/12: the CRC-32 of io/crc32.hpp equals zlib's for every length, offset and start", "[robust][crc]") {
  Generator gen(11);
  std::vector<uint8_t> buf(1 << 16);
  for (auto& b : buf) b = static_cast<uint8_t>(gen.uniform_int(256));
  int mismatches = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const size_t off = static_cast<size_t>(gen.uniform_int(64));
    const size_t n = trial < 600 ? static_cast<size_t>(trial) : static_cast<size_t>(gen.uniform_int(static_cast<int64_t>(buf.size()) - 64));
    const uint32_t start = trial % 3 == 0 ? io::crc32_init() : static_cast<uint32_t>(gen.uniform_int(1ll << 32));
    mismatches += io::crc32(start, buf.data() + off, n) != static_cast<uint32_t>(crc32_z(start, buf.data() + off, n));
  }
  REQUIRE(mismatches == 0);
#ifdef BLIP_CRC32_PCLMUL
  // The 512-bit fold against the 128-bit one, where the CPU has VPCLMULQDQ (crc32 above takes it
  // from 256 bytes on).
  if (io::detail::crc32_has_vpclmul()) {
    for (int trial = 0; trial < 500; ++trial) {
      const size_t off = static_cast<size_t>(gen.uniform_int(64));
      const size_t n = (256 + static_cast<size_t>(gen.uniform_int(static_cast<int64_t>(buf.size()) - 400))) & ~size_t{15};
      const uint32_t reg = static_cast<uint32_t>(gen.uniform_int(1ll << 32));
      mismatches += io::detail::crc32_vpclmul(buf.data() + off, n, reg) != io::detail::crc32_pclmul(buf.data() + off, n, reg);
    }
    REQUIRE(mismatches == 0);
  } else {
    WARN("no VPCLMULQDQ on this CPU: the 512-bit CRC fold is not exercised");
  }
#endif
  // The check value of the zip polynomial.
  REQUIRE(io::crc32(io::crc32_init(), "123456789", 9) == 0xcbf43926u);
}

// ---- class 11: every file is written through the atomic writer ------------------------------
TEST_CASE("class 11: a symlink planted beside the output is never followed", "[robust][atomic]") {
  fixtures::TempDir dir;
  const std::string victim = dir / "victim.txt";
  fixtures::write_text(victim, "precious");
  const std::string out = dir / "g.idx";
  fs::create_symlink(victim, out + ".tmp");  // the old fixed temporary name
  for (int i = 0; i < 4; ++i) fs::create_symlink(victim, out + ".tmp-" + std::to_string(i) + "-AAAAAA");
  {
    search::IndexWriter w(out, search::IndexKind::texts, "m", 1, {"x"}, 2);
    w.append(Tensor<float, Cpu>::from_vector({1, 2}, {1, 0}));
    w.finish();
  }
  REQUIRE(fs::is_regular_file(fs::symlink_status(out)));  // a file, not the planted link
  REQUIRE(read_bytes(victim) == std::vector<uint8_t>{'p', 'r', 'e', 'c', 'i', 'o', 'u', 's'});
  REQUIRE(search::FeatureIndex::read(out).entries() == std::vector<std::string>{"x"});
  // A symlink at the output itself is replaced, not written through.
  fs::remove(out);
  fs::create_symlink(victim, out);
  {
    io::AtomicFile f(out);
    f.write("new", 3);
    f.commit();
  }
  REQUIRE(fs::is_regular_file(fs::symlink_status(out)));
  REQUIRE(read_bytes(victim).size() == 8);
}

TEST_CASE("stale temporaries of a killed save are removed by the next save of the same file", "[robust][atomic]") {
  fixtures::TempDir dir;
  const std::string out = dir / "state.safetensors";
  // pid 0 cannot be a running writer; a live pid (ours) must be left alone, as must other files.
  fixtures::write_text(out + ".tmp-999999999-Ab3dEf", "left by a killed save");
  fixtures::write_text(out + ".tmp-" + std::to_string(::getpid()) + "-XyZ123", "a save in progress");
  fixtures::write_text(dir / "other.safetensors.tmp-999999999-Ab3dEf", "another target's");
  {
    io::AtomicFile f(out);
    f.write("x", 1);
    f.commit();
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  REQUIRE(names == std::vector<std::string>{"other.safetensors.tmp-999999999-Ab3dEf", "state.safetensors",
                                            "state.safetensors.tmp-" + std::to_string(::getpid()) + "-XyZ123"});
}
