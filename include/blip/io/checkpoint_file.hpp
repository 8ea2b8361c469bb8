// blip/io/checkpoint_file.hpp — opening a checkpoint file with the reader its bytes call for.
//
// Contract: with_checkpoint_file(path, f) opens `path` as a PyTorch checkpoint (TorchCheckpoint)
// when it starts like one — a zip archive ("PK\x03\x04") or the legacy format's pickled magic
// number (80 02 8a 0a) — and as safetensors otherwise (whose first bytes are its header length),
// then returns f(source). A file that cannot be opened throws blip::Error naming it.
#pragma once

#include <cstdio>
#include <string>

#include "blip/io/safetensors.hpp"
#include "blip/io/torch_checkpoint.hpp"

namespace blip::io {

inline bool looks_like_torch_checkpoint(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  BLIP_CHECK(f, "cannot open checkpoint '", path, "'");
  unsigned char magic[4] = {0, 0, 0, 0};
  const size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return (n == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4) ||
         (n == 4 && magic[0] == 0x80 && magic[1] == 0x02 && magic[2] == 0x8a && magic[3] == 0x0a);
}

template <class F>
decltype(auto) with_checkpoint_file(const std::string& path, F&& f) {
  if (looks_like_torch_checkpoint(path)) return f(TorchCheckpoint(path));
  return f(SafeTensorsFile(path));
}

}  // namespace blip::io
