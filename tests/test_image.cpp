// Image decode, Pillow-exact resize and the test pipeline against the reference's golden data.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "blip/io/safetensors.hpp"
#include "blip/testing/golden_inputs.hpp"
#include "golden_dirs.hpp"

using namespace blip;



TEST_CASE("resize, decode and the whole pipeline are exact on every golden image case", "[vision][golden]") {
  const auto results = blip::testing::run_image_cases(golden_root() / "image");
  int resize = 0, decode = 0, pipeline = 0;
  for (const auto& r : results) {
    INFO(r.name << ": max error " << r.max_error << " " << r.detail);
    CHECK(r.ok);
    resize += r.name.starts_with("resize/");
    decode += r.name.starts_with("decode/");
    pipeline += r.name.starts_with("pipeline/");
  }
  REQUIRE(resize >= 16);
  REQUIRE(decode >= 6);
  REQUIRE(pipeline >= 3);
}

TEST_CASE("bad images give errors naming the file; huge headers are refused before allocating", "[vision][errors]") {
  using Catch::Matchers::Contains;
  const std::string png = (golden_root() / "image" / "decode" / "camera_gray8.png").string();
  auto bytes = vision::read_file_bytes(png);
  REQUIRE_THROWS_WITH(vision::decode_image(bytes.data(), bytes.size() / 2, "half.png"), Contains("half.png") && Contains("PNG"));
  REQUIRE_THROWS_WITH(vision::decode_image(bytes.data(), 4, "tiny"), Contains("too short"));
  const std::string gif("GIF89a\x01\x00\x01\x00", 10);
  REQUIRE_THROWS_WITH(vision::decode_image(reinterpret_cast<const uint8_t*>(gif.data()), gif.size(), "x.gif"),
                      Contains("x.gif") && Contains("not a valid GIF"));
  const std::string bmp("BM\x36\x00\x00\x00\x00\x00\x00\x00", 10);
  REQUIRE_THROWS_WITH(vision::decode_image(reinterpret_cast<const uint8_t*>(bmp.data()), bmp.size(), "x.bmp"),
                      Contains("not PNG, JPEG, WebP or GIF"));
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

TEST_CASE("an EXIF block whose IFD offset wraps around 32 bits is ignored, not read out of bounds", "[image][errors]") {
  // "Exif\0\0" + little-endian TIFF header whose first-IFD offset is 0xFFFFFFFF (fuzzer-found).
  const std::vector<uint8_t> exif{'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0};
  REQUIRE(vision::detail::exif_orientation(exif.data(), exif.size()) == 1);
}

using namespace blip::vision;

// WebP (libwebp) and GIF (giflib, first frame) against what Pillow decodes from the same files
// (tests/data/images/make_webp_gif.py wrote <name>.expected.png with Image.open(f).convert("RGB")).
TEST_CASE("WebP and GIF decode as Pillow does; lossy WebP within its codec's rounding") {
  const std::string dir = std::string(BLIP_SOURCE_DIR) + "/tests/data/images/";
  for (const char* name : {"lossless.webp", "alpha.webp", "lossy.webp", "plain.gif", "interlaced.gif", "animated.gif"}) {
    INFO(name);
    DecodeOptions rgb;
    rgb.order = ChannelOrder::rgb;
    const Image got = load_image(dir + name, rgb);
    const Image want = load_image(dir + name + ".expected.png", rgb);
    REQUIRE(got.height == want.height);
    REQUIRE(got.width == want.width);
    int worst = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) worst = std::max(worst, std::abs(int(got.pixels[i]) - int(want.pixels[i])));
    // Pillow bundles its own libwebp; lossy decoding may round differently across versions.
    CHECK(worst <= (std::string(name) == "lossy.webp" ? 3 : 0));
    // BGR is the same pixels swapped.
    const Image bgr = load_image(dir + name);
    CHECK(bgr.pixels[0] == got.pixels[2]);
    CHECK(bgr.pixels[2] == got.pixels[0]);
  }
}

TEST_CASE("cut or corrupt WebP and GIF files are refused naming the file") {
  const std::string dir = std::string(BLIP_SOURCE_DIR) + "/tests/data/images/";
  for (const char* name : {"lossless.webp", "lossy.webp", "plain.gif", "interlaced.gif"}) {
    INFO(name);
    const std::vector<uint8_t> bytes = read_file_bytes(dir + name);
    for (size_t cut : {size_t(12), bytes.size() / 3, bytes.size() / 2}) {
      INFO("cut at " << cut);
      CHECK_THROWS_WITH(decode_image(bytes.data(), cut, name), Catch::Contains(name));
    }
  }
  // A GIF header that claims a screen of 65535 x 65535: refused from the header, before allocating.
  std::vector<uint8_t> huge = read_file_bytes(dir + "plain.gif");
  huge[6] = huge[7] = huge[8] = huge[9] = 0xFF;
  DecodeOptions small;
  small.max_pixels = 1 << 20;
  CHECK_THROWS_WITH(decode_image(huge.data(), huge.size(), "huge.gif", small), Catch::Contains("over the limit"));
}
