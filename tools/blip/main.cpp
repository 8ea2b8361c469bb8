// blip — train, evaluate and search with BLIP image–text retrieval models.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include <omp.h>

#include "commands.hpp"
#include <blip/version.hpp>

// Distributed, the message names the rank, and the error ends every rank (the others would
// otherwise wait in their next collective until its timeout).
static void report_error(const char* message) {
  if (blip::dist::world_is_distributed()) {
    const auto& w = blip::dist::world();
    std::fprintf(stderr, "blip: error (rank %d of %d): %s\n", w.rank(), w.size(), message);
    std::fflush(stderr);
    blip::dist::abort_world_or_exit(1);
  }
  std::fprintf(stderr, "blip: error: %s\n", message);
}

int main(int argc, char** argv) {
  blip::cli::CommonOptions common;
  CLI::App app{"blip: BLIP image-text retrieval models (mmpretrain's BlipRetrieval) in C++"};
  app.set_version_flag("--version", std::string(blip::version));
  app.require_subcommand(1);
  app.fallthrough();
  app.add_flag("-q,--quiet", common.quiet, "No progress bars; print only results and errors");
  app.add_option("-j,--threads", common.threads, "Worker threads (default: all cores)")
      ->check(blip::cli::non_negative());
  std::string precision = "fp32";
  app.add_option("--precision", precision,
                 "GEMM precision of inference (eval, index, search, embed, score, the demo's evaluation): fp32; bf16 "
                 "(bf16 x bf16 products with float accumulation; norms, softmax and heads stay float); or int8 (linear "
                 "layers int8 x int8 with per-channel weight and per-token activation scales, the rest as bf16); or fp16 "
                 "(linear layers fp16 x fp16 in runs of 64 added in float, on CPUs with AVX512-FP16, the rest as bf16)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8", "fp16"}))->capture_default_str();
  std::string train_precision = "fp32";
  app.add_option("--train-precision", train_precision,
                 "GEMM precision of training (train, demo): fp32; bf16 autocast (bf16 products forward and "
                 "backward; weights, optimiser state, norms and losses stay float); or fp16 autocast (the linear "
                 "layers' products fp16 forward and backward, on CPUs with AVX512-FP16, the rest as bf16)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))->capture_default_str();
  std::string dist = "auto";
  app.add_option("--dist", dist,
                 "Process group: auto (MPI when started by mpirun/mpiexec), none, mpi, nccl; train and eval then "
                 "run data-parallel / sharded over the ranks")
      ->check(CLI::IsMember({"auto", "none", "mpi", "nccl"}))->capture_default_str();
  std::string device = "auto";
  app.add_option("--device", device,
                 "Where the model runs: cpu, cuda, or auto (cuda when this blip was built with CUDA and a GPU is "
                 "usable, unless under MPI or with --precision int8 or fp16; else cpu). Every command that runs the model "
                 "runs on either")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.parse_complete_callback([&] {
    common.dist = blip::dist::parse_dist_kind(dist);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    common.precision = blip::parse_precision(precision);
    common.train_precision = blip::parse_precision(train_precision);
    common.cuda = blip::cli::resolve_device(device, common);  // after dist and precision
    const auto asks_bf16_of = [](blip::Precision p) {  // fp16 where it runs: its other products are float here
      return p == blip::Precision::fp16 ? !blip::cpu::f16_products_available() : p != blip::Precision::fp32;
    };
    const bool asks_bf16 = asks_bf16_of(common.precision) || asks_bf16_of(common.train_precision);
    if (asks_bf16 && !common.cuda && !common.quiet &&
        blip::cpu::bf16_products_setting() == blip::cpu::Bf16Products::automatic && !blip::cpu::bf16_products_pay()) {
      const blip::cpu::Bf16Timing& t = blip::cpu::bf16_timing();
      if (t.bf16_available)
        std::fprintf(stderr, "blip: bf16 products are slower than float ones on this CPU (a 256x768->768 linear layer: "
                             "%.2f ms float, %.2f ms bf16), so they stay float; BLIP_CPU_BF16=on forces bf16\n",
                     t.float_seconds * 1e3, t.bf16_seconds * 1e3);
    }
  });

  auto commands = blip::cli::command_registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [order, add] : commands) add(app, common);

  // Exit status: 0 success, 1 an error in the input or the run, 2 a command line that cannot be
  // parsed (commands.hpp, docs/cli.md). CLI11's own codes (105 for a range error...) are not used.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints --help, --version or the usage error
    return code == 0 ? 0 : 2;
  } catch (const std::bad_alloc&) {
    report_error("out of memory");
    return 1;
  } catch (const std::exception& e) {
    report_error(e.what());
    return 1;
  }
  return 0;
}
