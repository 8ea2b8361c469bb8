// blip/io/checkpoint_file.hpp — opening a checkpoint file with the reader its bytes call for.
//
// Contract: with_checkpoint_file(path, f) opens `path` (a regular file: io/regular_file.hpp) as
// a PyTorch checkpoint (TorchCheckpoint) when it starts like one — a zip archive ("PK") or a
// pickle (0x80, as the legacy format's magic number is) — and as safetensors when its first 8
// bytes are a header length followed by '{'; then returns f(source). Anything else is refused
// with a message that names the file, its size and its first bytes, so a cut or foreign file
// is not reported as a broken safetensors header.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

#include "blip/io/regular_file.hpp"
#include "blip/io/safetensors.hpp"
#include "blip/io/torch_checkpoint.hpp"

namespace blip::io {

enum class CheckpointFormat { torch, safetensors };

inline CheckpointFormat sniff_checkpoint_format(const std::string& path) {
  const RegularFile file(path, "checkpoint");
  unsigned char head[9] = {};
  const ssize_t n = ::pread(file.fd(), head, sizeof head, 0);
  BLIP_CHECK(n >= 0, "cannot read checkpoint '", path, "'");
  if (n >= 2 && head[0] == 'P' && head[1] == 'K') return CheckpointFormat::torch;  // zip (PyTorch >= 1.6)
  if (n >= 2 && head[0] == 0x80) return CheckpointFormat::torch;                  // pickle (legacy torch.save)
  if (n == 9 && head[8] == '{') return CheckpointFormat::safetensors;
  std::string hex;
  for (ssize_t i = 0; i < n; ++i) {
    char b[4];
    std::snprintf(b, sizeof b, "%s%02x", i ? " " : "", head[i]);
    hex += b;
  }
  fail("checkpoint '", path, "' (", file.size(), " bytes) starts with ", n == 0 ? "nothing" : "bytes " + hex,
       ": not a PyTorch checkpoint (zip or legacy pickle) nor a safetensors file (8-byte length, then '{')");
}

template <class F>
decltype(auto) with_checkpoint_file(const std::string& path, F&& f) {
  if (sniff_checkpoint_format(path) == CheckpointFormat::torch) return f(TorchCheckpoint(path));
  return f(SafeTensorsFile(path));
}

}  // namespace blip::io
