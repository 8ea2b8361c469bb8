// libFuzzer target: the restricted unpickler, and the checkpoint reader's interpretation of what
// it returns (the input is read as the object pickle of a legacy-format checkpoint, followed by
// its storage keys and storages). Any input must either parse or throw blip::Error: no crash,
// hang, huge allocation, or anything executed.
#include <cstdint>
#include <string>

#include "blip/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const blip::io::PickleDocument doc = blip::io::parse_pickle(data, size, "fuzz-input", blip::io::torch_pickle_globals());
    doc.check_depth(doc.root, 64);
  } catch (const blip::Error&) {
  }
  // Magic number, protocol 1001 and an empty sys_info dict: the legacy header.
  static const std::string header("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"
                                  "\x80\x02\x4d\xe9\x03\x2e\x80\x02\x7d\x2e", 25);
  std::string file = header;
  file.append(reinterpret_cast<const char*>(data), size);
  try {
    const blip::io::TorchCheckpoint ck(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "fuzz-input");
    for (const std::string& name : ck.keys()) (void)ck.load<float>(name);
    (void)ck.meta().dump();
  } catch (const blip::Error&) {
  }
  return 0;
}
