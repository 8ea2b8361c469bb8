// blip/search/gallery.hpp — building a FeatureIndex from a folder of images or a file of texts
// with a model, and answering text or image queries against it.
//
// Contract:
// - list_image_files(dir): every .jpg/.jpeg/.png/.webp/.gif (any case) under dir, recursively and through
//   symlinks, as absolute paths sorted, so the same folder always gives the same index and
//   `blip search` prints paths that work from any directory. Each folder is walked once and each
//   file listed once (device and inode: symlink loops end); a folder that cannot be listed is an
//   error, or a warning and a skip with ListOptions::skip_errors — never a silent stop.
//   read_text_lines(file): non-empty lines (a trailing \r dropped) of a regular file of at most
//   1 GiB. Both fail naming the path when there is nothing to index.
// - build_image_index / build_text_index embed in batches (images on the DataLoader's threads,
//   through the test pipeline; texts through CleanCaption and the tokenizer, as the evaluation
//   does) with a progress bar, and stream the index to `out` (search/feature_index.hpp). An
//   image index may keep image_embeds (EmbedsDtype) for the ITM re-rank.
// - search_by_text(model, tokenizer, image index, query, n, rerank_k) and search_by_image(model,
//   tokenizer, text index, image path, n, rerank_k): cosine top-n (search/query.hpp top_n), then
//   the ITM re-rank of the first rerank_k hits (0: none). Re-ranking an image index that kept no
//   embeds recomputes them from the image files. An index built with another model (fingerprint)
//   or of the other kind is refused with a message saying what to do.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "blip/data/image_text_loader.hpp"
#include "blip/ops/index.hpp"
#include "blip/ops/view.hpp"
#include "blip/search/query.hpp"
#include "blip/text/clean_caption.hpp"
#include "blip/util/progress.hpp"

namespace blip::search {

// Folders that cannot be listed (and image entries that cannot be examined): errors, or
// warnings passed to `warn` and skipped when skip_errors is set.
struct ListOptions {
  bool skip_errors = false;
  std::function<void(const std::string&)> warn;
};

// The absolute, normalised folder list_image_files lists under (its paths start with it and '/').
inline std::string listing_root(const std::string& dir) {
  std::string root = std::filesystem::absolute(dir).lexically_normal().string();
  if (root.size() > 1 && root.back() == '/') root.pop_back();
  return root;
}

inline std::vector<std::string> list_image_files(const std::string& dir, const ListOptions& o = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  BLIP_CHECK(fs::is_directory(dir, ec), "index: '", dir, "' is not a directory");
  auto problem = [&](const std::string& what, int err) {
    const std::string message = str("index: cannot ", what, ": ", std::strerror(err));
    BLIP_CHECK(o.skip_errors, message, " (--skip-errors skips such entries with a warning)");
    if (o.warn) o.warn(message + " (skipped)");
  };
  auto is_image = [](const std::string& name) {
    std::string ext = fs::path(name).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".webp" || ext == ".gif";
  };
  // Folders are identified by device and inode, so a symlink loop or two links to one folder are
  // walked once; real folders come before the ones reached through symlinks, so files are listed
  // under their own path where the tree has one. Entries are examined relative to their open
  // folder, so a path too long to open is still seen (and reported), not skipped.
  struct Folder {  // or file
    std::string path;
    dev_t dev;
    ino_t ino;
  };
  const std::string root = listing_root(dir);
  struct stat root_st {};
  BLIP_CHECK(::stat(root.c_str(), &root_st) == 0, "index: cannot examine '", root, "': ", std::strerror(errno));
  std::set<std::pair<dev_t, ino_t>> seen_dirs, seen_files;
  std::vector<Folder> todo{{root, root_st.st_dev, root_st.st_ino}}, linked;
  std::vector<Folder> out;  // the files, with their device and inode
  while (!todo.empty() || !linked.empty()) {
    std::vector<Folder>& from = todo.empty() ? linked : todo;
    const Folder folder = from.back();
    from.pop_back();
    if (!seen_dirs.emplace(folder.dev, folder.ino).second) continue;
    DIR* d = ::opendir(folder.path.c_str());
    if (!d) {
      BLIP_CHECK(folder.path != root, "index: cannot list '", folder.path, "': ", std::strerror(errno));
      problem(str("list folder '", folder.path, "'"), errno);
      continue;
    }
    struct Entry {
      std::string name;
      struct stat st;
      bool ok, link;
      int err;
    };
    std::vector<Entry> entries;
    int read_error = 0;
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d);
      if (!e) {
        read_error = errno;
        break;
      }
      Entry entry{e->d_name, {}, false, false, 0};
      if (entry.name == "." || entry.name == "..") continue;
      struct stat link {};
      entry.ok = ::fstatat(::dirfd(d), e->d_name, &entry.st, 0) == 0;  // through symlinks
      entry.err = entry.ok ? 0 : errno;
      entry.link = ::fstatat(::dirfd(d), e->d_name, &link, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(link.st_mode);
      entries.push_back(std::move(entry));
    }
    ::closedir(d);
    if (read_error != 0) problem(str("list all of folder '", folder.path, "'"), read_error);
    // Popped from the back: walked in name order.
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name > b.name; });
    for (const Entry& e : entries) {
      const std::string full = folder.path == "/" ? "/" + e.name : folder.path + "/" + e.name;
      if (!e.ok) {  // a dangling link, or a race with a deletion
        if (is_image(e.name)) problem(str("examine '", full, "'"), e.err);
      } else if (S_ISDIR(e.st.st_mode)) {
        (e.link ? linked : todo).push_back({full, e.st.st_dev, e.st.st_ino});
      } else if (S_ISREG(e.st.st_mode) && is_image(e.name)) {
        out.push_back({full, e.st.st_dev, e.st.st_ino});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Folder& a, const Folder& b) { return a.path < b.path; });
  // One entry per file (a symlink or hard link to an image listed elsewhere is the same file).
  std::vector<std::string> unique;
  for (const Folder& f : out)
    if (seen_files.emplace(f.dev, f.ino).second) unique.push_back(f.path);
  BLIP_CHECK(!unique.empty(), "index: no .jpg or .png files under '", dir, "'");
  return unique;
}

inline std::vector<std::string> read_text_lines(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_regular_file(path, uint64_t{1} << 30, "texts to index");
  std::vector<std::string> out;
  for (size_t pos = 0; pos < bytes.size();) {
    size_t end = pos;
    while (end < bytes.size() && bytes[end] != '\n') ++end;
    std::string line(bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.begin() + static_cast<std::ptrdiff_t>(end));
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
  }
  BLIP_CHECK(!out.empty(), "index: '", path, "' has no non-empty lines to index");
  return out;
}

struct IndexBuildOptions {
  std::string model_name;  // stored in the index, shown by `blip search`
  std::string model_source;  // the checkpoint, named when the model gives non-finite features
  std::string root;  // image paths are stored relative to this folder ("": as given)
  int64_t batch_size = 32;
  EmbedsDtype embeds = EmbedsDtype::none;
  bool quiet = false;
  data::LoaderOptions loader;
};

using data::test_pipeline;

// `path` relative to `root` ("" : path itself), or an error when it is not under root.
inline std::string relative_to_root(const std::string& path, const std::string& root) {
  if (root.empty()) return path;
  const std::string prefix = root == "/" ? root : root + "/";
  BLIP_CHECK(path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0, "index: '", path,
             "' is not under the index's root folder '", root, "'");
  return path.substr(prefix.size());
}

// Embeds the images at `paths` into the index `out`. With `base` (an index of the same model),
// its rows come first, copied as they are (blip index --append: the old images are not
// embedded again), then the new images'.
template <class Model>
void build_image_index(const Model& model, const std::vector<std::string>& paths, const std::string& out,
                       const IndexBuildOptions& o, const FeatureIndex* base = nullptr) {
  NoGradGuard no_grad;
  BLIP_CHECK(!paths.empty(), "build_image_index: no images");
  const BlipConfig& cfg = model.config();
  const int64_t tokens = (cfg.vision.img_size / cfg.vision.patch_size) * (cfg.vision.img_size / cfg.vision.patch_size) + 1;
  std::vector<std::string> entries;
  if (base) {
    BLIP_CHECK(base->kind() == IndexKind::images && base->header().fingerprint == model_fingerprint(model) &&
                   base->header().embeds == o.embeds && base->root() == o.root,
               "index: cannot append to '", base->path(), "': it must be an index of images by the same model, with the "
               "same --embeds and root folder ('", base->root(), "')");
    entries = base->entries();
  }
  for (const std::string& p : paths) entries.push_back(relative_to_root(p, o.root));
  IndexWriter writer(out, IndexKind::images, o.model_name, model_fingerprint(model), entries,
                     static_cast<uint32_t>(cfg.embed_dim), o.embeds, static_cast<uint32_t>(tokens),
                     static_cast<uint32_t>(cfg.vision.embed_dims), o.root);
  writer.set_model_source(o.model_source);
  const bool keep = o.embeds != EmbedsDtype::none;
  // The old rows in chunks of about 64 MiB of decoded embeds (32 rows at BLIP-base), 1024 without.
  const int64_t per_row = keep ? tokens * cfg.vision.embed_dims * 4 : 0;
  const int64_t chunk = per_row > 0 ? std::max<int64_t>(1, (int64_t{64} << 20) / per_row) : 1024;
  for (int64_t s = 0; base && s < base->size(); s += chunk) {
    const int64_t n = std::min<int64_t>(chunk, base->size() - s);
    std::vector<int64_t> rows(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = s + i;
    const Tensor<float, Cpu> feats = contiguous(narrow(base->feats(), 0, s, n));
    const Tensor<float, Cpu> embeds = keep ? base->embeds(rows) : Tensor<float, Cpu>{};
    writer.append(feats, keep ? &embeds : nullptr);
  }
  data::LoaderOptions lo = o.loader;
  lo.batch_size = o.batch_size;
  lo.shuffle = lo.drop_last = false;
  auto loader = data::make_image_loader(paths, test_pipeline(model), lo);
  ProgressBar bar("index images", static_cast<long long>(paths.size()), o.quiet, "img");
  while (auto batch = loader->next()) {
    const Features<float, Cpu> f = extract_feat_on_host(model, &batch->images, nullptr, keep);
    writer.append(f.image_feat, keep ? &f.image_embeds : nullptr);
    bar.advance(static_cast<long long>(batch->indices.size()));
  }
  bar.finish();
  writer.finish();
}

template <class Model, class Tokenizer>
TextBatch<float, Cpu> encode_texts(const Model&, const Tokenizer& tokenizer, const std::vector<std::string>& texts) {
  std::vector<std::string> cleaned;
  for (const auto& t : texts) cleaned.push_back(text::clean_caption(t));
  const auto e = tokenizer.template encode_batch<Cpu>(cleaned);
  return {e.input_ids, e.attention_mask};
}

template <class Model, class Tokenizer>
void build_text_index(const Model& model, const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                      const std::string& out, const IndexBuildOptions& o) {
  NoGradGuard no_grad;
  BLIP_CHECK(!texts.empty(), "build_text_index: no texts");
  IndexWriter writer(out, IndexKind::texts, o.model_name, model_fingerprint(model), texts,
                     static_cast<uint32_t>(model.config().embed_dim));
  writer.set_model_source(o.model_source);
  ProgressBar bar("index texts", static_cast<long long>(texts.size()), o.quiet, "txt");
  const int64_t n = static_cast<int64_t>(texts.size()), step = std::max<int64_t>(o.batch_size, 1) * 4;
  for (int64_t s = 0; s < n; s += step) {
    const std::vector<std::string> chunk(texts.begin() + s, texts.begin() + std::min(n, s + step));
    const TextBatch<float, Cpu> batch = encode_texts(model, tokenizer, chunk);
    writer.append(extract_feat_on_host(model, nullptr, &batch, false).text_feat);
    bar.advance(static_cast<long long>(chunk.size()));
  }
  bar.finish();
  writer.finish();
}

template <class Model>
void check_index_matches(const Model& model, const FeatureIndex& index, IndexKind want) {
  BLIP_CHECK(index.kind() == want, "search: '", index.path(), "' is an index of ", kind_name(index.kind()), "; ",
             want == IndexKind::images ? "a text query needs an index of images (blip index --images DIR)"
                                       : "an image query needs an index of texts (blip index --texts FILE)");
  BLIP_CHECK(index.header().feat_dim == static_cast<uint32_t>(model.config().embed_dim), "search: '", index.path(),
             "' holds ", index.header().feat_dim, "-dim features but the model makes ", model.config().embed_dim,
             " (built with model '", index.model(), "')");
  BLIP_CHECK(index.header().fingerprint == model_fingerprint(model), "search: '", index.path(),
             "' was built with another checkpoint (model '", index.model(),
             "'); query it with the checkpoint it was built with, or rebuild it");
}

// One text query: its n results, the first `rerank` of them re-ranked by ITM.
struct TextQuery {
  std::string text;
  int64_t n = 10, rerank = 0;
};

// Text queries against an image index, encoded as one batch (a server batches its concurrent
// requests this way); each query is then ranked and re-ranked on its own.
template <class Model, class Tokenizer>
std::vector<std::vector<SearchHit>> search_by_texts(const Model& model, const Tokenizer& tokenizer,
                                                    const FeatureIndex& index, const std::vector<TextQuery>& queries,
                                                    const NearestFn& nearest = {}) {
  NoGradGuard no_grad;
  check_index_matches(model, index, IndexKind::images);
  if (queries.empty()) return {};
  std::vector<std::string> texts;
  int64_t k = 1;
  for (const TextQuery& q : queries) {
    BLIP_CHECK(q.n > 0 && q.rerank >= 0, "search: n must be positive and rerank non-negative, got ", q.n, " and ", q.rerank);
    texts.push_back(q.text);
    k = std::max({k, q.n, q.rerank});
  }
  const TextBatch<float, Cpu> batch = encode_texts(model, tokenizer, texts);
  const Tensor<float, Cpu> feat = extract_feat_on_host(model, nullptr, &batch, false).text_feat;
  std::vector<std::vector<SearchHit>> all = (nearest ? nearest : exact_nearest(index))(feat, k);
  for (size_t i = 0; i < queries.size(); ++i) {
    std::vector<SearchHit>& hits = all[i];
    const TextQuery& q = queries[i];
    hits.resize(std::min<size_t>(hits.size(), static_cast<size_t>(std::max(q.n, q.rerank))));
    if (q.rerank > 0) {
      const auto row = static_cast<int64_t>(i);
      const Tensor<int64_t, Cpu> ids = contiguous(narrow(batch.ids, 0, row, 1));
      const Tensor<int64_t, Cpu> mask = contiguous(narrow(batch.mask, 0, row, 1));
      hits = rerank(std::move(hits), q.rerank, [&](const std::vector<int64_t>& entries) {
        Tensor<float, Cpu> embeds;
        if (index.has_embeds()) {
          embeds = index.embeds(entries);
        } else {
          std::vector<Tensor<float, Cpu>> images;
          for (int64_t e : entries) images.push_back(vision::load_and_preprocess(index.entry_path(e), test_pipeline(model)));
          embeds = image_embeds_on_host(model, stack(images, 0));
        }
        return itm_for_text(model, ids, mask, embeds);
      });
    }
    hits.resize(std::min<size_t>(hits.size(), static_cast<size_t>(q.n)));
  }
  return all;
}

template <class Model, class Tokenizer>
std::vector<SearchHit> search_by_text(const Model& model, const Tokenizer& tokenizer, const FeatureIndex& index,
                                      const std::string& query, int64_t n, int64_t rerank_k = 0,
                                      const NearestFn& nearest = {}) {
  return search_by_texts(model, tokenizer, index, {{query, n, rerank_k}}, nearest)[0];
}

// An image (preprocessed, [1, C, H, W]) against an index of texts (ITM re-rank optional), or
// against an index of images (image to image: by similarity only).
template <class Model, class Tokenizer>
std::vector<SearchHit> search_by_image_tensor(const Model& model, const Tokenizer& tokenizer, const FeatureIndex& index,
                                              const Tensor<float, Cpu>& image, int64_t n, int64_t rerank_k = 0,
                                              const NearestFn& nearest = {}) {
  NoGradGuard no_grad;
  const bool to_images = index.kind() == IndexKind::images;
  BLIP_CHECK(!to_images || rerank_k == 0, "search: the ITM re-rank scores image-text pairs; an image query against an "
             "index of images ranks by similarity only (rerank 0)");
  check_index_matches(model, index, to_images ? IndexKind::images : IndexKind::texts);
  BLIP_CHECK(n > 0 && rerank_k >= 0, "search: n must be positive and rerank non-negative, got ", n, " and ", rerank_k);
  const Features<float, Cpu> f = extract_feat_on_host(model, &image, nullptr, rerank_k > 0);
  std::vector<SearchHit> hits = (nearest ? nearest : exact_nearest(index))(f.image_feat, std::max(n, rerank_k))[0];
  if (rerank_k > 0) {
    hits = rerank(std::move(hits), rerank_k, [&](const std::vector<int64_t>& entries) {
      std::vector<std::string> texts;
      for (int64_t e : entries) texts.push_back(index.entries()[static_cast<size_t>(e)]);
      const TextBatch<float, Cpu> t = encode_texts(model, tokenizer, texts);
      return itm_for_image(model, f.image_embeds, t.ids, t.mask);
    });
  }
  hits.resize(std::min<size_t>(hits.size(), static_cast<size_t>(n)));
  return hits;
}

template <class Model, class Tokenizer>
std::vector<SearchHit> search_by_image(const Model& model, const Tokenizer& tokenizer, const FeatureIndex& index,
                                       const std::string& image_path, int64_t n, int64_t rerank_k = 0,
                                       const NearestFn& nearest = {}) {
  const vision::PipelineOptions p = test_pipeline(model);
  const Tensor<float, Cpu> image = reshape(vision::load_and_preprocess(image_path, p), {1, p.channels, p.size, p.size});
  return search_by_image_tensor(model, tokenizer, index, image, n, rerank_k, nearest);
}

}  // namespace blip::search
