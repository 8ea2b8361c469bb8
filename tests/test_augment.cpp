// BLIP's train augmentations: properties that pin each op down, and the outputs of mmpretrain's
// own transforms (tests/data/augment/reference.json, produced by make_reference.py there).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "blip/vision/augment.hpp"

using namespace blip;
using namespace blip::vision;

namespace {

std::filesystem::path augment_data_dir() {
#ifdef BLIP_SOURCE_DIR
  return std::filesystem::path(BLIP_SOURCE_DIR) / "tests" / "data" / "augment";
#else
  return std::filesystem::path(__FILE__).parent_path() / "data" / "augment";
#endif
}

Image pattern(int64_t h, int64_t w, int64_t c = 3, uint32_t seed = 1) {
  Image img(h, w, c);
  uint32_t s = seed;
  for (auto& p : img.pixels) {
    s = s * 1664525u + 1013904223u;
    p = static_cast<uint8_t>(s >> 24);
  }
  return img;
}

uint8_t at(const Image& img, int64_t y, int64_t x, int64_t c = 0) { return img.row(y)[x * img.channels + c]; }

Image from_hex(const nlohmann::json& j, ChannelOrder order) {
  Image img(j.at("h").get<int64_t>(), j.at("w").get<int64_t>(), j.at("c").get<int64_t>(), order);
  const auto hex = j.at("hex").get<std::string>();
  REQUIRE(hex.size() == img.pixels.size() * 2);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return img;
}

nlohmann::json load_reference() {
  const auto path = augment_data_dir() / "reference.json";
  INFO("reading " << path.string());
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("hflip mirrors columns and twice is the identity", "[augment]") {
  const Image img = pattern(5, 7);
  const Image f = hflip(img);
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 7; ++x)
      for (int64_t c = 0; c < 3; ++c) REQUIRE(at(f, y, x, c) == at(img, y, 6 - x, c));
  REQUIRE(hflip(f).pixels == img.pixels);
}

TEST_CASE("equalize follows mmcv's step rule on a hand-computed histogram", "[augment]") {
  // 1000 pixels: 400 of 5, 300 of 100, 300 of 250. step = (1000 - 300) // 255 = 2, so
  // 5 -> 0, 100 -> (400 + 1) // 2 = 200, 250 -> min(255, (700 + 1) // 2) = 255.
  Image img(1000, 1, 3);
  for (int64_t y = 0; y < 1000; ++y)
    for (int64_t c = 0; c < 3; ++c) img.row(y)[c] = y < 400 ? 5 : y < 700 ? 100 : 250;
  const Image e = equalize(img);
  for (int64_t c = 0; c < 3; ++c) {
    REQUIRE(at(e, 0, 0, c) == 0);
    REQUIRE(at(e, 500, 0, c) == 200);
    REQUIRE(at(e, 900, 0, c) == 255);
  }
  // Fewer than 256 pixels outside the top value: step 0, channel unchanged.
  const Image small = pattern(4, 4);
  REQUIRE(equalize(small).pixels == small.pixels);
}

TEST_CASE("auto_contrast stretches each channel's range to 0..255 with the truncated float LUT", "[augment]") {
  Image img(2, 3, 3);
  const uint8_t ch0[6] = {50, 100, 150, 60, 70, 80}, ch2[6] = {0, 255, 3, 4, 5, 6};
  for (int64_t i = 0; i < 6; ++i) {
    img.pixels[static_cast<size_t>(i * 3)] = ch0[i];
    img.pixels[static_cast<size_t>(i * 3 + 1)] = 7;  // a single value: left alone
    img.pixels[static_cast<size_t>(i * 3 + 2)] = ch2[i];
  }
  const Image a = auto_contrast(img);
  // scale 2.55, offset -127.5, truncated: 50 -> 0, 100 -> 127, 150 -> 255, 60 -> 25, 70 -> 51, 80 -> 76
  const uint8_t want0[6] = {0, 127, 255, 25, 51, 76};
  for (int64_t i = 0; i < 6; ++i) {
    INFO("pixel " << i);
    REQUIRE(a.pixels[static_cast<size_t>(i * 3)] == want0[i]);
    REQUIRE(a.pixels[static_cast<size_t>(i * 3 + 1)] == 7);
    REQUIRE(a.pixels[static_cast<size_t>(i * 3 + 2)] == ch2[i]);  // already 0..255
  }
}

TEST_CASE("rotate: 0 degrees is the identity, 90 and 180 are exact pixel permutations", "[augment]") {
  const Image sq = pattern(6, 6);
  for (auto interp : {Interpolation::nearest, Interpolation::bicubic}) {
    INFO("interpolation " << static_cast<int>(interp));
    REQUIRE(rotate(sq, 0.0, kRotateFillBgr, interp).pixels == sq.pixels);
    const Image r90 = rotate(sq, 90.0, kRotateFillBgr, interp);   // clockwise about (2.5, 2.5)
    const Image r180 = rotate(sq, 180.0, kRotateFillBgr, interp);
    const Image r270 = rotate(sq, -90.0, kRotateFillBgr, interp);
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 6; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          REQUIRE(at(r90, y, x, c) == at(sq, 5 - x, y, c));
          REQUIRE(at(r180, y, x, c) == at(sq, 5 - y, 5 - x, c));
          REQUIRE(at(r270, y, x, c) == at(sq, x, 5 - y, c));
        }
  }
}

TEST_CASE("rotate fills the corners as mmpretrain's pad_val=128 reaches OpenCV: blue 128 only", "[augment]") {
  Image bgr = pattern(9, 9);
  bgr.order = ChannelOrder::bgr;
  const Image rb = rotate(bgr, 45.0);
  REQUIRE(at(rb, 0, 0, 0) == 128);  // B
  REQUIRE(at(rb, 0, 0, 1) == 0);
  REQUIRE(at(rb, 0, 0, 2) == 0);
  const Image rgb = bgr.swapped_order();
  const Image rr = rotate(rgb, 45.0);
  REQUIRE(at(rr, 0, 0, 0) == 0);  // R
  REQUIRE(at(rr, 0, 0, 2) == 128);  // B
  REQUIRE(rr.swapped_order().pixels == rb.pixels);  // order-independent apart from the mapping
  const Image gray = pattern(9, 9, 1);
  REQUIRE(at(rotate(gray, 45.0), 0, 0) == 128);
  // Shear pads every channel with 128.
  const Image sh = shear(bgr, 0.5, ShearDirection::horizontal);
  for (int64_t c = 0; c < 3; ++c) REQUIRE(at(sh, 8, 0, c) == 128);
}

TEST_CASE("shear: 0 is the identity and an integral shear moves a known pixel", "[augment]") {
  const Image img = pattern(7, 9);
  for (auto interp : {Interpolation::nearest, Interpolation::bicubic}) {
    INFO("interpolation " << static_cast<int>(interp));
    REQUIRE(shear(img, 0.0, ShearDirection::horizontal, kShearFillBgr, interp).pixels == img.pixels);
    REQUIRE(shear(img, 0.0, ShearDirection::vertical, kShearFillBgr, interp).pixels == img.pixels);
    // x' = x + 1*y: row y moves right by y; the uncovered left part is border.
    const Image h = shear(img, 1.0, ShearDirection::horizontal, kShearFillBgr, interp);
    REQUIRE(at(h, 2, 3, 1) == at(img, 2, 1, 1));
    REQUIRE(at(h, 6, 8, 0) == at(img, 6, 2, 0));
    REQUIRE(at(h, 4, 3, 2) == 128);
    // y' = y + 1*x: column x moves down by x.
    const Image v = shear(img, 1.0, ShearDirection::vertical, kShearFillBgr, interp);
    REQUIRE(at(v, 5, 2, 0) == at(img, 3, 2, 0));
    REQUIRE(at(v, 1, 4, 0) == 128);
  }
}

TEST_CASE("brightness and sharpness with factor 1 (BLIP's only factor) are the identity", "[augment]") {
  const Image img = pattern(8, 11);
  REQUIRE(adjust_brightness(img, 1.0).pixels == img.pixels);
  REQUIRE(adjust_sharpness(img, 1.0).pixels == img.pixels);
  REQUIRE(adjust_brightness(img, 0.0).pixels == std::vector<uint8_t>(img.pixels.size(), 0));
  // A flat image is its own blur: sharpness leaves it, brightness scales and truncates.
  Image flat(5, 5, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), uint8_t{100});
  REQUIRE(adjust_sharpness(flat, 1.7).pixels == flat.pixels);
  REQUIRE(adjust_brightness(flat, 1.5).pixels == std::vector<uint8_t>(flat.pixels.size(), 150));
  REQUIRE(adjust_brightness(flat, 3.0).pixels == std::vector<uint8_t>(flat.pixels.size(), 255));
}

TEST_CASE("resize_bicubic_cv2: sizes, identity, constant images", "[augment]") {
  const Image img = pattern(13, 17);
  for (auto path : {CubicResizePath::ipp, CubicResizePath::opencv}) {
    INFO("path " << static_cast<int>(path));
    const Image r = resize_bicubic_cv2(img, 29, 11, path);
    REQUIRE(r.width == 29);
    REQUIRE(r.height == 11);
    REQUIRE(r.channels == 3);
    REQUIRE(resize_bicubic_cv2(img, 17, 13, path).pixels == img.pixels);
    Image flat(9, 7, 3);
    std::fill(flat.pixels.begin(), flat.pixels.end(), uint8_t{77});
    REQUIRE(resize_bicubic_cv2(flat, 20, 30, path).pixels == std::vector<uint8_t>(20 * 30 * 3, 77));
    REQUIRE(resize_bicubic_cv2(flat, 3, 2, path).pixels == std::vector<uint8_t>(3 * 2 * 3, 77));
  }
  REQUIRE_THROWS_WITH(resize_bicubic_cv2(img, 0, 5), Catch::Matchers::Contains("resize_bicubic_cv2"));
}

TEST_CASE("RandomResizedCrop: 384x384 output, boxes within the scale and ratio ranges", "[augment]") {
  const RandomResizedCrop rrc;  // BLIP: size 384, scale (0.5, 1), ratio (3/4, 4/3), 10 attempts
  Generator gen(7);
  const int64_t H = 480, W = 640;
  int fallbacks = 0;
  std::set<int64_t> tops;
  for (int i = 0; i < 2000; ++i) {
    const CropBox b = rrc.sample_box(H, W, gen);
    fallbacks += b.fallback;
    REQUIRE(b.top >= 0);
    REQUIRE(b.left >= 0);
    REQUIRE(b.top + b.height <= H);
    REQUIRE(b.left + b.width <= W);
    if (b.fallback) continue;
    tops.insert(b.top);
    // widths and heights are rounded to integers: allow the half-pixel that moves
    const double area = static_cast<double>(b.height * b.width) / (H * W);
    REQUIRE(area >= 0.5 * (1 - 0.01));
    REQUIRE(area <= 1.0);
    const double ratio = static_cast<double>(b.width) / static_cast<double>(b.height);
    REQUIRE(ratio >= 0.75 * (1 - 0.01));
    REQUIRE(ratio <= 4.0 / 3.0 * (1 + 0.01));
  }
  REQUIRE(fallbacks < 2000 / 10);  // most attempts fit a 4:3 image
  REQUIRE(tops.size() > 20);        // placement is random

  Generator g2(3);
  const Image out = rrc(pattern(50, 70), g2);
  REQUIRE(out.height == 384);
  REQUIRE(out.width == 384);
  REQUIRE(out.channels == 3);
}

TEST_CASE("RandomResizedCrop falls back to the central crop when no attempt fits", "[augment]") {
  RandomResizedCrop rrc;
  Generator gen(1);
  // 1000 x 10: half the area at a near-square aspect is ~70 wide, never fits in 10 columns.
  const CropBox b = rrc.sample_box(1000, 10, gen);
  REQUIRE(b.fallback);
  REQUIRE(b.width == 10);
  REQUIRE(b.height == 13);  // round(10 / (3/4))
  REQUIRE(b.top == (1000 - 13) / 2);
  REQUIRE(b.left == 0);
  // Too wide: height kept, width round(10 * 4/3) = 13.
  const CropBox w = rrc.sample_box(10, 1000, gen);
  REQUIRE(w.fallback);
  REQUIRE(w.height == 10);
  REQUIRE(w.width == 13);
  REQUIRE(w.left == (1000 - 13) / 2);
  // No attempts at all: the whole image when its aspect is within range.
  rrc.max_attempts = 0;
  const CropBox whole = rrc.sample_box(480, 640, gen);
  REQUIRE(whole.fallback);
  REQUIRE((whole.top == 0 && whole.left == 0 && whole.height == 480 && whole.width == 640));
}

TEST_CASE("RandAugment: BLIP's policies, the reference magnitude formula, seeded reproducibility", "[augment]") {
  const RandAugment ra;
  const auto& p = ra.policies;
  REQUIRE(p.size() == 7);
  REQUIRE(ra.num_policies == 2);
  // (level / total) * (hi - lo) + lo at level 5 of 10
  REQUIRE(ra.magnitude_of(p[2], 5) == 15.0);   // Rotate (0, 30)
  REQUIRE(ra.magnitude_of(p[3], 5) == 0.0);    // Brightness (0, 0)
  REQUIRE(ra.magnitude_of(p[4], 5) == 0.0);    // Sharpness (0, 0)
  REQUIRE(ra.magnitude_of(p[5], 5) == 0.15);   // Shear (0, 0.3)
  REQUIRE(ra.magnitude_of(p[6], 5) == 0.15);
  AugmentPolicy reversed{AugmentOp::rotate, 10, 0};
  REQUIRE(ra.magnitude_of(reversed, 3) == 7.0);  // the docstring's (10, 0) example

  const Image img = pattern(40, 48);
  Generator a(123), b(123);
  REQUIRE(ra(img, a).pixels == ra(img, b).pixels);
  // Different seeds pick different ops: over a few seeds the outputs are not all the same.
  std::set<std::vector<uint8_t>> outputs;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Generator g(seed);
    outputs.insert(ra(img, g).pixels);
  }
  REQUIRE(outputs.size() >= 4);
}

TEST_CASE("RandAugment's random decisions have the reference's distribution", "[augment]") {
  const RandAugment ra;
  Generator gen(2024);
  const int n = 20000;
  std::vector<int> chosen(7, 0);
  int applied = 0, negated = 0, with_magnitude = 0;
  for (int i = 0; i < n; ++i)
    for (const auto& s : ra.sample(gen)) {
      ++chosen[s.policy];
      applied += s.applied;
      const auto& pol = ra.policies[s.policy];
      if (s.applied && pol.has_magnitude() && pol.magnitude_hi != 0) {
        ++with_magnitude;
        REQUIRE(std::abs(s.magnitude) == ra.magnitude_of(pol, 5));
        negated += s.magnitude < 0;
      }
      if (!s.applied) REQUIRE(s.magnitude == 0);
    }
  for (int c : chosen) REQUIRE(std::abs(c / (2.0 * n) - 1.0 / 7) < 0.01);  // uniform, with replacement
  REQUIRE(std::abs(applied / (2.0 * n) - 0.5) < 0.01);                      // prob 0.5
  REQUIRE(std::abs(negated / static_cast<double>(with_magnitude) - 0.5) < 0.02);  // random_negative_prob 0.5

  // magnitude_std: 'inf' draws the level uniformly below magnitude_level; a positive std clips to [0, total].
  RandAugment noisy;
  noisy.policies = {{AugmentOp::rotate, 0, 30, 1.0, 0.0}};
  noisy.magnitude_std = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 200; ++i) {
    const auto s = noisy.sample(gen)[0];
    REQUIRE(s.magnitude >= 0);
    REQUIRE(s.magnitude <= 15.0);
  }
  noisy.magnitude_std = 100;
  for (int i = 0; i < 200; ++i) {
    const auto s = noisy.sample(gen)[0];
    REQUIRE(s.magnitude >= 0);
    REQUIRE(s.magnitude <= 30.0);
  }
}

TEST_CASE("TrainAugment gives a 384x384 image, the same for the same seed", "[augment]") {
  const TrainAugment train;
  const Image img = pattern(120, 160);
  Generator a(5), b(5), c(6);
  const Image x = train(img, a), y = train(img, b), z = train(img, c);
  REQUIRE(x.height == 384);
  REQUIRE(x.width == 384);
  REQUIRE(x.pixels == y.pixels);
  REQUIRE(x.pixels != z.pixels);
  // operator() is sample() then apply() on the same stream
  Generator d(5);
  const auto decisions = train.sample(img.height, img.width, d);
  REQUIRE(train.apply(img, decisions).pixels == x.pixels);
}

TEST_CASE("augmentation errors name the op and the values", "[augment][errors]") {
  using Catch::Matchers::Contains;
  const Image img = pattern(10, 10);
  REQUIRE_THROWS_WITH(crop(img, 5, 5, 6, 2), Contains("crop") && Contains("not inside"));
  REQUIRE_THROWS_AS(hflip(Image{}), blip::Error);
  REQUIRE_THROWS_WITH(hflip(Image{}), Contains("hflip: invalid image"));
  RandomResizedCrop bad;
  bad.scale = {0.9, 0.5};
  Generator gen(0);
  REQUIRE_THROWS_WITH(bad.sample_box(10, 10, gen), Contains("RandomResizedCrop") && Contains("0.9"));
  RandAugment ra;
  ra.policies[0].prob = 1.5;
  REQUIRE_THROWS_WITH(ra.sample(gen), Contains("AutoContrast prob") && Contains("1.5"));
  ra = RandAugment{};
  ra.num_policies = 0;
  REQUIRE_THROWS_WITH(ra.sample(gen), Contains("num_policies"));
  REQUIRE_THROWS_WITH(ra.apply(img, {{9, true, 0}}), Contains("policy 9"));
  REQUIRE_THROWS_WITH(rotate(img, std::nan("")), Contains("rotate"));
  TrainAugment t;
  t.flip_prob = -0.1;
  REQUIRE_THROWS_WITH(t(img, gen), Contains("flip_prob"));
}

TEST_CASE("every op reproduces mmpretrain's output on the stored reference cases", "[augment][reference]") {
  const auto doc = load_reference();
  REQUIRE(doc.at("channel_order") == "bgr");
  std::map<std::string, Image> inputs;
  for (const auto& [name, j] : doc.at("inputs").items()) inputs[name] = from_hex(j, ChannelOrder::bgr);
  int exact = 0, approximate = 0;
  for (const auto& c : doc.at("cases")) {
    const std::string name = c.at("name"), op = c.at("op");
    const auto& prm = c.at("params");
    const Image& in = inputs.at(c.at("input").get<std::string>());
    const Image want = from_hex(c.at("output"), ChannelOrder::bgr);
    auto interp = [&] { return prm.at("interpolation") == "nearest" ? Interpolation::nearest : Interpolation::bicubic; };
    auto path = [&] { return prm.at("path") == "ipp" ? CubicResizePath::ipp : CubicResizePath::opencv; };
    Image got;
    if (op == "hflip") got = hflip(in);
    else if (op == "auto_contrast") got = auto_contrast(in);
    else if (op == "equalize") got = equalize(in);
    else if (op == "rotate") got = rotate(in, prm.at("angle").get<double>(), kRotateFillBgr, interp());
    else if (op == "shear")
      got = shear(in, prm.at("magnitude").get<double>(),
                  prm.at("direction") == "horizontal" ? ShearDirection::horizontal : ShearDirection::vertical, kShearFillBgr,
                  interp());
    else if (op == "brightness") got = adjust_brightness(in, prm.at("factor").get<double>());
    else if (op == "sharpness") got = adjust_sharpness(in, prm.at("factor").get<double>());
    else if (op == "resize") got = resize_bicubic_cv2(in, prm.at("width").get<int64_t>(), prm.at("height").get<int64_t>(), path());
    else if (op == "random_resized_crop") {
      RandomResizedCrop rrc;
      rrc.size = prm.at("size").get<int64_t>();
      rrc.resize_path = path();
      got = rrc.apply(in, {prm.at("top").get<int64_t>(), prm.at("left").get<int64_t>(), prm.at("height").get<int64_t>(),
                           prm.at("width").get<int64_t>(), false});
    } else {
      FAIL("unknown op " << op);
    }
    INFO(name);
    REQUIRE(got.height == want.height);
    REQUIRE(got.width == want.width);
    REQUIRE(got.channels == want.channels);
    size_t differ = 0;
    int max_diff = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) {
      const int d = std::abs(int{got.pixels[i]} - int{want.pixels[i]});
      differ += d != 0;
      max_diff = std::max(max_diff, d);
    }
    INFO(differ << " values differ, by up to " << max_diff);
    if (c.at("exact").get<bool>()) {
      CHECK(differ == 0);
      ++exact;
    } else {  // IPP's resize: the same resampling, rounded from float arithmetic we cannot see
      CHECK(max_diff <= 1);
      CHECK(differ * 100 <= got.pixels.size());
      ++approximate;
    }
  }
  REQUIRE(exact >= 15);
  REQUIRE(approximate >= 3);

  // The magnitudes mmpretrain's RandAugment computes for BLIP's policies at level 5.
  const RandAugment ra;
  const auto& ref = doc.at("rand_augment");
  const auto& mags = ref.at("policy_magnitudes_level5");
  REQUIRE(mags.size() == ra.policies.size());
  for (size_t i = 0; i < mags.size(); ++i) {
    INFO("policy " << i << " " << augment_op_name(ra.policies[i].op));
    REQUIRE(mags[i].is_null() == !ra.policies[i].has_magnitude());
    if (!mags[i].is_null()) REQUIRE(ra.magnitude_of(ra.policies[i], ra.magnitude_level) == mags[i].get<double>());
    REQUIRE(ra.policies[i].prob == ref.at("prob")[i].get<double>());
    REQUIRE(ra.policies[i].random_negative_prob == ref.at("random_negative_prob")[i].get<double>());
  }
}
