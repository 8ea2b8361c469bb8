// blip-golden-check DIR: finds every golden set under DIR and verifies this library against
// it, one line per case with its max error; exits non-zero on any mismatch or unreadable set.
// Model case sets (config.json + weights.safetensors) today; tokenizer, image and retrieval
// sets join as those parts land.
#include <blip/testing/golden_model.hpp>

#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: blip-golden-check DIR\n  verifies every golden case set found under DIR\n");
    return argc == 2 ? 0 : 2;
  }
  const fs::path root = argv[1];
  if (!fs::is_directory(root)) {
    std::fprintf(stderr, "blip-golden-check: '%s' is not a directory\n", argv[1]);
    return 2;
  }
  std::vector<fs::path> model_sets;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_directory() && fs::exists(entry.path() / "config.json") && fs::exists(entry.path() / "weights.safetensors"))
      model_sets.push_back(entry.path());
  std::sort(model_sets.begin(), model_sets.end());
  int failures = 0, cases = 0;
  for (const auto& dir : model_sets) {
    for (const auto& r : blip::testing::run_model_case_set(dir)) {
      ++cases;
      failures += !r.ok;
      std::printf("%-4s %s/%s  max error %.3g (tolerance %.3g)%s%s\n", r.ok ? "ok" : "FAIL",
                  dir.filename().c_str(), r.name.c_str(), r.max_error, r.tolerance, r.detail.empty() ? "" : "  ",
                  r.detail.c_str());
    }
  }
  if (model_sets.empty()) {
    std::fprintf(stderr, "blip-golden-check: no golden sets found under '%s'\n", argv[1]);
    return 1;
  }
  std::printf("%d passed, %d failed\n", cases - failures, failures);
  return failures == 0 ? 0 : 1;
}
