// libFuzzer target: the safetensors header parser and tensor loads on arbitrary bytes.
// Any input must either parse or throw blip::Error: no crash, hang or huge allocation.
#include <cstdint>

#include "blip/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    blip::io::SafeTensorsFile file(data, size, "fuzz-input");
    for (const auto& [name, entry] : file.entries()) {
      if (entry.dtype == "F32" || entry.dtype == "F16" || entry.dtype == "BF16" || entry.dtype == "F64")
        (void)file.load<float>(name);
      else if (entry.dtype == "I64" || entry.dtype == "I32")
        (void)file.load<int64_t>(name);
    }
  } catch (const blip::Error&) {
  }
  return 0;
}
