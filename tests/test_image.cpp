// Image decode, Pillow-exact resize and the test pipeline against the reference's golden data.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/io/safetensors.hpp"
#include "blip/vision/pipeline.hpp"
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

TEST_CASE("decoding equals cv2.imdecode on every golden decode case", "[vision][golden]") {
  const auto m = manifest();
  int checked = 0;
  for (const auto& c : m["decode"]) {
    const std::string file = (golden_root() / "image" / c["file"].get<std::string>()).string();
    INFO(file);
    const io::SafeTensorsFile f((golden_root() / "image" / c["safetensors"].get<std::string>()).string());
    const vision::Image expected = image_from(f, "decoded_bgr");
    const vision::Image got = vision::load_image(file);
    REQUIRE(got.height == expected.height);
    REQUIRE(got.width == expected.width);
    CHECK(got.pixels == expected.pixels);
    ++checked;
  }
  REQUIRE(checked >= 6);
}

TEST_CASE("the whole test pipeline equals the reference's normalised tensors", "[vision][golden]") {
  const auto m = manifest();
  int checked = 0;
  for (const auto& c : m["pipeline"]) {
    const std::string file = (golden_root() / "image" / c["file"].get<std::string>()).string();
    INFO(file);
    const io::SafeTensorsFile f((golden_root() / "image" / c["safetensors"].get<std::string>()).string());
    const auto expected = f.load<float>("pixel_values").to_vector();
    const auto got = vision::load_and_preprocess(file).to_vector();
    REQUIRE(got.size() == expected.size());
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - expected[i]));
    CHECK(worst == 0.0f);
    ++checked;
  }
  REQUIRE(checked >= 3);
}

TEST_CASE("bad images give errors naming the file; huge headers are refused before allocating", "[vision][errors]") {
  using Catch::Matchers::Contains;
  const std::string png = (golden_root() / "image" / "decode" / "camera_gray8.png").string();
  auto bytes = vision::read_file_bytes(png);
  REQUIRE_THROWS_WITH(vision::decode_image(bytes.data(), bytes.size() / 2, "half.png"), Contains("half.png") && Contains("PNG"));
  REQUIRE_THROWS_WITH(vision::decode_image(bytes.data(), 4, "tiny"), Contains("too short"));
  const std::string gif("GIF89a\x01\x00\x01\x00", 10);
  REQUIRE_THROWS_WITH(vision::decode_image(reinterpret_cast<const uint8_t*>(gif.data()), gif.size(), "x.gif"),
                      Contains("neither PNG nor JPEG"));
  // A PNG header claiming 100000 x 100000 pixels: width/height live at bytes 16..23 of IHDR.
  auto huge = bytes;
  const uint8_t dims[8] = {0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0};
  std::copy(dims, dims + 8, huge.begin() + 16);
  REQUIRE_THROWS_WITH(vision::decode_image(huge.data(), huge.size(), "bomb.png"), Contains("bomb.png"));
  vision::DecodeOptions strict;
  strict.max_pixels = 100;
  REQUIRE_THROWS_WITH(vision::load_image(png, strict), Contains("over the limit"));
  const std::string jpg = (golden_root() / "image" / "decode" / "chelsea_exif_rot6_jpg.jpg").string();
  auto jbytes = vision::read_file_bytes(jpg);
  REQUIRE_THROWS_WITH(vision::decode_image(jbytes.data(), jbytes.size() / 3, "cut.jpg"), Contains("cut.jpg"));
  REQUIRE_THROWS_WITH(vision::load_image("/nonexistent.png"), Contains("cannot open"));
  // RGB order on request equals the BGR decode with channels swapped.
  vision::DecodeOptions rgb;
  rgb.order = vision::ChannelOrder::rgb;
  REQUIRE(vision::load_image(jpg, rgb).pixels == vision::load_image(jpg).swapped_order().pixels);
}
