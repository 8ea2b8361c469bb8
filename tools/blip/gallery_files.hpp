// tools/blip/gallery_files.hpp — an index as `blip search` and `blip serve` open it: the feature
// index OUT, and the ANN index OUT.ann beside it when `blip index --kind hnsw|ivf|ivfpq` made
// one (docs/search.md), with the options that build and query it, and put_text for JSON output.
//
// Without the FAISS component (libfaiss-dev absent at build time) only --kind exact exists, and
// an OUT.ann is ignored with a note: the exact search gives the true neighbours anyway.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <blip/search/gallery.hpp>
#include <blip/text/utf8.hpp>
#ifdef BLIP_WITH_FAISS
#include <blip/search/ann_index.hpp>
#endif

#include "commands.hpp"
#include "model_setup.hpp"

namespace blip::cli {

// JSON text must be UTF-8; file names and texts need not be. A value that is not valid UTF-8 is
// written with U+FFFD in place of the bad bytes, and its exact bytes as hex under KEY_hex.
inline void put_text(nlohmann::ordered_json& obj, const std::string& key, const std::string& value) {
  obj[key] = value;
  if (blip::text::is_valid_utf8(value)) return;
  std::string hex;
  for (unsigned char c : value) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  obj[key + "_hex"] = hex;
}


// blip index: which index to build beside the features.
struct AnnBuildChoice {
  std::string kind = "auto";  // auto: exact up to kAutoExactMax entries, else ivf
  int64_t nlist = 0;
  int hnsw_m = 32, pq_m = 32, ef_construction = 40;
  bool opq = false;
};
inline constexpr int64_t kAutoExactMax = 100000;

inline void add_ann_build_options(CLI::App* cmd, AnnBuildChoice& c) {
  cmd->add_option("--kind", c.kind,
                  "Search index beside the features: exact (GEMM over all rows), hnsw, ivf, ivfpq (FAISS), or auto: "
                  "exact up to 100000 entries, else ivf")
      ->check(CLI::IsMember({"auto", "exact", "hnsw", "ivf", "ivfpq"}))->capture_default_str();
  cmd->add_option("--nlist", c.nlist, "IVF lists (0: 4 sqrt(N))")->check(non_negative());
  cmd->add_option("--hnsw-m", c.hnsw_m, "HNSW neighbours per node")->check(CLI::Range(4, 256))->capture_default_str();
  cmd->add_option("--ef-construction", c.ef_construction, "HNSW candidates explored per insertion (higher: better graph, slower build)")
      ->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--pq-m", c.pq_m, "IVF-PQ sub-quantisers (must divide the feature size)")->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_flag("--opq", c.opq, "IVF-PQ with an OPQ rotation");
}

// blip search / serve: how to query it.
struct AnnQueryChoice {
  int ef_search = 128;
  int64_t nprobe = 16, rescore = 100;
  bool exact = false;
};

inline void add_ann_query_options(CLI::App* cmd, AnnQueryChoice& c) {
  cmd->add_option("--ef-search", c.ef_search, "HNSW: candidates explored per query")->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--nprobe", c.nprobe, "IVF: lists visited per query")->check(positive())->capture_default_str();
  cmd->add_option("--rescore", c.rescore, "IVF-PQ: candidates re-scored exactly from the stored features")
      ->check(non_negative())->capture_default_str();
  cmd->add_flag("--exact", c.exact, "Ignore the ANN index: exact search over all features");
}

// The feature index and, when present and wanted, its ANN index.
class OpenedGallery {
 public:
  OpenedGallery(const std::string& path, const AnnQueryChoice& q, bool quiet, const std::string& root = {})
      : index_(std::make_unique<search::FeatureIndex>(search::FeatureIndex::read(path))) {
    if (!root.empty()) {
      BLIP_CHECK(index_->kind() == search::IndexKind::images, "--root: '", path, "' is an index of texts (no files to find)");
      index_->set_root(search::listing_root(root));
    }
    std::error_code ec;
    if (q.exact || !std::filesystem::exists(path + ".ann", ec)) return;
#ifdef BLIP_WITH_FAISS
    ann_ = std::make_unique<search::AnnIndex>(search::read_ann(*index_));
    search::AnnSearchParams p;
    p.ef_search = q.ef_search;
    p.nprobe = q.nprobe;
    p.rescore = q.rescore;
    nearest_ = search::ann_nearest(*ann_, *index_, p);
    kind_ = search::ann_kind_name(ann_->kind());
#else
    if (!quiet) std::fprintf(stderr, "note: '%s.ann' ignored (this blip was built without FAISS): exact search\n", path.c_str());
#endif
    (void)quiet;
  }

  const search::FeatureIndex& index() const { return *index_; }
  // Empty for the exact search (gallery.hpp's default).
  const search::NearestFn& nearest() const { return nearest_; }
  const std::string& kind() const { return kind_; }

 private:
  std::unique_ptr<search::FeatureIndex> index_;  // stable address: nearest_ refers to it
#ifdef BLIP_WITH_FAISS
  std::unique_ptr<search::AnnIndex> ann_;
#endif
  search::NearestFn nearest_;
  std::string kind_ = "exact";
};

// The ANN side of `blip index`: made before the feature index is (re)written, so that with
// --append the ANN index of the old file is checked to belong to it and kept in memory; then
// finish(path) builds OUT.ann over the new file, or extends the old one with the new rows
// (append keeps the old rows first, in order).
class GalleryAnnWriter {
 public:
  GalleryAnnWriter(const AnnBuildChoice& c, const search::FeatureIndex* previous, bool quiet) : c_(c), quiet_(quiet) {
#ifndef BLIP_WITH_FAISS
    BLIP_CHECK(c_.kind == "auto" || c_.kind == "exact", "index: --kind ", c_.kind, " needs the FAISS component (install "
               "libfaiss-dev and rebuild blip); --kind exact works without it");
#endif
    if (!previous) return;
    std::error_code ec;
    if (!std::filesystem::exists(previous->path() + ".ann", ec)) return;
#ifdef BLIP_WITH_FAISS
    previous_ = std::make_unique<search::AnnIndex>(search::read_ann(*previous));
    const std::string had = search::ann_kind_name(previous_->kind());
    BLIP_CHECK(c_.kind == "auto" || c_.kind == had, "index: '", previous->path(), ".ann' is of kind ", had,
               "; --append --kind ", c_.kind, " would change it (rebuild without --append)");
    c_.kind = had;
#else
    fail("index: '", previous->path(), ".ann' needs the FAISS component to be extended (install libfaiss-dev and "
         "rebuild blip), or remove it");
#endif
  }

  // The feature index stayed as it was: an ANN index that exists is kept, a missing one that the
  // kind asks for is built.
  void finish_unchanged(const std::string& path, int64_t entries) {
#ifdef BLIP_WITH_FAISS
    if (previous_) return;
#endif
    finish(path, entries);
  }

  // `entries`: how many the index at `path` holds (the file is read only to build an ANN index).
  void finish(const std::string& path, int64_t entries) {
    const std::string ann_file = path + ".ann";
    const std::string kind = c_.kind != "auto" ? c_.kind : entries <= kAutoExactMax ? "exact" : "ivf";
    if (kind == "exact") {
      std::error_code ec;
      std::filesystem::remove(ann_file, ec);  // an old one is stale: the exact search needs none
      return;
    }
#ifdef BLIP_WITH_FAISS
    const search::FeatureIndex index = search::FeatureIndex::read(path);
    const float* feats = index.feats().data();
    const int64_t d = index.header().feat_dim;
    search::AnnIndex ann;
    if (previous_) {
      BLIP_CHECK(previous_->size() <= index.size(), "index: the ANN index holds more rows than '", path, "'");
      previous_->add(feats + previous_->size() * d, index.size() - previous_->size());
      ann = std::move(*previous_);
    } else {
      search::AnnOptions o;
      o.kind = search::parse_ann_kind(kind);
      o.nlist = c_.nlist;
      o.hnsw_m = c_.hnsw_m;
      o.ef_construction = c_.ef_construction;
      o.pq_m = c_.pq_m;
      o.opq = c_.opq;
      ann = search::AnnIndex::build(feats, index.size(), d, o);
    }
    search::write_ann(ann, index);
    if (!quiet_)
      std::fprintf(stderr, "blip index: %s index (%s) -> %s\n", kind.c_str(), previous_ ? "extended" : "built",
                   ann_file.c_str());
#else
    fail("index: --kind ", kind, " needs the FAISS component (install libfaiss-dev and rebuild blip); --kind exact "
         "works without it");
#endif
  }

 private:
  AnnBuildChoice c_;
  bool quiet_;
#ifdef BLIP_WITH_FAISS
  std::unique_ptr<search::AnnIndex> previous_;
#endif
};

// The model to query `index` with: an index built with --preset records it, and it gives the
// sizes of a checkpoint that records none.
template <Device D = Cpu>
pretrained::Pretrained<CliModelOn<D>> load_model_for(const ModelChoice& m, const search::FeatureIndex& index) {
  ModelChoice choice = m;
  const auto& presets = preset_names();
  if (!choice.has_config() && std::find(presets.begin(), presets.end(), index.model()) != presets.end())
    choice.preset = index.model();
  return load_model<D>(choice);
}

}  // namespace blip::cli
