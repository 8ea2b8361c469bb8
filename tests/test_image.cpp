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

TEST_CASE("an EXIF block whose IFD offset wraps around 32 bits is ignored, not read out of bounds", "[image][errors]") {
  // "Exif\0\0" + little-endian TIFF header whose first-IFD offset is 0xFFFFFFFF (fuzzer-found).
  const std::vector<uint8_t> exif{'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0};
  REQUIRE(vision::detail::exif_orientation(exif.data(), exif.size()) == 1);
}
