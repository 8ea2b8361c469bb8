// libFuzzer target: the files a model folder brings (pretrained/, io/hf_config.hpp, io/npy.hpp).
// The input is parsed as JSON (bounded depth) and read as each of blip's config layout,
// transformers' config.json + preprocessor_config.json and tokenizer.json; the configs are then
// sanity-checked as load_pretrained does, and a tokenizer that loads encodes a text. The input is
// also read as a .npy file. Any input must load or throw blip::Error: no crash, hang or huge
// allocation.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>

#include "blip/io/npy.hpp"
#include "blip/pretrained/model_folder.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json j = blip::io::parse_json_text(text, "fuzz-input");
    try {
      blip::pretrained::check_config_sane(blip::io::blip_config_from_json(j, "fuzz-input"), "fuzz-input");
    } catch (const blip::Error&) {
    }
    try {
      blip::pretrained::check_config_sane(blip::io::blip_config_from_hf(j, &j, "fuzz-input"), "fuzz-input");
    } catch (const blip::Error&) {
    }
    const auto tok = blip::pretrained::tokenizer_from_json(j, "fuzz-input", 16);
    (void)tok.encode("a dog [ENC] on the beach");
  } catch (const blip::Error&) {
  }
  static const std::string npy = "/tmp/blip_fuzz_npy_" + std::to_string(::getpid()) + ".npy";
  {
    std::ofstream out(npy, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    (void)blip::io::read_npy(npy);
  } catch (const blip::Error&) {
  }
  return 0;
}
