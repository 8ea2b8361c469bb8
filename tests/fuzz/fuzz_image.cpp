// libFuzzer target: image decode (PNG/JPEG with EXIF, WebP, GIF) followed by the Pillow bicubic resize.
// Any input must decode or throw blip::Error; a small pixel limit keeps runs fast and tests
// the limit itself.
#include <cstdint>

#include "blip/vision/pipeline.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  blip::vision::DecodeOptions options;
  options.max_pixels = 1 << 20;
  try {
    const blip::vision::Image img = blip::vision::decode_image(data, size, "fuzz-input", options);
    (void)blip::vision::resize_bicubic(img, 17, 9);
  } catch (const blip::Error&) {
  }
  return 0;
}
