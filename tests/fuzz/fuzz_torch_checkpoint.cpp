// libFuzzer target: whole PyTorch checkpoint files (zip and legacy) through TorchCheckpoint and
// every tensor load. Any input must either load or throw blip::Error: no crash, hang or huge
// allocation. meta() must stay within its documented bound (issue 11: memo references once
// multiplied it 1000-fold).
#include <cstdint>
#include <cstdlib>

#include "blip/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const blip::io::TorchCheckpoint ck(data, size, "fuzz-input");
    for (const std::string& name : ck.keys()) {
      if (ck.dtype(name) == "I64" || ck.dtype(name) == "I32") (void)ck.load<int64_t>(name);
      else (void)ck.load<float>(name);
    }
    if (ck.meta().dump().size() > (size_t{64} << 20) + (size_t{32} << 20)) std::abort();
  } catch (const blip::Error&) {
  }
  return 0;
}
