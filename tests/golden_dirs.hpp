// Finds golden case sets: BLIP_GOLDEN_DIR, else ../shared/golden beside the checkout.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

inline std::filesystem::path golden_root() {
  if (const char* env = std::getenv("BLIP_GOLDEN_DIR")) return env;
  return BLIP_DEFAULT_GOLDEN_DIR;
}

// Every folder under the root holding a model case set (config.json + weights.safetensors).
inline std::vector<std::filesystem::path> model_case_sets() {
  std::vector<std::filesystem::path> sets;
  const auto root = golden_root();
  if (!std::filesystem::exists(root)) return sets;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root))
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "config.json") &&
        std::filesystem::exists(entry.path() / "weights.safetensors"))
      sets.push_back(entry.path());
  std::sort(sets.begin(), sets.end());
  return sets;
}
