// blip/dist/nccl_communicator.hpp — the NCCL backend of dist::Communicator (CUDA memory), for
// GPUs: one rank per GPU, NCCL from the CUDA toolkit, the optional component blip::nccl.
//
// Contract:
// - NcclCommunicator(bootstrap, device): rank and size are the bootstrap communicator's (MPI,
//   say); rank 0's ncclUniqueId reaches the others through it. from_environment() is the
//   rendezvous without MPI: RANK and WORLD_SIZE from the environment, the id in the file
//   BLIP_NCCL_ID_FILE (rank 0 writes it atomically; the others wait for it until the timeout).
//   The path must be new for each job: an old file from an earlier job would be read as is.
// - Collectives are ordered after blip's kernels (a blocking stream, after the legacy default
//   stream); start_all_reduce enqueues without waiting (the gradient overlap), wait_all waits.
// - Collectives run on the communicator's stream in non-blocking mode; the host then polls the
//   stream and ncclCommGetAsyncError until done or the deadline, so a dead or stuck peer gives
//   blip::Error (naming the collective, its number and this rank) after ncclCommAbort, never a
//   hang. Buffers are device pointers; mean is ncclAvg.
// - all_gather_v is one grouped ncclBroadcast per rank into that rank's slot.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "blip/dist/communicator.hpp"
#include "blip/io/atomic_file.hpp"

namespace blip::dist {

namespace detail {
inline ncclDataType_t nccl_type(Scalar s) {
  switch (s) {
    case Scalar::float32: return ncclFloat32;
    case Scalar::float64: return ncclFloat64;
    case Scalar::int64: return ncclInt64;
    case Scalar::uint8: return ncclUint8;
  }
  return ncclFloat32;
}
inline void cuda_check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) fail("dist(nccl): ", what, ": ", cudaGetErrorString(rc));
}
}  // namespace detail

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device) : rank_(bootstrap.rank()), size_(bootstrap.size()) {
    ncclUniqueId id{};
    if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap.broadcast(&id, sizeof(id), Scalar::uint8, 0);
    init(id, device);
  }

  // RANK, WORLD_SIZE and BLIP_NCCL_ID_FILE from the environment; the device is LOCAL_RANK's
  // (default: rank modulo the visible devices).
  static std::unique_ptr<NcclCommunicator> from_environment(std::chrono::milliseconds timeout = std::chrono::seconds(300)) {
    auto env_int = [](const char* name) {
      const char* v = std::getenv(name);
      BLIP_CHECK(v && *v, "dist(nccl): the environment rendezvous needs ", name);
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      BLIP_CHECK(*end == '\0' && n >= 0 && n < (1 << 20), "dist(nccl): ", name, "='", v, "' is not a rank count");
      return static_cast<int>(n);
    };
    const int rank = env_int("RANK"), size = env_int("WORLD_SIZE");
    BLIP_CHECK(size > 0 && rank < size, "dist(nccl): RANK ", rank, " is outside WORLD_SIZE ", size);
    const char* file = std::getenv("BLIP_NCCL_ID_FILE");
    BLIP_CHECK(file && *file, "dist(nccl): the environment rendezvous needs BLIP_NCCL_ID_FILE (a path every rank sees)");
    ncclUniqueId id{};
    if (rank == 0) {
      check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      io::write_file_atomically(file, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
    } else {
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        std::error_code ec;
        if (std::filesystem::file_size(file, ec) == sizeof(id) && !ec) break;
        BLIP_CHECK(std::chrono::steady_clock::now() < deadline, "dist(nccl): rank ", rank, " waited ",
                   timeout.count() / 1000.0, " s for rank 0 to write '", file, "'");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::ifstream in(file, std::ios::binary);
      in.read(reinterpret_cast<char*>(&id), sizeof(id));
      BLIP_CHECK(in.gcount() == sizeof(id), "dist(nccl): '", file, "' is not an NCCL id");
    }
    int devices = 0;
    detail::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    BLIP_CHECK(devices > 0, "dist(nccl): no CUDA device");
    const char* local = std::getenv("LOCAL_RANK");
    const int device = local ? std::atoi(local) % devices : rank % devices;
    return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(id, rank, size, device));
  }

  ~NcclCommunicator() override {
    if (comm_) {
      if (failed_) ncclCommAbort(comm_);
      else ncclCommDestroy(comm_);
    }
    if (flag_) cudaFree(flag_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  Memory memory() const override { return Memory::cuda; }
  cudaStream_t stream() const { return stream_; }

  void all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) override {
    start_all_reduce(data, count, scalar, op);
    wait();
  }
  void all_gather(const void* send, int64_t count, void* recv, Scalar scalar) override {
    begin("all_gather");
    check(ncclAllGather(send, recv, static_cast<size_t>(count), detail::nccl_type(scalar), comm_, stream_),
          "ncclAllGather");
    wait();
  }
  void all_gather_v(const void* send, int64_t count, void* recv, const std::vector<int64_t>& counts,
                    Scalar scalar) override {
    BLIP_CHECK(static_cast<int>(counts.size()) == size_ && counts[static_cast<size_t>(rank_)] == count,
               "dist(nccl)::all_gather_v: counts ", counts, " for ", size_, " ranks, rank ", rank_, " sending ", count);
    begin("all_gather");
    const size_t width = scalar_bytes(scalar);
    check(ncclGroupStart(), "ncclGroupStart");
    int64_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      char* slot = static_cast<char*>(recv) + offset * width;
      check(ncclBroadcast(r == rank_ ? send : slot, slot, static_cast<size_t>(counts[static_cast<size_t>(r)]),
                          detail::nccl_type(scalar), r, comm_, stream_),
            "ncclBroadcast");
      offset += counts[static_cast<size_t>(r)];
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
    wait();
  }
  void broadcast(void* data, int64_t count, Scalar scalar, int root) override {
    BLIP_CHECK(root >= 0 && root < size_, "dist(nccl)::broadcast: root ", root, " outside [0, ", size_, ")");
    begin("broadcast");
    check(ncclBroadcast(data, data, static_cast<size_t>(count), detail::nccl_type(scalar), root, comm_, stream_),
          "ncclBroadcast");
    wait();
  }
  // Overlap: enqueued on the stream at once, completed by wait_all().
  void start_all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) override {
    begin("all_reduce");
    check(ncclAllReduce(data, data, static_cast<size_t>(count), detail::nccl_type(scalar),
                        op == ReduceOp::mean ? ncclAvg : ncclSum, comm_, stream_),
          "ncclAllReduce");
    wait_async();
  }
  void wait_all() override { wait(); }

  void barrier() override {  // NCCL has none: an all_reduce of one device int
    begin("barrier");
    if (!flag_) detail::cuda_check(cudaMalloc(&flag_, sizeof(int64_t)), "cudaMalloc");
    check(ncclAllReduce(flag_, flag_, 1, ncclInt64, ncclSum, comm_, stream_), "ncclAllReduce");
    wait();
  }

 private:
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device) : rank_(rank), size_(size) {
    init(id, device);
  }

  void init(const ncclUniqueId& id, int device) {
    detail::cuda_check(cudaSetDevice(device), "cudaSetDevice");
    // A blocking stream: ordered after the legacy default stream, where blip's kernels run, so a
    // collective never reads a buffer before the kernel that writes it has finished.
    detail::cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // calls return at once; wait() polls, so a lost peer cannot hang us
    op_ = "init";
    const ncclResult_t rc = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) check(rc, "ncclCommInitRankConfig");
    wait_async();
  }

  static void check(ncclResult_t rc, const char* what) {
    if (rc == ncclSuccess || rc == ncclInProgress) return;
    fail("dist(nccl): ", what, ": ", ncclGetErrorString(rc));
  }

  void begin(const char* op) {
    BLIP_CHECK(!failed_, "dist(nccl): a collective failed earlier on rank ", rank_, "; the group is unusable");
    op_ = op;
    ++seq_;
  }

  // Until the communicator's asynchronous work (init or an enqueue) is done.
  void wait_async() {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) abort_with(str("failed: ", ncclGetErrorString(state)));
      if (std::chrono::steady_clock::now() > deadline) abort_with(timeout_message());
      std::this_thread::yield();
    }
  }

  // Until the stream has run the collective.
  void wait() {
    wait_async();
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (int64_t polls = 0;; ++polls) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) abort_with(str("stream error: ", cudaGetErrorString(q)));
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) abort_with(str("failed: ", ncclGetErrorString(state)));
      if (std::chrono::steady_clock::now() > deadline) abort_with(timeout_message());
      if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  std::string timeout_message() const {
    return str("timed out after ", timeout_.count() / 1000.0, " s (a peer is dead, stopped or in another collective)");
  }

  [[noreturn]] void abort_with(const std::string& why) {
    failed_ = true;
    ncclCommAbort(comm_);  // ends the kernels still waiting for the lost peer
    comm_ = nullptr;
    fail("dist(nccl): ", op_, " #", seq_, " on rank ", rank_, " of ", size_, " ", why);
  }

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* flag_ = nullptr;
  int rank_ = 0, size_ = 1;
  bool failed_ = false;
  uint64_t seq_ = 0;
  const char* op_ = "none";
};

}  // namespace blip::dist
