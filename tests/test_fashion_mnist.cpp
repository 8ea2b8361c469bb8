// The IDX reader (gzip + header validation), the Fashion-MNIST loader, and class-level
// retrieval metrics.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "blip/data/fashion_mnist.hpp"
#include "blip/eval/class_retrieval.hpp"

using namespace blip;
using namespace blip::data;
using Catch::Matchers::Contains;

namespace {

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, size_t data_bytes, uint8_t type = 0x08) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<uint8_t>(d >> shift));
  for (size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, raw.size()) + 64);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string write_temp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const auto path = std::filesystem::temp_directory_path() / ("blip_test_fm_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path.string();
}

}  // namespace

TEST_CASE("parse_idx reads dims big-endian and the bytes after the header", "[idx]") {
  const auto bytes = idx_bytes({2, 3, 258}, 2 * 3 * 258);
  const IdxArray a = parse_idx(bytes, "x.idx");
  REQUIRE(a.dims == std::vector<int64_t>{2, 3, 258});
  REQUIRE(a.data.size() == 2u * 3u * 258u);
  REQUIRE(a.data[0] == 0);
  REQUIRE(a.data[1] == 7);
  REQUIRE(a.data[300] == static_cast<uint8_t>(300 * 7));
}

TEST_CASE("parse_idx rejects bad headers and sizes, naming the file and byte offset", "[idx]") {
  SECTION("wrong magic") {
    auto b = idx_bytes({4}, 4);
    b[1] = 0x01;
    REQUIRE_THROWS_WITH(parse_idx(b, "labels.idx"), Contains("labels.idx") && Contains("magic at byte 0"));
  }
  SECTION("not unsigned bytes") {
    REQUIRE_THROWS_WITH(parse_idx(idx_bytes({4}, 16, 0x0D), "f.idx"), Contains("f.idx") && Contains("byte 2"));
  }
  SECTION("zero or too many dimensions") {
    REQUIRE_THROWS_WITH(parse_idx(idx_bytes({}, 0), "z.idx"), Contains("0 dimensions at byte 3"));
    REQUIRE_THROWS_WITH(parse_idx(idx_bytes({1, 1, 1, 1, 1}, 1), "z.idx"), Contains("5 dimensions at byte 3"));
  }
  SECTION("a dimension of 0") {
    REQUIRE_THROWS_WITH(parse_idx(idx_bytes({3, 0}, 0), "d.idx"), Contains("dimension 1 at byte 8 is 0"));
  }
  SECTION("header cut short") {
    auto b = idx_bytes({3, 5}, 15);
    b.resize(10);
    REQUIRE_THROWS_WITH(parse_idx(b, "h.idx"), Contains("h.idx") && Contains("truncated in its header at byte 10"));
  }
  SECTION("truncated data: dims promise more than the file holds") {
    auto b = idx_bytes({10, 28, 28}, 10 * 28 * 28);
    b.resize(b.size() - 5);
    REQUIRE_THROWS_WITH(parse_idx(b, "img.idx"),
                        Contains("img.idx") && Contains("truncated") && Contains("7840 data bytes from byte 16") &&
                            Contains("ends at byte 7851"));
  }
  SECTION("dims whose product overflows 64 bits allocate nothing") {
    REQUIRE_THROWS_WITH(parse_idx(idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, 8), "big.idx"),
                        Contains("big.idx") && Contains("truncated"));
  }
  SECTION("trailing bytes") {
    auto b = idx_bytes({4}, 6);
    REQUIRE_THROWS_WITH(parse_idx(b, "t.idx"), Contains("2 unexpected bytes after the data at byte 12"));
  }
  SECTION("too short for the magic") {
    REQUIRE_THROWS_WITH(parse_idx({0, 0}, "s.idx"), Contains("s.idx") && Contains("2 bytes"));
  }
}

TEST_CASE("gunzip: round trip, plain input passes, corrupt and truncated streams name the offset", "[idx][gzip]") {
  const auto raw = idx_bytes({50, 40}, 2000);
  const auto gz = gzip(raw);
  REQUIRE(gz.size() < raw.size());
  REQUIRE(gunzip(gz, "a.gz") == raw);
  REQUIRE(gunzip(raw, "a.idx") == raw);  // not gzip: returned as is

  auto two = gz;  // two members, as `cat a.gz b.gz` makes
  two.insert(two.end(), gz.begin(), gz.end());
  auto doubled = raw;
  doubled.insert(doubled.end(), raw.begin(), raw.end());
  REQUIRE(gunzip(two, "two.gz") == doubled);

  auto cut = gz;
  cut.resize(gz.size() / 2);
  REQUIRE_THROWS_WITH(gunzip(cut, "cut.gz"), Contains("cut.gz") && Contains("truncated gzip stream at compressed byte"));

  auto bad = gz;
  bad[12] ^= 0xFF;
  bad[13] ^= 0xFF;
  bad[14] ^= 0xFF;
  REQUIRE_THROWS_WITH(gunzip(bad, "bad.gz"), Contains("bad.gz") && Contains("compressed byte"));

  auto trailing = gz;
  trailing.push_back(0x42);
  REQUIRE_THROWS_WITH(gunzip(trailing, "tr.gz"), Contains("garbage after the gzip stream"));

  REQUIRE_THROWS_WITH(gunzip(gz, "bomb.gz", 100), Contains("bomb.gz") && Contains("more than 100 bytes"));
}

TEST_CASE("read_idx and fashion_mnist_split validate files end to end", "[idx][fashion_mnist]") {
  const std::string images = write_temp("images.gz", gzip(idx_bytes({3, 28, 28}, 3 * 784)));
  std::vector<uint8_t> labels_raw = idx_bytes({3}, 0);
  labels_raw.insert(labels_raw.end(), {9, 0, 4});
  const std::string labels = write_temp("labels.gz", gzip(labels_raw));
  const FashionMnistSplit split = fashion_mnist_split(read_idx(images), read_idx(labels), images, labels);
  REQUIRE(split.size() == 3);
  REQUIRE(split.labels == std::vector<uint8_t>{9, 0, 4});
  REQUIRE(split.image(1)[0] == static_cast<uint8_t>(784 * 7));

  std::vector<uint8_t> bad_label = labels_raw;
  bad_label[9] = 10;
  REQUIRE_THROWS_WITH(fashion_mnist_split(read_idx(images), parse_idx(bad_label, "l"), images, "l"),
                      Contains("label 10 at byte 9"));
  REQUIRE_THROWS_WITH(fashion_mnist_split(parse_idx(idx_bytes({3, 28, 27}, 3 * 28 * 27), "i"), read_idx(labels), "i", labels),
                      Contains("'i' has dims [3, 28, 27]"));
  REQUIRE_THROWS_WITH(fashion_mnist_split(read_idx(images), parse_idx(idx_bytes({4}, 4), "l4"), images, "l4"),
                      Contains("'l4' has dims [4], expected [3]"));
  REQUIRE_THROWS_WITH(read_idx("/nonexistent/blip.gz"), Contains("/nonexistent/blip.gz"));
  std::filesystem::remove(images);
  std::filesystem::remove(labels);
}

TEST_CASE("the installed Fashion-MNIST: 60k/10k images, 6000/1000 of each class", "[fashion_mnist][data]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/t10k-labels-idx1-ubyte.gz")) {
    WARN("Fashion-MNIST is not installed at " << dir << "; skipped");
    return;
  }
  const FashionMnist fm = load_fashion_mnist(dir);
  REQUIRE(fm.train.size() == 60000);
  REQUIRE(fm.test.size() == 10000);
  std::array<int, 10> train_counts{}, test_counts{};
  for (uint8_t l : fm.train.labels) ++train_counts[l];
  for (uint8_t l : fm.test.labels) ++test_counts[l];
  for (int c = 0; c < 10; ++c) {
    REQUIRE(train_counts[static_cast<size_t>(c)] == 6000);
    REQUIRE(test_counts[static_cast<size_t>(c)] == 1000);
  }
  // Clothes are centred on a black background: the border is darker than the middle.
  double border = 0, centre = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    border += fm.test.image(i)[0] + fm.test.image(i)[27] + fm.test.image(i)[27 * 28];
    centre += fm.test.image(i)[14 * 28 + 14];
  }
  REQUIRE(centre > 10 * border / 3);
}

TEST_CASE("class_retrieval: class-level recall and precision", "[eval][class_retrieval]") {
  // 4 images (classes 0, 0, 1, 2), 3 texts (classes 0, 1, 2).
  const auto i2t = Tensor<float>::from_vector({4, 3}, {0.9f, 0.1f, 0.0f,    // right at 1
                                                       0.2f, 0.8f, 0.1f,    // right at 2
                                                       0.3f, 0.1f, 0.7f,    // right at 3
                                                       0.0f, 0.1f, 0.5f});  // right at 1
  const auto t2i = Tensor<float>::from_vector({3, 4}, {0.1f, 0.9f, 0.5f, 0.0f,    // class 0: images 1, 2, 0 -> hit at 1
                                                       0.9f, 0.0f, 0.8f, 0.1f,    // class 1: images 0, 2 -> hit at 2
                                                       0.0f, 0.1f, 0.2f, 0.3f});  // class 2: image 3 first
  const auto m = eval::class_retrieval(i2t, t2i, {0, 0, 1, 2}, {0, 1, 2}, {1, 2}, 2);
  REQUIRE(m.size() == 5);
  REQUIRE(m[0].first == "i2t/retrieval/Recall@1");
  REQUIRE(m[0].second == Approx(50.0));
  REQUIRE(m[1].second == Approx(75.0));
  REQUIRE(m[2].first == "t2i/retrieval/Recall@1");
  REQUIRE(m[2].second == Approx(200.0 / 3));
  REQUIRE(m[3].second == Approx(100.0));
  REQUIRE(m[4].first == "t2i/retrieval/Precision@2");
  // top 2: class 0 -> {1, 2}: 1/2; class 1 -> {0, 2}: 1/2; class 2 -> {3, 2}: 1/2
  REQUIRE(m[4].second == Approx(50.0));
  REQUIRE_THROWS_WITH(eval::class_retrieval(i2t, t2i, {0, 0, 1}, {0, 1, 2}), Contains("do not match"));
  REQUIRE_THROWS_WITH(eval::class_retrieval(i2t, t2i, {0, 0, 1, 2}, {0, 1, 2}, {1, 5}), Contains("top 5"));
}
