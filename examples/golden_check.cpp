// blip-golden-check DIR: finds every golden set under DIR and verifies this library against
// it, one line per case with its max error; exits non-zero on any mismatch or unreadable set.
// Set kinds, found by their marker files: model case sets (config.json + weights.safetensors),
// tokenizer sets (tokenizer/cases.jsonl), image sets (image/manifest.json), retrieval metric
// sets (retrieval/cases.json), PyTorch checkpoint sets (checkpoints/<case set>_<variant>.pth,
// checked against <case set>/weights.safetensors). The BERT vocabulary
// comes from --vocab, else the copy installed with blip, else data/ of the source tree.
// --device cuda runs the model sets on the GPU (built with blip::cuda; the other sets are host code).
#include <blip/backend/cuda/runtime.hpp>
#include <blip/testing/golden_checkpoints.hpp>
#include <blip/testing/golden_inputs.hpp>

#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::string vocab = BLIP_DEFAULT_VOCAB, precision = "fp32", device = "cpu";
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const char* flag : {"--vocab", "--precision", "--device"})
    for (size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == flag) {
        const std::string f = flag;
        (f == "--vocab" ? vocab : f == "--precision" ? precision : device) = args[i + 1];
        args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
        break;
      }
  if (args.size() != 1 || args[0] == "--help" || (precision != "fp32" && precision != "bf16" && precision != "int8" && precision != "fp16") ||
      (device != "cpu" && device != "cuda")) {
    std::fprintf(stderr, "usage: blip-golden-check [--vocab bert-vocab.txt] [--precision fp32|bf16|int8|fp16] [--device cpu|cuda] DIR\n"
                         "  verifies every golden set (model, tokenizer, image, retrieval, checkpoint) found under DIR;\n"
                         "  --precision bf16|int8|fp16 checks the model sets' features and ITM logits with bf16 GEMMs,\n"
                         "  int8 or fp16 linear layers against their bounds (testing::reduced_precision_bounds, stated in\n"
                         "  docs/performance.md) instead of the fp32 tolerances;\n"
                         "  --device cuda runs the model sets on the GPU at the same tolerances\n");
    return args.size() == 1 && args[0] == "--help" ? 0 : 2;
  }
  if (device == "cuda" && blip::cuda::device_count() == 0) {  // 77: ctest's "skipped"
    std::fprintf(stderr, "blip-golden-check: --device cuda: no usable CUDA device (or built without blip::cuda): skipped\n");
    return 77;
  }
  const fs::path root = args[0];
  if (!fs::is_directory(root)) {
    std::fprintf(stderr, "blip-golden-check: '%s' is not a directory\n", argv[1]);
    return 2;
  }
  std::vector<fs::path> model_sets, tokenizer_sets, image_sets, retrieval_sets, checkpoint_sets;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_directory()) continue;
    const fs::path& p = entry.path();
    if (fs::exists(p / "config.json") && fs::exists(p / "weights.safetensors")) model_sets.push_back(p);
    if (fs::exists(p / "cases.jsonl") && p.filename() == "tokenizer") tokenizer_sets.push_back(p);
    if (fs::exists(p / "manifest.json") && p.filename() == "image") image_sets.push_back(p);
    if (fs::exists(p / "cases.json") && p.filename() == "retrieval") retrieval_sets.push_back(p);
    if (p.filename() == "checkpoints") checkpoint_sets.push_back(p);
  }
  for (auto* sets : {&model_sets, &tokenizer_sets, &image_sets, &retrieval_sets, &checkpoint_sets}) std::sort(sets->begin(), sets->end());
  int failures = 0, cases = 0;
  auto report = [&](const fs::path& dir, const std::vector<blip::testing::CaseResult>& results) {
    for (const auto& r : results) {
      ++cases;
      failures += !r.ok;
      std::printf("%-4s %s/%s  max error %.3g (tolerance %.3g)%s%s\n", r.ok ? "ok" : "FAIL", dir.filename().c_str(),
                  r.name.c_str(), r.max_error, r.tolerance, r.detail.empty() ? "" : "  ", r.detail.c_str());
    }
  };
  const auto model_cases = [&]<class D>(const fs::path& dir) {
    return precision == "fp32" ? blip::testing::run_model_case_set<D>(dir)
                               : blip::testing::run_model_case_set_reduced<D>(dir, blip::parse_precision(precision));
  };
  for (const auto& dir : model_sets) {
#ifdef BLIP_WITH_CUDA
    if (device == "cuda") {
      report(dir, model_cases.template operator()<blip::Cuda>(dir));
      continue;
    }
#endif
    report(dir, model_cases.template operator()<blip::Cpu>(dir));
  }
  for (const auto& dir : tokenizer_sets) report(dir, blip::testing::run_tokenizer_cases(dir, vocab));
  for (const auto& dir : image_sets) report(dir, blip::testing::run_image_cases(dir));
  for (const auto& dir : retrieval_sets) report(dir, blip::testing::run_retrieval_cases(dir));
  for (const auto& dir : checkpoint_sets) report(dir, blip::testing::run_checkpoint_cases(dir));
  if (model_sets.empty() && tokenizer_sets.empty() && image_sets.empty() && retrieval_sets.empty() &&
      checkpoint_sets.empty()) {
    std::fprintf(stderr, "blip-golden-check: no golden sets found under '%s'\n", argv[1]);
    return 1;
  }
  std::printf("%d passed, %d failed\n", cases - failures, failures);
  return failures == 0 ? 0 : 1;
}
