// blip score — every (image, text) pair of a folder of images and a file of texts: the ITC
// cosine similarity, the ITM logits ([ENC] first, as the reference) and the ITM match
// probability; printed as a table or, with --json, as
// {"images", "texts", "itc" [I][T], "itm_logits" [I][T][2], "itm" [I][T]} (see docs/cli.md).
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include <blip/search/embed.hpp>

#include "commands.hpp"
#include "feature_rows.hpp"
#include "model_setup.hpp"

namespace {

struct ScoreCliOptions {
  blip::cli::ModelChoice model;
  std::string images, texts;
  int64_t batch = 32;
  bool json = false, skip_errors = false;
};

template <blip::Device D>
void run_score(const ScoreCliOptions& o, const blip::cli::CommonOptions& common) {
  const blip::PrecisionScope precision(common.precision);
  namespace search = blip::search;
  const blip::cli::ImageList list = blip::cli::list_images(o.images, o.skip_errors, "score");
  const std::vector<std::string> texts = search::read_text_lines(o.texts);
  const auto loaded = blip::cli::load_model<D>(o.model);
  search::EmbedOptions eo;
  eo.batch_size = o.batch;
  eo.keep_embeds = true;
  eo.skip_errors = o.skip_errors;
  eo.quiet = common.quiet;
  eo.warn = [](const std::string& w) { std::fprintf(stderr, "blip score: warning: %s\n", w.c_str()); };
  const search::ImageEmbeddings img = search::embed_image_files(*loaded.model, list.paths, eo);
  const search::TextEmbeddings txt = search::embed_texts(*loaded.model, *loaded.tokenizer, texts);
  const blip::Tensor<float, blip::Cpu> itc = blip::matmul(img.image_feat, blip::transpose(txt.text_feat, 0, 1));
  const blip::Tensor<float, blip::Cpu> logits = search::itm_logits_all(*loaded.model, img.image_embeds, txt.tokens);
  blip::cli::check_finite_output(itc, "similarities", o.model.checkpoint);
  blip::cli::check_finite_output(logits, "ITM logits", o.model.checkpoint);
  const std::vector<float> s = itc.to_vector(), l = logits.to_vector();
  const size_t I = img.rows.size(), T = texts.size();
  auto match = [&](size_t i, size_t t) { return search::itm_match_probability(l[(i * T + t) * 2], l[(i * T + t) * 2 + 1]); };
  if (img.skipped > 0) std::fprintf(stderr, "blip score: skipped %zu of %zu images\n", img.skipped, list.paths.size());
  if (o.json) {
    nlohmann::ordered_json j;
    j["images"] = nlohmann::ordered_json::array();
    for (size_t r : img.rows) j["images"].push_back(list.names[r]);
    j["texts"] = texts;
    nlohmann::ordered_json sim = nlohmann::ordered_json::array(), lg = nlohmann::ordered_json::array(),
                           p = nlohmann::ordered_json::array();
    for (size_t i = 0; i < I; ++i) {
      nlohmann::ordered_json srow = nlohmann::ordered_json::array(), lrow = nlohmann::ordered_json::array(),
                             prow = nlohmann::ordered_json::array();
      for (size_t t = 0; t < T; ++t) {
        srow.push_back(s[i * T + t]);
        lrow.push_back({l[(i * T + t) * 2], l[(i * T + t) * 2 + 1]});
        prow.push_back(match(i, t));
      }
      sim.push_back(srow);
      lg.push_back(lrow);
      p.push_back(prow);
    }
    j["itc"] = sim;
    j["itm_logits"] = lg;
    j["itm"] = p;
    std::cout << j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::printf("%-40s  %-40s  %8s  %8s\n", "image", "text", "itc", "itm");
  for (size_t i = 0; i < I; ++i)
    for (size_t t = 0; t < T; ++t)
      std::printf("%-40s  %-40s  %8.4f  %8.4f\n", list.names[img.rows[i]].c_str(), texts[t].c_str(), s[i * T + t],
                  match(i, t));
}

void add_score(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<ScoreCliOptions>();
  CLI::App* cmd = app.add_subcommand("score", "ITC similarity and ITM scores of every image-text pair");
  blip::cli::add_model_options(cmd, o->model);
  cmd->add_option("--images", o->images, "Folder of images (.jpg, .png, .webp, .gif), searched recursively")->required();
  cmd->add_option("--texts", o->texts, "Text file, one text per non-empty line")->required();
  cmd->add_option("--batch", o->batch, "Images per batch")->check(blip::cli::positive())->capture_default_str();
  cmd->add_flag("--json", o->json, "Print {images, texts, itc, itm_logits, itm} as JSON");
  cmd->add_flag("--skip-errors", o->skip_errors, "Skip images that cannot be read or decoded, with a warning each");
  cmd->callback([o, &common] { blip::cli::on_device(common, [&]<class D>() { run_score<D>(*o, common); }); });
}

BLIP_CLI_COMMAND(34, add_score);

}  // namespace
