// blip/dist/world.hpp — the process's communicator, chosen at run time: one process, or the
// MPI world mpirun started.
//
// Contract:
// - world(kind) returns the communicator of kind (created on first use, alive until exit;
//   later calls must ask for the same kind, or automatic: the existing one). automatic: MPI when the process was launched by
//   an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment) and blip
//   was built with blip::mpi, else one process.
// - mpi without blip::mpi, and nccl (which needs the CUDA build and a GPU), are errors that say
//   so. BLIP_DIST_TIMEOUT_S (seconds) sets the collectives' deadline.
// - parse_dist_kind("auto" | "none" | "mpi" | "nccl").
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "blip/dist/communicator.hpp"
#ifdef BLIP_WITH_MPI
#include "blip/dist/mpi_communicator.hpp"
#endif

namespace blip::dist {

enum class Kind { automatic, none, mpi, nccl };

inline Kind parse_dist_kind(const std::string& s) {
  if (s == "auto") return Kind::automatic;
  if (s == "none") return Kind::none;
  if (s == "mpi") return Kind::mpi;
  if (s == "nccl") return Kind::nccl;
  fail("dist: unknown backend '", s, "' (auto, none, mpi or nccl)");
}

inline bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

inline constexpr bool has_mpi() {
#ifdef BLIP_WITH_MPI
  return true;
#else
  return false;
#endif
}

namespace detail {
inline std::unique_ptr<Communicator>& world_slot() {
  static std::unique_ptr<Communicator> comm;
  return comm;
}
inline Kind& world_kind() {
  static Kind kind = Kind::none;
  return kind;
}
}  // namespace detail

inline Communicator& world(Kind kind = Kind::automatic) {
  auto& slot = detail::world_slot();
  if (slot && kind == Kind::automatic) return *slot;
  if (kind == Kind::automatic) kind = launched_by_mpi() && has_mpi() ? Kind::mpi : Kind::none;
  if (slot) {
    BLIP_CHECK(detail::world_kind() == kind, "dist::world: the process already uses the '", slot->backend(),
               "' communicator");
    return *slot;
  }
  BLIP_CHECK(kind != Kind::nccl, "dist: the NCCL backend needs the CUDA build and a GPU; on CPUs use --dist mpi");
  if (kind == Kind::mpi) {
#ifdef BLIP_WITH_MPI
    slot = std::make_unique<MpiCommunicator>();
#else
    fail("dist: this blip was built without MPI (install libopenmpi-dev and rebuild: blip::mpi)");
#endif
  } else {
    slot = std::make_unique<SingleProcess>();
  }
  if (const char* t = std::getenv("BLIP_DIST_TIMEOUT_S")) {
    char* end = nullptr;
    const double seconds = std::strtod(t, &end);
    BLIP_CHECK(end != t && *end == '\0' && seconds > 0 && seconds < 1e6, "dist: BLIP_DIST_TIMEOUT_S='", t,
               "' must be a positive number of seconds");
    slot->set_timeout(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  }
  detail::world_kind() = kind;
  return *slot;
}

// Whether a multi-rank world exists (so a failure must end every rank, not only this one).
inline bool world_is_distributed() {
  const auto& slot = detail::world_slot();
  return slot && slot->size() > 1;
}

// Ends every rank after an error this rank cannot recover from together with the others.
[[noreturn]] inline void abort_world_or_exit(int code) {
#ifdef BLIP_WITH_MPI
  if (world_is_distributed() && detail::world_kind() == Kind::mpi) abort_world(code);
#endif
  std::exit(code);
}

}  // namespace blip::dist
