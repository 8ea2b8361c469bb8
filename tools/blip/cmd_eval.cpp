// blip eval — image-text retrieval Recall@K on a COCO / Flickr30k / JSONL dataset, as
// mmpretrain's RetrievalTestLoop + RetrievalRecall compute it (see docs/cli.md).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include <blip/data/coco_retrieval.hpp>
#include <blip/data/flickr30k_retrieval.hpp>
#include <blip/data/jsonl_retrieval.hpp>
#include <blip/eval/retrieval_loop.hpp>
#include <blip/io/atomic_file.hpp>

#include "commands.hpp"
#include "model_setup.hpp"

namespace {

struct EvalOptions {
  blip::cli::ModelChoice model;
  std::string dataset, ann, images, split = "test", json;
  bool fast_match = false;
  int64_t topk = 256, batch = 32, i2t_chunk = 16, t2i_chunk = 256;
  std::vector<int64_t> recall_k{1, 5, 10};
  int workers = -1;
};

blip::data::RetrievalAnnotations load_annotations(const EvalOptions& o) {
  BLIP_CHECK(std::filesystem::is_directory(o.images), "--images '", o.images, "' is not a directory");
  if (o.dataset == "coco") return blip::data::load_coco_retrieval(o.ann, o.images);
  if (o.dataset == "flickr30k") return blip::data::load_flickr30k_retrieval(o.ann, o.images, o.split);
  return blip::data::load_jsonl_retrieval(o.ann, o.images);
}

template <blip::Device D>
void run_eval(const EvalOptions& o, const blip::cli::CommonOptions& common) {
  const blip::PrecisionScope precision(common.precision);  // bf16 GEMMs when --precision bf16
  const auto annotations = load_annotations(o);
  blip::data::check_eval_ids(annotations);
  const auto loaded = blip::cli::load_model<D>(o.model, true, [&](blip::BlipConfig& c) {
    c.fast_match = o.fast_match;
    c.topk = o.topk;
  });
  const auto& model = loaded.model;
  const auto& tokenizer = *loaded.tokenizer;
  // Under mpirun: sharded over the ranks (the scores equal one process's); rank 0 reports.
  blip::dist::Communicator& comm = blip::cli::communicator(common);
  const bool main_rank = comm.is_main();
  if (!common.quiet && main_rank)
    std::fprintf(stderr, "blip eval: %zu images, %lld captions, %s\n", annotations.images.size(),
                 static_cast<long long>(annotations.flat_texts().size()),
                 o.fast_match ? "fast_match (similarity only)" : ("ITM re-rank of the top " + std::to_string(o.topk)).c_str());
  if (!common.quiet && main_rank && comm.size() > 1)
    std::fprintf(stderr, "blip eval: sharded over %d ranks (%s)\n", comm.size(), comm.backend());
  blip::eval::RetrievalLoopOptions lo;
  lo.batch_size = o.batch;
  lo.text_batch_size = o.batch * 4;
  lo.i2t_chunk = o.i2t_chunk;
  lo.t2i_chunk = o.t2i_chunk;
  lo.topk = o.recall_k;
  lo.quiet = common.quiet;
  lo.loader.workers = o.workers;
  lo.comm = &comm;
  const auto r = blip::eval::evaluate_retrieval(*model, tokenizer, annotations, lo);
  if (!main_rank) return;
  blip::cli::check_finite_output(r.score_i2t, "image-to-text scores", o.model.checkpoint);
  blip::cli::check_finite_output(r.score_t2i, "text-to-image scores", o.model.checkpoint);

  for (const auto& [key, value] : r.metrics) std::printf("%-28s %8.4f\n", key.c_str(), value);
  if (!common.quiet)
    std::fprintf(stderr, "time: image features %.1f s (waiting for data %.1f s), text features %.1f s, scores %.1f s\n",
                 r.image_seconds, r.data_wait_seconds, r.text_seconds, r.score_seconds);
  if (!o.json.empty()) {
    nlohmann::ordered_json j;
    for (const auto& [key, value] : r.metrics) j[key] = value;
    if (o.json == "-") {
      std::cout << j.dump(2) << "\n";
    } else {
      blip::io::write_file_atomically(o.json, j.dump(2) + "\n");
    }
  }
}

void add_eval(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Retrieval Recall@K of a checkpoint on a dataset (mmpretrain's test loop)");
  blip::cli::add_model_options(cmd, o->model);
  cmd->add_option("--dataset", o->dataset, "Annotation format: coco (Karpathy COCO JSON), flickr30k, jsonl")
      ->required()->check(CLI::IsMember({"coco", "flickr30k", "jsonl"}));
  cmd->add_option("--ann", o->ann, "Annotation file")->required();
  cmd->add_option("--images", o->images, "Image root the annotations' paths are relative to")->required();
  cmd->add_option("--split", o->split, "flickr30k split")->check(CLI::IsMember({"train", "val", "test"}))->capture_default_str();
  cmd->add_flag("--fast-match", o->fast_match, "Rank by feature similarity only (no ITM re-rank)");
  cmd->add_option("--topk", o->topk, "Candidates per query re-ranked with ITM")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--batch", o->batch, "Images per feature batch")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--i2t-chunk", o->i2t_chunk, "Images per re-rank call (the progress step; under mpirun, the unit of the split)")
      ->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--t2i-chunk", o->t2i_chunk, "Captions per re-rank call (as --i2t-chunk)")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--recall-k", o->recall_k, "The K of Recall@K")->delimiter(',')->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--json", o->json, "Write the metrics as JSON to this file ('-': stdout)");
  cmd->add_option("--workers", o->workers, "Image decoding threads (-1: all cores)")->check(CLI::Range(-1, 1024))->capture_default_str();
  cmd->callback([o, &common] { blip::cli::on_device(common, [&]<class D>() { run_eval<D>(*o, common); }); });
}

BLIP_CLI_COMMAND(20, add_eval);

}  // namespace
