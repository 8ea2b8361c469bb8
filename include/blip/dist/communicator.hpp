// blip/dist/communicator.hpp — the one communicator interface of distributed training and
// evaluation, and its single-process backend.
//
// Contract:
// - A Communicator is a fixed group of `size()` processes; this one is `rank()`. Collectives
//   are called by every rank in the same order with matching counts (as MPI's and NCCL's).
// - Operations on raw buffers of `count` elements of a Scalar kind, in the memory the backend
//   names (`memory()`: host for single-process and MPI, CUDA for NCCL):
//   all_reduce (sum or mean, in place), all_gather (equal counts, rank order), all_gather_v
//   (count per rank, rank order), broadcast (from `root`, in place), barrier.
// - start_all_reduce / progress / wait_all: the same reduction in flight while the caller
//   computes (gradient buckets during the backward pass).
// - Every collective has a deadline (`timeout()`, default 300 s; BLIP_DIST_TIMEOUT_S sets it in
//   the tool): a dead, stopped or diverged peer gives blip::Error naming the collective, its
//   sequence number and the ranks that did not join, never a hang. After such an error the
//   group is unusable; the process should end (dist::abort_world in the tool).
// - all_reduce_host / broadcast_host / all_gather_host / all_gather_v_host: the same on host buffers through any
//   backend (staged through device memory where the backend moves CUDA memory).
// - Typed tensor-level helpers (dist/collectives.hpp) are what the model and loops call.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "blip/core/device.hpp"
#include "blip/core/dtype.hpp"
#include "blip/core/error.hpp"

namespace blip::dist {

enum class Scalar { float32, float64, int64, uint8 };
enum class ReduceOp { sum, mean };
enum class Memory { host, cuda };

template <class T>
constexpr Scalar scalar_of() {
  if constexpr (std::is_same_v<T, float>) return Scalar::float32;
  else if constexpr (std::is_same_v<T, double>) return Scalar::float64;
  else if constexpr (std::is_same_v<T, int64_t>) return Scalar::int64;
  else if constexpr (std::is_same_v<T, uint8_t>) return Scalar::uint8;
  else static_assert(sizeof(T) == 0, "dist: collectives move float, double, int64_t or uint8_t elements");
}

inline size_t scalar_bytes(Scalar s) {
  switch (s) {
    case Scalar::float32: return 4;
    case Scalar::float64: return 8;
    case Scalar::int64: return 8;
    case Scalar::uint8: return 1;
  }
  return 0;
}

inline const char* scalar_name(Scalar s) {
  switch (s) {
    case Scalar::float32: return "float32";
    case Scalar::float64: return "float64";
    case Scalar::int64: return "int64";
    case Scalar::uint8: return "uint8";
  }
  return "?";
}

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "none", "mpi", "nccl"
  virtual Memory memory() const = 0;

  virtual void all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) = 0;
  virtual void all_gather(const void* send, int64_t count, void* recv, Scalar scalar) = 0;
  // recv holds sum(counts) elements; counts[r] is what rank r sends (counts[rank()] == count).
  virtual void all_gather_v(const void* send, int64_t count, void* recv, const std::vector<int64_t>& counts,
                            Scalar scalar) = 0;
  virtual void broadcast(void* data, int64_t count, Scalar scalar, int root) = 0;
  virtual void barrier() = 0;

  // Non-blocking all_reduce, to overlap communication with the backward pass: every rank starts
  // them in the same order (and no other collective may complete out of that order); progress()
  // lets the backend advance what is in flight; wait_all() completes every started one (with
  // the deadline) and only then may the buffers be read. Default: blocking.
  virtual void start_all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) {
    all_reduce(data, count, scalar, op);
  }
  virtual void progress() {}
  virtual void wait_all() {}

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) {
    BLIP_CHECK(t.count() > 0, "dist: the collective timeout must be positive, got ", t.count(), " ms");
    timeout_ = t;
  }
  bool is_main() const { return rank() == 0; }

 protected:
  std::chrono::milliseconds timeout_{std::chrono::seconds(300)};
};

// One process: every collective is a copy (or nothing), so code written for N ranks runs
// unchanged with one.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "none"; }
  Memory memory() const override { return Memory::host; }
  void all_reduce(void*, int64_t, Scalar, ReduceOp) override {}
  void all_gather(const void* send, int64_t count, void* recv, Scalar scalar) override {
    if (send != recv && count > 0) std::memcpy(recv, send, static_cast<size_t>(count) * scalar_bytes(scalar));
  }
  void all_gather_v(const void* send, int64_t count, void* recv, const std::vector<int64_t>& counts,
                    Scalar scalar) override {
    BLIP_CHECK(counts.size() == 1 && counts[0] == count, "dist::SingleProcess::all_gather_v: counts ", counts,
               " for one rank sending ", count);
    all_gather(send, count, recv, scalar);
  }
  void broadcast(void*, int64_t, Scalar, int root) override {
    BLIP_CHECK(root == 0, "dist::SingleProcess::broadcast: root ", root, " outside [0, 1)");
  }
  void barrier() override {}
};

// Host values — flags, counts, loss terms: a few numbers a step — through any communicator. Where
// it moves device memory (NCCL) they are staged through a device buffer, one copy each way; on
// host communicators these are the plain calls.
namespace detail {
struct DeviceStage {
  explicit DeviceStage(size_t n) : bytes(n), data(bytes ? DeviceMemory<Cuda>::allocate(bytes) : nullptr) {}
  ~DeviceStage() {
    if (data) DeviceMemory<Cuda>::release(data, bytes);
  }
  DeviceStage(const DeviceStage&) = delete;
  DeviceStage& operator=(const DeviceStage&) = delete;
  size_t bytes;
  void* data;
};
}  // namespace detail

// A collective of no elements moves nothing; every rank knows the counts, so all skip it alike.
inline void all_reduce_host(Communicator& comm, void* data, int64_t count, Scalar scalar, ReduceOp op) {
  if (comm.memory() == Memory::host) return comm.all_reduce(data, count, scalar, op);
  if (count == 0) return;
  const detail::DeviceStage stage(static_cast<size_t>(count) * scalar_bytes(scalar));
  DeviceMemory<Cuda>::copy_from_host(stage.data, data, stage.bytes);
  comm.all_reduce(stage.data, count, scalar, op);
  DeviceMemory<Cuda>::copy_to_host(data, stage.data, stage.bytes);
}

inline void all_gather_v_host(Communicator& comm, const void* send, int64_t count, void* recv,
                              const std::vector<int64_t>& counts, Scalar scalar) {
  if (comm.memory() == Memory::host) return comm.all_gather_v(send, count, recv, counts, scalar);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) return;
  const detail::DeviceStage in(static_cast<size_t>(count) * scalar_bytes(scalar));
  const detail::DeviceStage out(static_cast<size_t>(total) * scalar_bytes(scalar));
  DeviceMemory<Cuda>::copy_from_host(in.data, send, in.bytes);
  comm.all_gather_v(in.data, count, out.data, counts, scalar);
  DeviceMemory<Cuda>::copy_to_host(recv, out.data, out.bytes);
}

inline void broadcast_host(Communicator& comm, void* data, int64_t count, Scalar scalar, int root) {
  if (comm.memory() == Memory::host) return comm.broadcast(data, count, scalar, root);
  if (count == 0) return;
  const detail::DeviceStage stage(static_cast<size_t>(count) * scalar_bytes(scalar));
  DeviceMemory<Cuda>::copy_from_host(stage.data, data, stage.bytes);
  comm.broadcast(stage.data, count, scalar, root);
  DeviceMemory<Cuda>::copy_to_host(data, stage.data, stage.bytes);
}

inline void all_gather_host(Communicator& comm, const void* send, int64_t count, void* recv, Scalar scalar) {
  if (comm.memory() == Memory::host) return comm.all_gather(send, count, recv, scalar);
  all_gather_v_host(comm, send, count, recv, std::vector<int64_t>(static_cast<size_t>(comm.size()), count), scalar);
}

// The process-wide single-process communicator: the default argument of everything that can
// run distributed.
inline Communicator& single_process() {
  static SingleProcess self;
  return self;
}

}  // namespace blip::dist
