// tools/blip/commands.hpp — the `blip` command-line tool's subcommands.
//
// Each subcommand lives in its own cmd_<name>.cpp and registers itself with
// BLIP_CLI_COMMAND(order, add_fn); main.cpp parses and dispatches. `order` fixes the order of
// `blip --help`. A command reports failure by throwing (blip::Error or std::exception): main
// prints the message and exits with status 1.
//
// Exit status (docs/cli.md, docs/security.md): 0 success (and --help, --version); 1 an error in
// the input or the run — a bad file, path, value or model; 2 a command line that cannot be
// parsed (unknown option, missing or malformed argument, value out of range).
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <blip/backend/cuda/runtime.hpp>
#include <blip/dist/world.hpp>
#include <blip/ops/precision.hpp>

namespace blip::cli {

// Options every subcommand shares (filled before any subcommand callback runs).
struct CommonOptions {
  bool quiet = false;  // no progress bars, only results and errors
  int threads = 0;     // 0: all cores
  // GEMM precision of inference (eval, index, search, the demo's evaluation): fp32, bf16 or int8.
  blip::Precision precision = blip::Precision::fp32;
  // GEMM precision of training (train, demo): bf16 = autocast (bf16 products forward and
  // backward; parameters, optimiser state, norms and losses stay float).
  blip::Precision train_precision = blip::Precision::fp32;
  // The process group: auto (MPI when started by mpirun), none, mpi, nccl.
  blip::dist::Kind dist = blip::dist::Kind::automatic;
  // Where the model runs (--device; auto resolves to cuda when a GPU is usable, else cpu).
  bool cuda = false;
};

// --device: "auto" is cuda when this blip was built with CUDA and sees a device, and the run is
// one the GPU path serves (one process or NCCL, not int8 or fp16), else cpu; an explicit "cuda" where it
// cannot run is an error saying why. "cpu" never touches the CUDA driver.
inline bool cpu_only_precision(blip::Precision p) { return p == blip::Precision::int8 || p == blip::Precision::fp16; }

inline bool resolve_device(const std::string& device, const CommonOptions& common) {
  if (device == "cpu") return false;
  const bool host_collectives = common.dist == blip::dist::Kind::mpi ||
                                (common.dist == blip::dist::Kind::automatic && blip::dist::launched_by_mpi());
  if (device == "cuda") {
#ifndef BLIP_WITH_CUDA
    fail("--device cuda: this blip was built without CUDA (configure with the CUDA toolkit installed)");
#endif
    BLIP_CHECK(blip::cuda::device_count() > 0, "--device cuda: no CUDA device is usable here (none found, or no driver)");
    BLIP_CHECK(!cpu_only_precision(common.precision), "--device cuda: --precision ", blip::precision_name(common.precision),
               " runs on the CPU only (use bf16 on the GPU)");
    BLIP_CHECK(!host_collectives, "--device cuda: MPI moves host memory; run distributed on the GPU with --dist nccl");
    return true;
  }
  return !host_collectives && !cpu_only_precision(common.precision) && blip::cuda::device_count() > 0;
}

// Runs f.template operator()<D>() with D the device --device chose (Cpu or Cuda).
template <class F>
void on_device(const CommonOptions& common, F&& f) {
#ifdef BLIP_WITH_CUDA
  if (common.cuda) return f.template operator()<blip::Cuda>();
#endif
  f.template operator()<blip::Cpu>();
}

// This process's communicator (created on first use; one process unless launched by mpirun).
inline blip::dist::Communicator& communicator(const CommonOptions& common) { return blip::dist::world(common.dist); }

// The BERT vocabulary: the source tree's copy when it is there (a build tree), else the
// installed one (BLIP_DEFAULT_VOCAB / BLIP_INSTALLED_VOCAB come from tools/blip/CMakeLists.txt).
inline std::string default_vocab_path() {
  if (std::filesystem::exists(BLIP_DEFAULT_VOCAB)) return BLIP_DEFAULT_VOCAB;
  return BLIP_INSTALLED_VOCAB;
}

// Readable range checks (CLI11's PositiveNumber prints "not in range 0.000000 to 1.797e308").
inline CLI::Validator at_least(double min, bool strict, const char* what) {
  return CLI::Validator(
      [min, strict, what](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v)) return "'" + value + "' is not a number";
        if (v > min || (!strict && v == min)) return {};
        return std::string("must be ") + what + ", got " + value;
      },
      strict ? "POSITIVE" : "NON-NEGATIVE");
}
inline CLI::Validator positive() { return at_least(0, true, "positive"); }
inline CLI::Validator non_negative() { return at_least(0, false, "zero or more"); }

using AddCommand = void (*)(CLI::App& app, const CommonOptions& common);

inline std::vector<std::pair<int, AddCommand>>& command_registry() {
  static std::vector<std::pair<int, AddCommand>> commands;
  return commands;
}

inline bool register_command(int order, AddCommand add) {
  command_registry().emplace_back(order, add);
  return true;
}

}  // namespace blip::cli

#define BLIP_CLI_COMMAND(order, add_fn) \
  [[maybe_unused]] static const bool blip_cli_registered_##add_fn = ::blip::cli::register_command(order, add_fn)
