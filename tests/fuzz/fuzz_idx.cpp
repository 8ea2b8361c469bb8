// libFuzzer target: the gzip + IDX reader (data/fashion_mnist.hpp) on arbitrary bytes.
// Any input must either parse or throw blip::Error: no crash, hang or huge allocation (the
// decompressed size is capped at 16 MiB here, as a caller would cap it).
#include <cstdint>

#include "blip/data/fashion_mnist.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::vector<uint8_t> bytes(data, data + size);
    const blip::data::IdxArray a = blip::data::parse_idx(blip::data::gunzip(bytes, "fuzz-input", size_t{1} << 24), "fuzz-input");
    size_t n = 1;
    for (int64_t d : a.dims) n *= static_cast<size_t>(d);
    if (n != a.data.size()) __builtin_trap();  // the dims must describe exactly the bytes returned
    if (a.dims.size() == 1 && size < 4096) {  // label files go through the split check too
      blip::data::IdxArray images{{a.dims[0], 28, 28}, std::vector<uint8_t>(n * 784)};
      (void)blip::data::fashion_mnist_split(images, a, "images", "fuzz-input");
    }
  } catch (const blip::Error&) {
  }
  return 0;
}
