// libFuzzer target: the search index reader (search/feature_index.hpp) on damaged files.
// Odd first byte: the rest is the whole file. Even: the rest is a list of (u16 offset, u8 value)
// patches applied to a valid index with embeds, so the fuzzer reaches past the magic and the
// size checks. Any input must read or throw blip::Error: no crash, hang or huge allocation.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "blip/search/feature_index.hpp"

namespace {

std::string scratch_path() {
  return "/tmp/blip_fuzz_index_" + std::to_string(::getpid()) + ".idx";
}

std::vector<uint8_t> valid_index() {
  const std::string path = scratch_path();
  blip::search::IndexWriter w(path, blip::search::IndexKind::images, "tiny", 42, {"a.png", "dir/b.jpg", ""}, 4,
                              blip::search::EmbedsDtype::f16, 2, 3);
  const auto feats = blip::Tensor<float, blip::Cpu>::from_vector({3, 4}, {1, 0, 0, 0, 0, 1, 0, 0, 0.5f, 0.5f, 0.5f, 0.5f});
  const auto embeds = blip::Tensor<float, blip::Cpu>::from_vector({3, 2, 3}, std::vector<float>(18, 0.25f));
  w.append(feats, &embeds);
  w.finish();
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> base = [] {
    std::atexit([] { std::remove(scratch_path().c_str()); });
    return valid_index();
  }();
  if (size == 0) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    file.assign(data + 1, data + size);
  } else {
    file = base;
    for (size_t i = 1; i + 3 <= size; i += 3) {
      const size_t at = static_cast<size_t>(data[i] | (data[i + 1] << 8));
      if (at < file.size()) file[at] = data[i + 2];
      else if (at == 0xffff && !file.empty()) file.pop_back();  // truncation
    }
  }
  const std::string path = scratch_path();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  }
  try {
    const auto ix = blip::search::FeatureIndex::read(path);
    if (ix.has_embeds() && ix.size() > 0) (void)ix.embeds({0, ix.size() - 1});
  } catch (const blip::Error&) {
  }
  return 0;
}
