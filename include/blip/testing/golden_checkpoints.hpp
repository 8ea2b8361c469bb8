// blip/testing/golden_checkpoints.hpp — checks the reference's torch.save files
// (checkpoints/<case set>_<variant>.pth) against the case set's weights.safetensors.
//
// Contract: run_checkpoint_cases(dir) returns one CaseResult per .pth file in dir: the tensor
// names must equal the reference's, every shape must agree, and every value must equal the
// reference rounded to the dtype the checkpoint stores (F16/BF16 through core/dtype.hpp;
// integers exactly); max_error is the largest absolute difference. The reference is
// dir/../<case set>/weights.safetensors, <case set> being the file name up to its last '_'.
// A file that cannot be read gives a failed result with the reason.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "blip/io/safetensors.hpp"
#include "blip/io/torch_checkpoint.hpp"
#include "blip/testing/golden_model.hpp"

namespace blip::testing {

inline CaseResult check_checkpoint(const std::filesystem::path& file, const std::filesystem::path& reference) {
  CaseResult r{file.filename().string(), 0, 0, true, ""};
  try {
    const io::TorchCheckpoint ck(file.string());
    const io::SafeTensorsFile ref(reference.string());
    std::vector<std::string> keys = ck.keys(), expected_keys;
    for (const auto& [name, entry] : ref.entries()) expected_keys.push_back(name);
    std::sort(keys.begin(), keys.end());
    if (keys != expected_keys) {
      r.ok = false;
      r.detail = str(keys.size(), " tensors vs ", expected_keys.size(), " in ", reference.string(), ", names differ");
      return r;
    }
    for (const std::string& key : keys) {
      if (ck.shape(key) != ref.entry(key).shape) {
        r.ok = false;
        r.detail += str(key, " has shape ", ck.shape(key), " vs ", ref.entry(key).shape, "; ");
        continue;
      }
      const std::string dtype = ck.dtype(key);
      if (dtype == "I64" || dtype == "I32" || dtype == "U8" || dtype == "BOOL") {
        const auto got = ck.load<int64_t>(key).to_vector(), want = ref.load<int64_t>(key).to_vector();
        for (size_t i = 0; i < got.size(); ++i)
          r.max_error = std::max(r.max_error, std::abs(static_cast<double>(got[i] - want[i])));
        continue;
      }
      const auto got = ck.load<double>(key).to_vector();
      auto want = ref.load<double>(key).to_vector();
      for (double& x : want) {
        if (dtype == "F16") x = static_cast<float>(fp16(static_cast<float>(x)));
        else if (dtype == "BF16") x = static_cast<float>(bf16(static_cast<float>(x)));
        else if (dtype == "F32") x = static_cast<float>(x);
      }
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::abs(got[i] - want[i]);
        r.max_error = std::max(r.max_error, std::isnan(d) ? INFINITY : d);
      }
    }
    r.ok = r.ok && r.max_error == 0;
  } catch (const std::exception& e) {
    r.ok = false;
    r.detail = e.what();
  }
  return r;
}

inline std::vector<CaseResult> run_checkpoint_cases(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".pth") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<CaseResult> results;
  for (const auto& file : files) {
    const std::string stem = file.stem().string();
    const size_t cut = stem.rfind('_');
    if (cut == std::string::npos) {
      results.push_back({file.filename().string(), 0, 0, false, "name is not <case set>_<variant>.pth"});
      continue;
    }
    results.push_back(check_checkpoint(file, dir.parent_path() / stem.substr(0, cut) / "weights.safetensors"));
  }
  return results;
}

}  // namespace blip::testing
