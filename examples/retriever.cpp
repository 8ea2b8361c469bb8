// blip::Retriever: load a model folder (here the small transformers folder of the test suite; a
// real one is `save_pretrained`'s output or the HF hub's Salesforce/blip-itm-base-coco), embed
// images and texts, score pairs, and search an index built from a folder of images.
//
//   retriever [MODEL [IMAGES_DIR [TEXT...]]]
#include <blip/blip.hpp>

#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) try {
  const std::string source = BLIP_EXAMPLE_SOURCE_DIR;
  const std::string model = argc > 1 ? argv[1] : source + "/tests/data/hf/small/model";
  const std::string images_dir = argc > 2 ? argv[2] : source + "/tests/data/hf/small/images";
  std::vector<std::string> texts;
  for (int i = 3; i < argc; ++i) texts.push_back(argv[i]);
  if (texts.empty()) texts = {"a dog on the beach", "a red car"};

  // 1. Load: the folder says its sizes, eps, preprocessing and tokenizer.
  const auto r = blip::Retriever<>::load(model);
  std::printf("loaded %s: ViT %lld wide x %lld layers, text %lld wide, embed_dim %lld (config from %s)\n",
              model.c_str(), (long long)r.config().vision.embed_dims, (long long)r.config().vision.num_layers,
              (long long)r.config().text.hidden_size, (long long)r.config().embed_dim, r.loaded().config_source.c_str());

  // 2. Embed: image files (or decoded blip::vision::Image) and texts, L2-normalised.
  const std::vector<std::string> paths = blip::search::list_image_files(images_dir);
  const auto image_feat = r.embed_images(paths);
  const auto text_feat = r.embed_texts(texts);

  // 3. Score: cosine similarity (ITC) and the ITM head's match probability of every pair.
  const std::vector<float> sim = r.similarity(image_feat, text_feat).to_vector();
  const std::vector<float> itm = r.itm_score(paths, texts).to_vector();
  for (size_t i = 0; i < paths.size(); ++i)
    for (size_t t = 0; t < texts.size(); ++t)
      std::printf("  %-12s  %-24s  itc %+.4f  itm %.4f\n", std::filesystem::path(paths[i]).filename().c_str(),
                  texts[t].c_str(), sim[i * texts.size() + t], itm[i * texts.size() + t]);

  // 4. Search: an index of the images (what `blip index` writes), queried by text, ITM re-ranked.
  const std::string index_path = (std::filesystem::temp_directory_path() / "blip_example.idx").string();
  blip::search::IndexBuildOptions build;
  build.model_name = "example";
  blip::search::build_image_index(r.model(), paths, index_path, build);
  const auto index = blip::search::FeatureIndex::read(index_path);
  for (const auto& hit : r.search(index, texts[0], 3, 3))
    std::printf("  search '%s': %s (score %.4f)\n", texts[0].c_str(), index.entries()[size_t(hit.entry)].c_str(),
                hit.score);
  std::filesystem::remove(index_path);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "retriever: %s\n", e.what());
  return 1;
}
