// libFuzzer target: whole PyTorch checkpoint files (zip and legacy) through TorchCheckpoint and
// every tensor load. Any input must either load or throw blip::Error: no crash, hang or huge
// allocation.
#include <cstdint>

#include "blip/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const blip::io::TorchCheckpoint ck(data, size, "fuzz-input");
    for (const std::string& name : ck.keys()) {
      if (ck.dtype(name) == "I64" || ck.dtype(name) == "I32") (void)ck.load<int64_t>(name);
      else (void)ck.load<float>(name);
    }
    (void)ck.meta().dump();
  } catch (const blip::Error&) {
  }
  return 0;
}
