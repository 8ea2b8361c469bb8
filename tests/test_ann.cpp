// search/ann_index.hpp: each FAISS index kind against the exact inner product on clustered unit
// features, append, the re-score, the container's checks, and bad parameters.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <set>

#include "blip/core/rng.hpp"
#include "blip/ops/view.hpp"
#include "blip/search/ann_index.hpp"
#include "blip/search/nearest.hpp"
#include "blip/testing/clustered_features.hpp"

using namespace blip;
using namespace blip::search;
using Catch::Matchers::Contains;

namespace {

std::vector<float> clustered(int64_t n, int64_t d, int64_t clusters, uint64_t seed) {
  return testing::clustered_unit_features(n, d, clusters, seed);
}

double recall_at(const AnnResult& got, const AnnResult& truth, int64_t q, int64_t k) {
  int64_t hit = 0;
  for (int64_t i = 0; i < q; ++i) {
    std::set<int64_t> want(truth.ids.begin() + i * k, truth.ids.begin() + (i + 1) * k);
    for (int64_t j = 0; j < k; ++j) hit += want.count(got.ids[static_cast<size_t>(i * k + j)]);
  }
  return static_cast<double>(hit) / static_cast<double>(q * k);
}

}  // namespace

TEST_CASE("every ANN kind finds the exact top 10 on clustered unit features", "[ann]") {
  const int64_t n = 6000, d = 64, q = 100, k = 10;
  // queries from the same clusters as the rows (the last q of one draw)
  const auto all = clustered(n + q, d, 40, 1);
  const std::vector<float> x(all.begin(), all.begin() + n * d), queries(all.begin() + n * d, all.end());
  const AnnIndex exact = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::exact});
  const AnnResult truth = exact.search(queries.data(), q, k);
  // the oracle itself: scores are inner products, best first
  for (int64_t i = 0; i < q; ++i) {
    double dot = 0;
    const int64_t id = truth.ids[static_cast<size_t>(i * k)];
    for (int64_t j = 0; j < d; ++j) dot += double(queries[static_cast<size_t>(i * d + j)]) * x[static_cast<size_t>(id * d + j)];
    REQUIRE(truth.scores[static_cast<size_t>(i * k)] == Approx(dot).margin(1e-5));
    for (int64_t j = 1; j < k; ++j) REQUIRE(truth.scores[static_cast<size_t>(i * k + j - 1)] >= truth.scores[static_cast<size_t>(i * k + j)]);
  }
  const AnnIndex hnsw = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::hnsw});
  REQUIRE(recall_at(hnsw.search(queries.data(), q, k, {.ef_search = 128}), truth, q, k) >= 0.95);
  const AnnIndex ivf = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::ivf, .nlist = 64});
  REQUIRE(recall_at(ivf.search(queries.data(), q, k, {.nprobe = 16}), truth, q, k) >= 0.95);
  const AnnIndex ivfpq = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::ivfpq, .nlist = 64, .pq_m = 16});
  const double coarse = recall_at(ivfpq.search(queries.data(), q, k, {.nprobe = 16}), truth, q, k);
  const double rescored =
      recall_at(ivfpq.search(queries.data(), q, k, {.nprobe = 16, .rescore = 100, .features = x.data()}), truth, q, k);
  INFO("ivfpq recall@10 " << coarse << ", re-scored from the features " << rescored);
  REQUIRE(rescored >= 0.95);
  REQUIRE(rescored > coarse);
}

TEST_CASE("add appends rows, and the container round-trips and rejects damage", "[ann]") {
  const int64_t n = 2000, d = 32;
  const auto x = clustered(n, d, 10, 3);
  AnnIndex a = AnnIndex::build(x.data(), n / 2, d, {.kind = AnnKind::ivf, .nlist = 16});
  a.add(x.data() + (n / 2) * d, n / 2);
  REQUIRE(a.size() == n);
  // the last row finds itself (an id past the first half)
  const AnnResult self = a.search(x.data() + (n - 1) * d, 1, 1, {.nprobe = 16});
  REQUIRE(self.ids[0] == n - 1);
  const std::vector<uint8_t> bytes = a.to_bytes();
  const AnnIndex b = AnnIndex::from_bytes(bytes, "g.ann");
  REQUIRE(b.size() == n);
  REQUIRE(b.kind() == AnnKind::ivf);
  REQUIRE(b.search(x.data() + (n - 1) * d, 1, 1, {.nprobe = 16}).ids[0] == n - 1);
  auto flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  REQUIRE_THROWS_WITH(AnnIndex::from_bytes(flipped, "g.ann"), Contains("g.ann: checksum mismatch"));
  auto cut = bytes;
  cut.resize(bytes.size() - 100);
  REQUIRE_THROWS_WITH(AnnIndex::from_bytes(cut, "g.ann"), Contains("declares"));
  REQUIRE_THROWS_WITH(AnnIndex::from_bytes(std::vector<uint8_t>(10, 0), "x.bin"), Contains("x.bin: not a blip ANN index"));
}

TEST_CASE("bad ANN parameters are errors naming them", "[ann]") {
  const auto x = clustered(100, 24, 4, 5);
  REQUIRE_THROWS_WITH(AnnIndex::build(x.data(), 100, 24, {.kind = AnnKind::ivfpq, .pq_m = 7}), Contains("pq_m 7 must divide the width 24"));
  REQUIRE_THROWS_WITH(parse_ann_kind("lsh"), Contains("'lsh' is not one of"));
  const AnnIndex e = AnnIndex::build(x.data(), 100, 24, {});
  REQUIRE_THROWS_WITH(e.search(x.data(), 1, 0), Contains("k = 0"));
  REQUIRE_THROWS_WITH(e.search(x.data(), 1, 5, {.nprobe = 0}), Contains("nprobe 0"));
  // k beyond the index: the tail is -1 with -inf scores
  const AnnResult r = e.search(x.data(), 1, 120);
  REQUIRE(r.ids[99] >= 0);
  REQUIRE(r.ids[100] == -1);
  REQUIRE(std::isinf(r.scores[119]));
}

TEST_CASE("an ANN file beside a feature index: tagged to it, and a NearestFn over it", "[ann][search]") {
  const int64_t n = 3000, d = 16;
  const std::vector<float> x = clustered(n, d, 30, 5);
  const std::string dir = (std::filesystem::temp_directory_path() / ("blip_ann_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/g.idx";
  std::vector<std::string> entries;
  for (int64_t i = 0; i < n; ++i) entries.push_back("e" + std::to_string(i));
  auto write = [&](const std::string& p, int64_t rows) {
    IndexWriter w(p, IndexKind::texts, "m", 1, std::vector<std::string>(entries.begin(), entries.begin() + rows),
                  static_cast<uint32_t>(d));
    w.append(Tensor<float, Cpu>::from_vector({rows, d}, std::vector<float>(x.begin(), x.begin() + rows * d)));
    w.finish();
  };
  write(path, n);
  const FeatureIndex index = FeatureIndex::read(path);
  AnnOptions o;
  o.kind = AnnKind::ivf;
  AnnIndex ann = AnnIndex::build(index.feats().data(), n, d, o);
  write_ann(ann, index);
  const AnnIndex back = read_ann(index);
  CHECK(back.kind() == AnnKind::ivf);
  AnnSearchParams p;
  p.nprobe = 64;
  const NearestFn ann_fn = ann_nearest(back, index, p);
  const NearestFn exact_fn = exact_nearest(index);
  const auto queries = contiguous(narrow(index.feats(), 0, 0, 20));
  const auto got = ann_fn(queries, 10), want = exact_fn(queries, 10);
  REQUIRE(got.size() == 20);
  int64_t same = 0;
  for (size_t q = 0; q < 20; ++q) {
    REQUIRE(got[q].size() == 10);
    CHECK(got[q][0].entry == static_cast<int64_t>(q));  // each row is its own nearest
    CHECK(got[q][0].similarity == Approx(1).margin(1e-5));
    std::set<int64_t> w;
    for (const auto& h : want[q]) w.insert(h.entry);
    for (const auto& h : got[q]) same += w.count(h.entry);
  }
  CHECK(same >= 190);  // recall@10 >= 0.95
  // The ANN file of another build of the index is refused: a rewritten index has another checksum.
  write(path + ".b", n - 1);
  std::filesystem::copy_file(path + ".ann", path + ".b.ann");
  REQUIRE_THROWS_WITH(read_ann(FeatureIndex::read(path + ".b")), Contains("does not belong to") && Contains("g.idx.b"));
  std::filesystem::remove_all(dir);
}
