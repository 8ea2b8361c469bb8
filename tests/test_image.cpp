// Image decode, Pillow-exact resize and the test pipeline against the reference's golden data.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/io/safetensors.hpp"
#include "blip/vision/resize.hpp"
#include "golden_dirs.hpp"

using namespace blip;

namespace {

vision::Image image_from(const io::SafeTensorsFile& f, const std::string& key) {
  const auto t = f.load<uint8_t>(key);
  const int64_t c = t.dim() == 3 ? t.size(2) : 1;
  vision::Image img(t.size(0), t.size(1), c);
  img.pixels = t.to_vector();
  return img;
}

nlohmann::json manifest() {
  std::ifstream in(golden_root() / "image" / "manifest.json");
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("Pillow bicubic resize is bit-exact on every golden case", "[vision][golden]") {
  const auto m = manifest();
  REQUIRE(m["resize"].size() >= 8);
  int checked = 0;
  for (const auto& c : m["resize"]) {
    const io::SafeTensorsFile f((golden_root() / "image" / c["safetensors"].get<std::string>()).string());
    const vision::Image input = image_from(f, "input");
    for (const auto& o : c["outputs"]) {
      INFO(c["name"].get<std::string>() << " -> " << o["tensor"].get<std::string>());
      const vision::Image expected = image_from(f, o["tensor"].get<std::string>());
      const vision::Image got = vision::resize_bicubic(input, o["width"].get<int64_t>(), o["height"].get<int64_t>());
      REQUIRE(got.height == expected.height);
      REQUIRE(got.width == expected.width);
      size_t mismatches = 0;
      for (size_t i = 0; i < got.pixels.size(); ++i) mismatches += got.pixels[i] != expected.pixels[i];
      CHECK(mismatches == 0);
      ++checked;
    }
  }
  REQUIRE(checked >= 16);
}
