// blip embed — L2-normalised image_feat or text_feat of a folder of images or a file of texts,
// as a float32 [N, E] .npy file (numpy.load reads it) with OUT.txt listing the rows: the sorted
// relative paths of the images, or the texts in file order (see docs/cli.md).
#include <cstdio>
#include <filesystem>
#include <memory>

#include <blip/io/atomic_file.hpp>
#include <blip/io/npy.hpp>
#include <blip/search/embed.hpp>

#include "commands.hpp"
#include "feature_rows.hpp"
#include "model_setup.hpp"

namespace {

struct EmbedCliOptions {
  blip::cli::ModelChoice model;
  std::string images, texts, out;
  int64_t batch = 32;
  bool skip_errors = false;
};

template <blip::Device D>
void run_embed(const EmbedCliOptions& o, const blip::cli::CommonOptions& common) {
  const blip::PrecisionScope precision(common.precision);
  namespace search = blip::search;
  BLIP_CHECK(o.out.size() > 4 && o.out.compare(o.out.size() - 4, 4, ".npy") == 0, "--out '", o.out,
             "' must end in .npy (the row names go to the same name with .txt)");
  const std::string names_path = o.out.substr(0, o.out.size() - 4) + ".txt";
  blip::Tensor<float, blip::Cpu> feat;
  std::vector<std::string> names;
  if (!o.images.empty()) {
    const blip::cli::ImageList list = blip::cli::list_images(o.images, o.skip_errors, "embed");
    const auto loaded = blip::cli::load_model<D>(o.model, false);
    search::EmbedOptions eo;
    eo.batch_size = o.batch;
    eo.skip_errors = o.skip_errors;
    eo.quiet = common.quiet;
    eo.warn = [](const std::string& w) { std::fprintf(stderr, "blip embed: warning: %s\n", w.c_str()); };
    const search::ImageEmbeddings e = search::embed_image_files(*loaded.model, list.paths, eo);
    feat = e.image_feat;
    for (size_t r : e.rows) names.push_back(list.names[r]);
    if (e.skipped > 0) std::fprintf(stderr, "blip embed: skipped %zu of %zu images\n", e.skipped, list.paths.size());
  } else {
    names = search::read_text_lines(o.texts);
    const auto loaded = blip::cli::load_model<D>(o.model);
    feat = search::embed_texts(*loaded.model, *loaded.tokenizer, names, o.batch * 4).text_feat;
  }
  blip::cli::check_finite_output(feat, "features", o.model.checkpoint);
  if (const auto parent = std::filesystem::path(o.out).parent_path(); !parent.empty())
    std::filesystem::create_directories(parent);
  blip::io::write_npy(o.out, feat.data(), feat.shape());
  blip::io::write_file_atomically(names_path, blip::cli::row_names_text(names));
  if (!common.quiet)
    std::fprintf(stderr, "blip embed: %lld x %lld %s -> %s (rows: %s)\n", static_cast<long long>(feat.size(0)),
                 static_cast<long long>(feat.size(1)), o.images.empty() ? "text_feat" : "image_feat", o.out.c_str(),
                 names_path.c_str());
}

void add_embed(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<EmbedCliOptions>();
  CLI::App* cmd = app.add_subcommand("embed", "Write the L2-normalised features of images or texts as a .npy [N, E] file");
  blip::cli::add_model_options(cmd, o->model);
  auto* images = cmd->add_option("--images", o->images, "Folder of images (.jpg, .png, .webp, .gif), searched recursively (rows: sorted relative paths)");
  auto* texts = cmd->add_option("--texts", o->texts, "Text file, one text per non-empty line (rows: file order)");
  images->excludes(texts);
  cmd->add_option("--out", o->out, "The .npy file to write (float32 [N, E]); OUT.txt gets the row names")->required();
  cmd->add_option("--batch", o->batch, "Images per batch (texts: 4x)")->check(blip::cli::positive())->capture_default_str();
  cmd->add_flag("--skip-errors", o->skip_errors,
                "Skip images that cannot be read or decoded (and folders that cannot be listed), with a warning each "
                "and a count at the end");
  cmd->callback([o, &common, images, texts] {
    if (images->count() == 0 && texts->count() == 0) throw CLI::RequiredError("--images or --texts");
    blip::cli::on_device(common, [&]<class D>() { run_embed<D>(*o, common); });
  });
}

BLIP_CLI_COMMAND(32, add_embed);

}  // namespace
