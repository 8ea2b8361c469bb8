// blip search — queries an index made by `blip index`: texts against an image index, or images
// (--image) against a text index; cosine top-n, optionally ITM re-ranked (see docs/cli.md).
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include <blip/search/gallery.hpp>

#include "commands.hpp"
#include "gallery_files.hpp"
#include "model_setup.hpp"

namespace {

struct SearchOptions {
  blip::cli::ModelChoice model;
  std::string index, root;
  std::vector<std::string> queries, images;
  int64_t n = 10, rerank = 0;
  bool json = false;
  blip::cli::AnnQueryChoice ann;
};

template <blip::Device D>
void run_search(const SearchOptions& o, const blip::cli::CommonOptions& common) {
  const blip::PrecisionScope precision(common.precision);  // bf16 GEMMs when --precision bf16
  namespace search = blip::search;
  BLIP_CHECK(o.queries.empty() != o.images.empty(),
             "give text queries (an index of images) or --image PATH (an index of texts or images), not both and not neither");
  const blip::cli::OpenedGallery gallery(o.index, o.ann, common.quiet, o.root);
  const search::FeatureIndex& index = gallery.index();
  const auto loaded = blip::cli::load_model_for<D>(o.model, index);
  const auto& model = loaded.model;
  const auto& tokenizer = *loaded.tokenizer;
  const bool by_text = !o.queries.empty();
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const std::string& q : by_text ? o.queries : o.images) {
    const auto hits = by_text ? search::search_by_text(*model, tokenizer, index, q, o.n, o.rerank, gallery.nearest())
                              : search::search_by_image(*model, tokenizer, index, q, o.n, o.rerank, gallery.nearest());
    if (o.json) {
      nlohmann::ordered_json results = nlohmann::ordered_json::array();
      for (size_t r = 0; r < hits.size(); ++r) {
        nlohmann::ordered_json h;
        h["rank"] = r + 1;
        blip::cli::put_text(h, index.kind() == search::IndexKind::images ? "path" : "text", index.entry_path(hits[r].entry));
        h["score"] = hits[r].score;
        h["similarity"] = hits[r].similarity;
        h["reranked"] = hits[r].reranked;
        results.push_back(h);
      }
      nlohmann::ordered_json entry;
      blip::cli::put_text(entry, by_text ? "query" : "image", q);
      entry["results"] = results;
      out.push_back(entry);
      continue;
    }
    std::printf("%s: %s\n", by_text ? "query" : "image", q.c_str());
    for (size_t r = 0; r < hits.size(); ++r)
      std::printf("%4zu  %8.4f  %s\n", r + 1, hits[r].score, index.entry_path(hits[r].entry).c_str());
  }
  // Invalid UTF-8 is replaced by U+FFFD (put_text kept the bytes): the output is always JSON.
  if (o.json) std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

void add_search(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<SearchOptions>();
  CLI::App* cmd = app.add_subcommand("search", "Search an index: images for a text, or texts for an image (--image)");
  cmd->add_option("queries", o->queries, "Text queries (for an index of images)");
  cmd->add_option("--image", o->images, "Query image (for an index of texts, or of images: image to image); may repeat");
  cmd->add_option("--index", o->index, "Index file made by blip index")->required();
  blip::cli::add_model_options(cmd, o->model, "The model the index was built with (checkpoint file or model folder)");
  cmd->add_option("-n", o->n, "Results per query")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--rerank", o->rerank, "Re-rank the top K by ITM (itm_logit + similarity); 0: off")
      ->check(blip::cli::non_negative())->capture_default_str();
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  cmd->add_option("--root", o->root, "The folder the indexed images are under now (default: where they were indexed)");
  blip::cli::add_ann_query_options(cmd, o->ann);
  cmd->callback([o, &common] { blip::cli::on_device(common, [&]<class D>() { run_search<D>(*o, common); }); });
}

BLIP_CLI_COMMAND(40, add_search);

}  // namespace
