// blip/vision/image.hpp — Image: 8-bit pixels, height x width x channels, row-major.
//
// Contract: channels is 1 (gray) or 3; `order` says whether 3-channel pixels are RGB or BGR
// (mmcv/OpenCV decode to BGR). Constructing with an absurd size throws before allocating.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "blip/core/error.hpp"

namespace blip::vision {

enum class ChannelOrder { rgb, bgr };

struct Image {
  int64_t height = 0, width = 0, channels = 3;
  ChannelOrder order = ChannelOrder::rgb;
  std::vector<uint8_t> pixels;  // height * width * channels

  Image() = default;
  Image(int64_t h, int64_t w, int64_t c, ChannelOrder o = ChannelOrder::rgb) : height(h), width(w), channels(c), order(o) {
    BLIP_CHECK(h > 0 && w > 0 && (c == 1 || c == 3), "Image: invalid size ", h, "x", w, "x", c);
    pixels.assign(static_cast<size_t>(h * w * c), 0);
  }
  uint8_t* row(int64_t y) { return pixels.data() + y * width * channels; }
  const uint8_t* row(int64_t y) const { return pixels.data() + y * width * channels; }

  // The same pixels with the other channel order.
  Image swapped_order() const {
    Image out = *this;
    if (channels == 3) {
      for (size_t i = 0; i < out.pixels.size(); i += 3) std::swap(out.pixels[i], out.pixels[i + 2]);
      out.order = order == ChannelOrder::rgb ? ChannelOrder::bgr : ChannelOrder::rgb;
    }
    return out;
  }
};

}  // namespace blip::vision
