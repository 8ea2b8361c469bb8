// blip index — embeds a folder of images (or a file of texts) into an index file for
// `blip search` (format: include/blip/search/feature_index.hpp, docs/cli.md).
#include <cstdio>
#include <memory>
#include <optional>
#include <set>

#include <blip/search/embed.hpp>
#include <blip/search/gallery.hpp>

#include "commands.hpp"
#include "gallery_files.hpp"
#include "model_setup.hpp"

namespace {

struct IndexOptions {
  blip::cli::ModelChoice model;
  std::string images, texts, out, embeds;  // embeds "": none, or the appended index's
  int64_t batch = 32;
  int workers = -1;
  bool skip_errors = false, append = false;
  blip::cli::AnnBuildChoice ann;
};

template <blip::Device D>
void run_index(const IndexOptions& o, const blip::cli::CommonOptions& common) {
  const blip::PrecisionScope precision(common.precision);  // bf16 GEMMs when --precision bf16
  namespace search = blip::search;
  search::IndexBuildOptions b;
  b.model_name = o.model.preset.empty() ? "checkpoint" : o.model.preset;
  b.batch_size = o.batch;
  b.embeds = search::parse_embeds_dtype(o.embeds.empty() ? "none" : o.embeds);
  b.quiet = common.quiet;
  b.loader.workers = o.workers;
  b.model_source = o.model.checkpoint;
  if (!o.images.empty()) {
    // --append: the old index's rows are kept; only images it does not hold are embedded.
    std::optional<search::FeatureIndex> previous;
    if (o.append) previous = search::FeatureIndex::read(o.out);
    b.root = previous ? previous->root() : search::listing_root(o.images);
    if (previous) {
      BLIP_CHECK(previous->kind() == search::IndexKind::images, "--append: '", o.out, "' is an index of texts");
      BLIP_CHECK(o.embeds.empty() || b.embeds == previous->header().embeds, "--append: '", o.out, "' keeps --embeds ",
                 search::embeds_name(previous->header().embeds), "; --embeds ", o.embeds,
                 " would change it (leave --embeds out, or rebuild without --append)");
      b.embeds = previous->header().embeds;
      b.model_name = previous->model();  // the preset it records stays
    }
    blip::cli::GalleryAnnWriter ann(o.ann, previous ? &*previous : nullptr, common.quiet);
    search::ListOptions list;
    list.skip_errors = o.skip_errors;
    list.warn = [](const std::string& w) { std::fprintf(stderr, "blip index: warning: %s\n", w.c_str()); };
    std::vector<std::string> paths = search::list_image_files(o.images, list);
    if (previous) {
      const std::set<std::string> have(previous->entries().begin(), previous->entries().end());
      std::erase_if(paths, [&](const std::string& p) { return have.count(search::relative_to_root(p, b.root)) > 0; });
      if (paths.empty()) {
        if (!common.quiet) std::fprintf(stderr, "blip index: no new images under '%s'; '%s' is unchanged\n", o.images.c_str(), o.out.c_str());
        ann.finish_unchanged(o.out, previous->size());  // an ANN index lost after the last append is built again
        return;
      }
    }
    if (o.skip_errors) {  // files that do not decode are left out, each with a warning, then counted
      const size_t listed = paths.size();
      paths = search::decodable_images(paths, {}, list.warn);
      if (paths.size() < listed)
        std::fprintf(stderr, "blip index: skipped %zu of %zu images\n", listed - paths.size(), listed);
      BLIP_CHECK(!paths.empty(), "index: none of the ", listed, " images under '", o.images, "' could be decoded");
    }
    const auto loaded = blip::cli::load_model<D>(o.model, false);
    search::build_image_index(*loaded.model, paths, o.out, b, previous ? &*previous : nullptr);
    if (!common.quiet)
      std::fprintf(stderr, "blip index: %zu images%s -> %s\n", paths.size(), previous ? " added" : "", o.out.c_str());
    ann.finish(o.out, static_cast<int64_t>(paths.size()) + (previous ? previous->size() : 0));
  } else {
    BLIP_CHECK(!o.append, "--append adds images to an index of images; rebuild an index of texts instead");
    BLIP_CHECK(b.embeds == search::EmbedsDtype::none, "--embeds applies to an index of images, not of --texts");
    blip::cli::GalleryAnnWriter ann(o.ann, nullptr, common.quiet);
    const std::vector<std::string> texts = search::read_text_lines(o.texts);
    const auto loaded = blip::cli::load_model<D>(o.model);
    search::build_text_index(*loaded.model, *loaded.tokenizer, texts, o.out, b);
    if (!common.quiet) std::fprintf(stderr, "blip index: %zu texts -> %s\n", texts.size(), o.out.c_str());
    ann.finish(o.out, static_cast<int64_t>(texts.size()));
  }
}

void add_index(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<IndexOptions>();
  CLI::App* cmd = app.add_subcommand("index", "Embed a folder of images (or a file of texts) into an index for blip search");
  blip::cli::add_model_options(cmd, o->model);
  auto* images = cmd->add_option("--images", o->images, "Folder of images (.jpg, .png, .webp, .gif), searched recursively");
  auto* texts = cmd->add_option("--texts", o->texts, "Text file, one entry per non-empty line (searched by --image)");
  images->excludes(texts);
  cmd->add_option("--out", o->out, "Index file to write")->required();
  cmd->add_option("--embeds", o->embeds, "Also keep image_embeds for blip search --rerank: none (the default), f16, bf16, f32")
      ->check(CLI::IsMember({"none", "f16", "bf16", "f32"}));
  cmd->add_option("--batch", o->batch, "Images per batch")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--workers", o->workers, "Image decoding threads (-1: all cores)")->check(CLI::Range(-1, 1024))->capture_default_str();
  blip::cli::add_ann_build_options(cmd, o->ann);
  cmd->add_flag("--append", o->append,
                "Add the images under --images that --out does not hold yet (same model, --embeds and root folder; "
                "the old rows and their ANN index are kept, not recomputed)");
  cmd->add_flag("--skip-errors", o->skip_errors,
                "Skip images that cannot be read or decoded and folders that cannot be listed, with a warning each "
                "and a count at the end (default: stop with an error)");
  cmd->callback([o, &common, images, texts] {
    if (images->count() == 0 && texts->count() == 0) throw CLI::RequiredError("--images or --texts");
    blip::cli::on_device(common, [&]<class D>() { run_index<D>(*o, common); });
  });
}

BLIP_CLI_COMMAND(30, add_index);

}  // namespace
