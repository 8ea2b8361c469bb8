// ann_bench — the issue-15 table: every index kind over 1,000,000 x 256 unit features drawn from
// a clustered distribution (no trained model's features at this scale here): build time, index
// bytes, single-query latency on one thread, batched queries/s on all threads, recall@10 against
// the exact inner product; and the project's own exact path (one GEMM + topk, search::top_n).
//   build-test/bench/ann_bench [rows] [queries]        (docs/performance.md)
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>

#include "blip/core/rng.hpp"
#include "blip/search/ann_index.hpp"
#include "blip/testing/clustered_features.hpp"
#include "blip/search/query.hpp"

using namespace blip;
using namespace blip::search;
using clock_type = std::chrono::steady_clock;

namespace {
double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

std::vector<float> clustered(int64_t n, int64_t d, int64_t clusters, uint64_t seed) {
  return testing::clustered_unit_features(n, d, clusters, seed);
}

double recall(const AnnResult& got, const AnnResult& truth, int64_t q, int64_t k) {
  int64_t hit = 0;
  for (int64_t i = 0; i < q; ++i) {
    const std::set<int64_t> want(truth.ids.begin() + i * k, truth.ids.begin() + (i + 1) * k);
    for (int64_t j = 0; j < k; ++j) hit += want.count(got.ids[static_cast<size_t>(i * k + j)]);
  }
  return static_cast<double>(hit) / static_cast<double>(q * k);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void report(const AnnIndex& index, const char* label, double build_s, const std::vector<float>& queries, int64_t q,
            const AnnResult& truth, const AnnSearchParams& p, int threads) {
  const int64_t d = index.dim(), k = 10;
  // single queries, one thread
  omp_set_num_threads(1);
  std::vector<double> lat;
  for (int64_t i = 0; i < std::min<int64_t>(q, 200); ++i) {
    const auto t = clock_type::now();
    (void)index.search(queries.data() + i * d, 1, k, p);
    lat.push_back(since(t));
  }
  omp_set_num_threads(threads);
  const auto t = clock_type::now();
  const AnnResult all = index.search(queries.data(), q, k, p);
  const double batch_s = since(t);
  std::printf("| %s | %.1f s | %.0f MB | %.3f ms | %.0f | %.3f |\n", label, build_s,
              static_cast<double>(index.to_bytes().size()) / 1e6, 1e3 * median(lat), static_cast<double>(q) / batch_s,
              recall(all, truth, q, k));
  std::fflush(stdout);
}
}  // namespace

// The bound of an exact scan: reading every feature once, per thread count. The sum runs into
// 64 independent partial sums (plain element-wise adds, which the compiler vectorises without
// reassociating anything), so it is limited by the reads, not by an add chain.
double read_gb_per_s(const std::vector<float>& x, int threads) {
  omp_set_num_threads(threads);
  std::vector<double> t;
  const auto n = static_cast<int64_t>(x.size()) / 64;
  for (int r = 0; r < 5; ++r) {
    const auto s = clock_type::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      float acc[64] = {};
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < 64; ++j) acc[j] += x[static_cast<size_t>(i * 64 + j)];
      for (float a : acc) total += a;
    }
    t.push_back(since(s));
    if (total == 12345.f) std::printf(" ");
  }
  return static_cast<double>(n) * 64 * 4 / median(t) / 1e9;
}

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1000000, q = argc > 2 ? std::atoll(argv[2]) : 1000, d = 256, k = 10;
  const bool only_exact = argc > 3 && std::string(argv[3]) == "--only-exact";
  const int threads = omp_get_max_threads();
  auto t = clock_type::now();
  const std::vector<float> all = clustered(n + q, d, 4096, 1);
  const std::vector<float> x(all.begin(), all.begin() + n * d), queries(all.begin() + n * d, all.end());
  std::printf("%lld rows x %lld, %lld queries (drawn in %.1f s), %d threads\n", static_cast<long long>(n),
              static_cast<long long>(d), static_cast<long long>(q), since(t), threads);
  std::printf("| kind | build | index bytes | single query, 1 thread (median) | batched queries/s | recall@10 |\n|---|---|---|---|---|---|\n");

  // The project's own exact path: one GEMM + topk over the feature matrix.
  {
    const Tensor<float, Cpu> feats = Tensor<float, Cpu>::from_vector({n, d}, x);
    std::vector<double> single_ms;
    for (int th = 1; th <= threads; ++th) {
      omp_set_num_threads(th);
      std::vector<double> lat;
      for (int64_t i = 0; i < 20; ++i) {
        const Tensor<float, Cpu> one = Tensor<float, Cpu>::from_vector({1, d}, std::vector<float>(queries.begin() + i * d, queries.begin() + (i + 1) * d));
        const auto s = clock_type::now();
        (void)top_n(feats, one, k);
        lat.push_back(since(s));
      }
      single_ms.push_back(1e3 * median(lat));
      std::vector<double> gemm;
      for (int64_t i = 0; i < 10; ++i) {
        const Tensor<float, Cpu> one = Tensor<float, Cpu>::from_vector({1, d}, std::vector<float>(queries.begin() + i * d, queries.begin() + (i + 1) * d));
        const auto s = clock_type::now();
        const auto top = topk(matmul(one, transpose(feats, 0, 1)), k);  // the GEMM path top_n takes for batches
        gemm.push_back(since(s));
        const auto scan = top_n(feats, one, k)[0];
        const std::vector<int64_t> gemm_rows = top.indices.to_vector();
        for (int64_t j = 0; j < k; ++j)
          if (scan[static_cast<size_t>(j)].entry != gemm_rows[static_cast<size_t>(j)])
            std::printf("note: scan and GEMM order differ at rank %lld (a near tie)\n", static_cast<long long>(j));
      }
      std::printf("  (GEMM + topk path for the same single query: %.1f ms)\n", 1e3 * median(gemm));
      const double gbs = read_gb_per_s(x, th);
      std::printf("exact single query, %d thread(s): %.1f ms; reading the %.0f MB of features: %.1f GB/s = %.1f ms\n", th,
                  single_ms.back(), n * d * 4 / 1e6, gbs, n * d * 4 / 1e6 / gbs);
    }
    omp_set_num_threads(threads);
    const Tensor<float, Cpu> qs = Tensor<float, Cpu>::from_vector({q, d}, queries);
    const auto s = clock_type::now();
    (void)top_n(feats, qs, k);
    std::printf("| blip exact (one query: scan; batched: blocked GEMM) | — | %.0f MB | %.3f ms | %.0f | 1 (definition) |\n", n * d * 4 / 1e6,
                single_ms.front(), static_cast<double>(q) / since(s));
    std::fflush(stdout);
  }
  if (only_exact) return 0;
  t = clock_type::now();
  const AnnIndex exact = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::exact});
  const double exact_build = since(t);
  const AnnResult truth = exact.search(queries.data(), q, k);
  report(exact, "FAISS exact (IndexFlatIP)", exact_build, queries, q, truth, {}, threads);

  {
    t = clock_type::now();
    const AnnIndex hnsw = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::hnsw});
    const double b = since(t);
    for (int ef : {16, 32, 64, 128}) {
      const std::string label = str("HNSW32, efSearch ", ef);
      report(hnsw, label.c_str(), b, queries, q, truth, {.ef_search = ef}, threads);
    }
  }
  {
    t = clock_type::now();
    const AnnIndex ivf = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::ivf});
    const double b = since(t);
    for (int64_t np : {8, 16, 32, 64}) {
      const std::string label = str(AnnIndex::describe({.kind = AnnKind::ivf}, n, d), ", nprobe ", np);
      report(ivf, label.c_str(), b, queries, q, truth, {.nprobe = np}, threads);
    }
  }
  {
    t = clock_type::now();
    const AnnIndex pq = AnnIndex::build(x.data(), n, d, {.kind = AnnKind::ivfpq, .pq_m = 32});
    const double b = since(t);
    for (int64_t np : {16, 64}) {
      const std::string label = str(AnnIndex::describe({.kind = AnnKind::ivfpq, .pq_m = 32}, n, d), ", nprobe ", np);
      report(pq, label.c_str(), b, queries, q, truth, {.nprobe = np}, threads);
      const std::string rescored = label + ", exact re-score of 100";
      report(pq, rescored.c_str(), b, queries, q, truth, {.nprobe = np, .rescore = 100, .features = x.data()}, threads);
    }
  }
  return 0;
}
