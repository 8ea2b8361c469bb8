// blip/search/ann_index.hpp — approximate nearest-neighbour indexes over L2-normalised features
// (image_feat / text_feat), through FAISS (Debian libfaiss-dev 1.7.3, CPU): the optional
// component blip::faiss.
//
// Contract:
// - AnnIndex::build(features [n, d] row-major, n, d, options): kind exact (IndexFlatIP: the
//   recall oracle), hnsw (HNSW<m>,Flat over inner products), ivf (IVF<nlist>,Flat), ivfpq
//   (IVF<nlist>,PQ<pq_m>, optionally with an OPQ rotation). IVF kinds are trained on the
//   features given (at most train_max of them, a fixed sample). Scores are inner products:
//   cosine similarities for unit rows.
// - add(features, n): appends rows (ids continue from size()); IVF kinds reuse their training.
// - search(queries [q, d], q, k, params) -> {scores [q, k], ids [q, k]} best first, -1 / -inf
//   past the end of a small index. params: ef_search (hnsw), nprobe (ivf kinds), and for ivfpq a
//   re-score: the top `rescore` candidates re-scored exactly from `features` (the stored rows,
//   e.g. a memory-mapped feature file), then the best k kept.
// - to_bytes() / from_bytes(bytes, what): a blip container (magic, version, kind, n, d, FAISS
//   bytes, CRC-32 of everything before it). from_bytes checks size and CRC before FAISS parses
//   anything, so a damaged or foreign file is an error naming `what` and the offset; FAISS's own
//   reader is not hardened against crafted files with a valid checksum (docs/security.md).
// - write_ann / read_ann: the file OUT.ann beside a feature index OUT (blip index --kind),
//   tagged with the index's checksum, so an ANN file left from another build is refused.
//   ann_nearest(ann, index, params): the ANN search as a NearestFn for search/gallery.hpp.
// - search() sets FAISS's search parameters on the shared index: one search at a time per
//   AnnIndex (blip serve runs them all on its engine thread).
// - Every size, k and parameter is checked (blip::Error naming it); FAISS exceptions become
//   blip::Error.
#pragma once

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "blip/core/error.hpp"
#include "blip/core/rng.hpp"
#include "blip/io/atomic_file.hpp"
#include "blip/io/crc32.hpp"
#include "blip/ops/copy.hpp"
#include "blip/search/feature_index.hpp"
#include "blip/search/nearest.hpp"

namespace blip::search {

enum class AnnKind { exact, hnsw, ivf, ivfpq };

inline const char* ann_kind_name(AnnKind k) {
  switch (k) {
    case AnnKind::exact: return "exact";
    case AnnKind::hnsw: return "hnsw";
    case AnnKind::ivf: return "ivf";
    case AnnKind::ivfpq: return "ivfpq";
  }
  return "?";
}
inline AnnKind parse_ann_kind(const std::string& s) {
  for (AnnKind k : {AnnKind::exact, AnnKind::hnsw, AnnKind::ivf, AnnKind::ivfpq})
    if (s == ann_kind_name(k)) return k;
  fail("index kind '", s, "' is not one of exact, hnsw, ivf, ivfpq");
}

struct AnnOptions {
  AnnKind kind = AnnKind::exact;
  int hnsw_m = 32;              // HNSW32, as the table
  int ef_construction = 40;     // FAISS's default
  int64_t nlist = 0;            // IVF lists; 0: about 4 sqrt(n), at least 1, at most n / 39
  int pq_m = 32;                // PQ sub-quantisers (d must be a multiple), 8 bits each
  bool opq = false;             // OPQ rotation before IVF-PQ
  int64_t train_max = 256 * 1024;  // rows used to train IVF / PQ (a fixed sample)
  uint64_t seed = 1234;
};

struct AnnSearchParams {
  int ef_search = 64;         // hnsw
  int64_t nprobe = 16;        // ivf, ivfpq
  int64_t rescore = 0;        // ivfpq: candidates re-scored exactly from `features` (0: none)
  const float* features = nullptr;  // the indexed rows [rows, d], for the re-score
  int64_t rows = 0;                 // how many `features` holds (0: size()); ids outside are dropped
};

struct AnnResult {
  std::vector<float> scores;   // [q, k]
  std::vector<int64_t> ids;    // [q, k]
};

class AnnIndex {
 public:
  static AnnIndex build(const float* features, int64_t n, int64_t d, const AnnOptions& o) {
    BLIP_CHECK(d > 0 && d <= 65536 && n >= 0, "AnnIndex: ", n, " rows of width ", d);
    AnnIndex index;
    index.kind_ = o.kind;
    index.d_ = d;
    const std::string factory = describe(o, n, d);
    guarded("building " + factory, [&] {
      index.index_.reset(faiss::index_factory(static_cast<int>(d), factory.c_str(), faiss::METRIC_INNER_PRODUCT));
      if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index.index_.get())) h->hnsw.efConstruction = o.ef_construction;
      if (!index.index_->is_trained) {
        BLIP_CHECK(n > 0, "AnnIndex: an ", ann_kind_name(o.kind), " index needs rows to train on");
        const std::vector<float> sample = training_sample(features, n, d, o);
        index.index_->train(static_cast<int64_t>(sample.size()) / d, sample.data());
      }
    });
    index.add(features, n);
    return index;
  }

  void add(const float* features, int64_t n) {
    BLIP_CHECK(n >= 0 && (n == 0 || features), "AnnIndex::add: ", n, " rows");
    if (n > 0) guarded("adding rows", [&] { index_->add(n, features); });
  }

  AnnResult search(const float* queries, int64_t q, int64_t k, const AnnSearchParams& p = {}) const {
    BLIP_CHECK(q >= 0 && k > 0 && k <= 100000, "AnnIndex::search: ", q, " queries, k = ", k);
    BLIP_CHECK(p.ef_search > 0 && p.nprobe > 0 && p.rescore >= 0, "AnnIndex::search: ef_search ", p.ef_search,
               ", nprobe ", p.nprobe, ", rescore ", p.rescore, " must be positive");
    const bool rescore = p.rescore > 0 && kind_ == AnnKind::ivfpq;
    BLIP_CHECK(!rescore || p.features, "AnnIndex::search: a re-score needs the stored features");
    const int64_t fetch = rescore ? std::max(k, p.rescore) : k;
    AnnResult r;
    r.scores.resize(static_cast<size_t>(q * fetch));
    r.ids.resize(static_cast<size_t>(q * fetch));
    guarded("searching", [&] {
      faiss::ParameterSpace space;
      if (kind_ == AnnKind::hnsw) space.set_index_parameter(index_.get(), "efSearch", std::max<int64_t>(p.ef_search, fetch));
      if (kind_ == AnnKind::ivf || kind_ == AnnKind::ivfpq) space.set_index_parameter(index_.get(), "nprobe", static_cast<double>(p.nprobe));
      index_->search(q, queries, fetch, r.scores.data(), r.ids.data());
    });
    for (size_t i = 0; i < r.ids.size(); ++i)
      if (r.ids[i] < 0) r.scores[i] = -std::numeric_limits<float>::infinity();
    if (!rescore) return r;
    // Exact inner products of the candidates, then the best k (ties: the lower id).
    const int64_t feature_rows = p.rows > 0 ? p.rows : size();
    AnnResult out;
    std::vector<std::pair<float, int64_t>> cand;
    for (int64_t i = 0; i < q; ++i) {
      cand.clear();
      const float* query = queries + i * d_;
      for (int64_t j = 0; j < fetch; ++j) {
        const int64_t id = r.ids[static_cast<size_t>(i * fetch + j)];
        if (id < 0 || id >= feature_rows) continue;  // past the end, or an id no stored row has
        const float* row = p.features + id * d_;
        float dot = 0;
        for (int64_t c = 0; c < d_; ++c) dot += query[c] * row[c];
        cand.emplace_back(dot, id);
      }
      std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (int64_t j = 0; j < k; ++j) {
        const bool have = j < static_cast<int64_t>(cand.size());
        out.scores.push_back(have ? cand[static_cast<size_t>(j)].first : -std::numeric_limits<float>::infinity());
        out.ids.push_back(have ? cand[static_cast<size_t>(j)].second : -1);
      }
    }
    return out;
  }

  int64_t size() const { return index_ ? index_->ntotal : 0; }
  int64_t dim() const { return d_; }
  AnnKind kind() const { return kind_; }

  // What the index belongs to (the checksum of its feature index file), kept in the container.
  uint64_t tag() const { return tag_; }
  void set_tag(uint64_t tag) { tag_ = tag; }

  std::vector<uint8_t> to_bytes() const {
    faiss::VectorIOWriter w;
    guarded("serialising", [&] { faiss::write_index(index_.get(), &w); });
    std::vector<uint8_t> out(kHeader);
    std::memcpy(out.data(), kMagic, 8);
    const int64_t fields[4] = {kVersion, static_cast<int64_t>(kind_), size(), d_};
    std::memcpy(out.data() + 8, fields, sizeof fields);
    const int64_t blob = static_cast<int64_t>(w.data.size());
    std::memcpy(out.data() + 40, &blob, 8);
    std::memcpy(out.data() + 48, &tag_, 8);
    out.resize(kHeader + w.data.size());  // (not insert(): GCC 12 warns of a bounds error there that is not one)
    if (!w.data.empty()) std::memcpy(out.data() + kHeader, w.data.data(), w.data.size());
    const uint32_t crc = io::crc32(io::crc32_init(), out.data(), out.size());
    out.resize(out.size() + 4);
    std::memcpy(out.data() + out.size() - 4, &crc, 4);
    return out;
  }

  static AnnIndex from_bytes(const std::vector<uint8_t>& bytes, const std::string& what) {
    return from_bytes(bytes.data(), bytes.size(), what);
  }
  static AnnIndex from_bytes(const uint8_t* data, size_t size, const std::string& what) {
    const std::span<const uint8_t> bytes(data, size);
    BLIP_CHECK(bytes.size() >= kHeader + 4 && std::memcmp(bytes.data(), kMagic, 8) == 0, what,
               ": not a blip ANN index (", bytes.size(), " bytes; no 'BLIPANN1' magic at offset 0)");
    int64_t fields[5];
    std::memcpy(fields, bytes.data() + 8, sizeof fields);
    const auto [version, kind, n, d, blob] = std::tuple{fields[0], fields[1], fields[2], fields[3], fields[4]};
    BLIP_CHECK(version == kVersion, what, ": ANN index version ", version, " (this blip reads ", kVersion, ")");
    BLIP_CHECK(kind >= 0 && kind <= 3 && d > 0 && d <= 65536 && n >= 0, what, ": bad header at offset 8 (kind ", kind,
               ", rows ", n, ", width ", d, ")");
    BLIP_CHECK(blob >= 0 && static_cast<uint64_t>(blob) == bytes.size() - kHeader - 4, what, ": the index body at offset ",
               kHeader, " declares ", blob, " bytes, the file holds ", bytes.size() - kHeader - 4);
    uint32_t stored = 0;
    std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
    const uint32_t crc = io::crc32(io::crc32_init(), bytes.data(), bytes.size() - 4);
    BLIP_CHECK(stored == crc, what, ": checksum mismatch at offset ", bytes.size() - 4, " (the file is damaged)");
    AnnIndex index;
    index.kind_ = static_cast<AnnKind>(kind);
    index.d_ = d;
    std::memcpy(&index.tag_, bytes.data() + 48, 8);
    struct SpanReader : faiss::IOReader {  // FAISS reads the body in place: no copy of a big index
      const uint8_t* p = nullptr;
      size_t n = 0, at = 0;
      size_t operator()(void* out, size_t item, size_t items) override {
        if (item == 0) return 0;
        const size_t take = std::min(items, (n - at) / item);
        std::memcpy(out, p + at, take * item);
        at += take * item;
        return take;
      }
    } r;
    r.p = bytes.data() + kHeader;
    r.n = bytes.size() - kHeader - 4;
    guarded(what, [&] { index.index_.reset(faiss::read_index(&r)); });
    BLIP_CHECK(index.index_->d == d && index.index_->ntotal == n, what, ": the FAISS index holds ", index.index_->ntotal,
               " rows of width ", index.index_->d, ", the header says ", n, " of ", d);
    return index;
  }

  // The FAISS description of an index of these options over n rows of width d.
  static std::string describe(const AnnOptions& o, int64_t n, int64_t d) {
    const int64_t nlist = o.nlist > 0 ? o.nlist
                                      : std::clamp<int64_t>(static_cast<int64_t>(4 * std::sqrt(static_cast<double>(n))), 1,
                                                            std::max<int64_t>(1, n / 39));
    switch (o.kind) {
      case AnnKind::exact: return "Flat";
      case AnnKind::hnsw:
        BLIP_CHECK(o.hnsw_m >= 4 && o.hnsw_m <= 256, "AnnIndex: hnsw_m ", o.hnsw_m, " outside [4, 256]");
        return str("HNSW", o.hnsw_m, ",Flat");
      case AnnKind::ivf: return str("IVF", nlist, ",Flat");
      case AnnKind::ivfpq:
        BLIP_CHECK(o.pq_m > 0 && d % o.pq_m == 0, "AnnIndex: pq_m ", o.pq_m, " must divide the width ", d);
        return str(o.opq ? str("OPQ", o.pq_m, ",") : std::string(), "IVF", nlist, ",PQ", o.pq_m);
    }
    return "Flat";
  }

 private:
  static constexpr char kMagic[9] = "BLIPANN1";
  static constexpr int64_t kVersion = 2;
  static constexpr size_t kHeader = 56;  // magic, version, kind, rows, width, body bytes, tag

  template <class F>
  static void guarded(const std::string& what, F&& f) {
    try {
      f();
    } catch (const faiss::FaissException& e) {
      fail("AnnIndex: FAISS failed ", what, ": ", e.what());
    }
  }

  // A fixed sample of at most train_max rows (all of them when there are fewer).
  static std::vector<float> training_sample(const float* x, int64_t n, int64_t d, const AnnOptions& o) {
    const int64_t m = std::min(n, std::max<int64_t>(o.train_max, 1));
    std::vector<int64_t> rows(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
    if (m < n) {
      Generator g(o.seed);
      for (int64_t i = 0; i < m; ++i) std::swap(rows[static_cast<size_t>(i)], rows[static_cast<size_t>(i + g.uniform_int(n - i))]);
      rows.resize(static_cast<size_t>(m));
      std::sort(rows.begin(), rows.end());
    }
    std::vector<float> out(static_cast<size_t>(m * d));
    for (int64_t i = 0; i < m; ++i) std::memcpy(out.data() + i * d, x + rows[static_cast<size_t>(i)] * d, sizeof(float) * static_cast<size_t>(d));
    return out;
  }

  AnnKind kind_ = AnnKind::exact;
  int64_t d_ = 0;
  uint64_t tag_ = 0;
  std::unique_ptr<faiss::Index> index_;
};

// ---- an ANN index beside a feature index (blip index --kind) -------------------------------

// The file `blip index --kind hnsw|ivf|ivfpq` writes beside the feature index OUT.
inline std::string ann_path(const std::string& index_path) { return index_path + ".ann"; }

// Writes `ann` for `index` (atomically), tagged with the index's checksum.
inline void write_ann(AnnIndex& ann, const FeatureIndex& index) {
  BLIP_CHECK(ann.size() == index.size() && ann.dim() == index.header().feat_dim, "write_ann: the ANN index holds ",
             ann.size(), " rows of width ", ann.dim(), " for an index of ", index.size(), " of ", index.header().feat_dim);
  ann.set_tag(index.header().checksum);
  const std::vector<uint8_t> bytes = ann.to_bytes();
  io::write_file_atomically(ann_path(index.path()), bytes.data(), bytes.size());
}

// The ANN index beside `index`, checked to belong to it.
inline AnnIndex read_ann(const FeatureIndex& index) {
  const std::string path = ann_path(index.path());
  const io::MappedFile file(path, "ANN index");
  AnnIndex ann = AnnIndex::from_bytes(file.data(), static_cast<size_t>(file.size()), str("ANN index '", path, "'"));
  BLIP_CHECK(ann.tag() == index.header().checksum && ann.size() == index.size() && ann.dim() == index.header().feat_dim,
             "ANN index '", path, "' (", ann.size(), " rows) does not belong to '", index.path(), "' (", index.size(),
             " rows): rebuild it with blip index --kind ", ann_kind_name(ann.kind()), ", or remove it to search exactly");
  return ann;
}

// The hits of an ANN search as a NearestFn (an IVF-PQ index re-scores from the index's
// features when params.rescore > 0). `ann` and `index` must outlive the function.
inline NearestFn ann_nearest(const AnnIndex& ann, const FeatureIndex& index, AnnSearchParams params) {
  params.features = index.feats().data();
  params.rows = index.size();
  return [&ann, params](const Tensor<float, Cpu>& queries, int64_t k) {
    BLIP_CHECK(queries.dim() == 2 && queries.size(1) == ann.dim(), "ann_nearest: queries ", queries.shape(),
               " for an index of width ", ann.dim());
    const Tensor<float, Cpu> q = contiguous(queries);
    k = std::min<int64_t>(k, ann.size());
    std::vector<std::vector<SearchHit>> out(static_cast<size_t>(q.size(0)));
    if (k <= 0) return out;
    const AnnResult r = ann.search(q.data(), q.size(0), k, params);
    for (size_t i = 0; i < out.size(); ++i)
      for (int64_t j = 0; j < k; ++j) {
        const size_t at = i * static_cast<size_t>(k) + static_cast<size_t>(j);
        if (r.ids[at] >= 0 && r.ids[at] < params.rows) out[i].push_back({r.ids[at], r.scores[at], r.scores[at], false});
      }
    return out;
  };
}

}  // namespace blip::search
