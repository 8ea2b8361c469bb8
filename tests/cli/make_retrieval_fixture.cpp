// make_retrieval_fixture DIR — writes what the `blip eval|index|search` CLI test runs on: a
// tiny random checkpoint (presets::tiny(), safetensors) and a copy with a NaN weight
// (nan.safetensors), its 128-token vocabulary, six PNG
// images with a JSONL and a COCO annotation file, and a captions file.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "blip/io/safetensors_writer.hpp"
#include "blip/io/state_dict.hpp"
#include "../retrieval_fixtures.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_retrieval_fixture DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::filesystem::create_directories(dir + "/images/sub");
  auto model = fixtures::tiny_model(7, false);
  blip::io::save_safetensors(dir + "/tiny.safetensors", blip::io::export_state_dict(*model));
  // The same weights with one NaN in the vision backbone (issue 11, class 9: a damaged or
  // diverged checkpoint must not give an index or recall figures).
  {
    auto nan_model = fixtures::tiny_model(7, false);
    nan_model->vision_neck.weight.value().data()[0] = std::nanf("");
    blip::io::save_safetensors(dir + "/nan.safetensors", blip::io::export_state_dict(*nan_model));
  }
  fixtures::write_tiny_vocab(dir + "/vocab.txt");
  const char* captions[] = {"a dog on the beach", "a red car", "two men in green shirt", "a cat in snow",
                            "blue sky", "a white house"};
  std::ofstream jsonl(dir + "/ann.jsonl");
  std::ofstream coco(dir + "/coco.json");
  std::ofstream lines(dir + "/captions.txt");
  coco << "{\"images\": [";
  for (int i = 0; i < 6; ++i) {
    const std::string name = (i < 3 ? "img" : "sub/img") + std::to_string(i) + ".png";
    fixtures::write_random_png(dir + "/images/" + name, 30 + i, 40, static_cast<uint64_t>(i));
    jsonl << "{\"image\": \"" << name << "\", \"captions\": [\"" << captions[i] << "\", \"" << captions[(i + 1) % 6]
          << " too\"]}\n";
    coco << (i ? ", " : "") << "{\"id\": " << 100 + i << ", \"coco_url\": \"http://host/" << (i < 3 ? "./" : "") << name << "\"}";
    lines << captions[i] << "\n";
  }
  coco << "], \"annotations\": [";
  for (int i = 0; i < 6; ++i)
    coco << (i ? ", " : "") << "{\"image_id\": " << 100 + i << ", \"id\": " << i << ", \"caption\": \"" << captions[i]
         << "\"}";
  coco << "]}\n";
  return 0;
}
