// The NCCL communicator on one GPU (world size 1: what a lent single GPU can run with NCCL 2.28,
// which refuses two ranks on one device): every collective on device buffers, the environment
// rendezvous, and the typed helpers' memory check. Exits 77 (ctest: skipped) without a device.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "blip/dist/collectives.hpp"
#include "blip/dist/nccl_communicator.hpp"

using namespace blip;
using Catch::Matchers::Contains;

namespace {
template <class T>
T* device_copy(const std::vector<T>& v) {
  T* p = nullptr;
  REQUIRE(cudaMalloc(&p, v.size() * sizeof(T)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return p;
}
template <class T>
std::vector<T> host_copy(const T* p, size_t n) {
  std::vector<T> v(n);
  REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}
}  // namespace

TEST_CASE("NCCL collectives at world size 1 on device memory", "[dist][nccl]") {
  dist::NcclCommunicator comm(dist::single_process(), 0);
  REQUIRE(comm.size() == 1);
  REQUIRE(comm.memory() == dist::Memory::cuda);
  float* x = device_copy(std::vector<float>{1, 2, 3});
  comm.all_reduce(x, 3, dist::Scalar::float32, dist::ReduceOp::mean);
  REQUIRE(host_copy(x, 3) == std::vector<float>{1, 2, 3});
  float* y = device_copy(std::vector<float>(3, 0));
  comm.all_gather(x, 3, y, dist::Scalar::float32);
  REQUIRE(host_copy(y, 3) == std::vector<float>{1, 2, 3});
  cudaMemset(y, 0, 3 * sizeof(float));
  comm.all_gather_v(x, 3, y, {3}, dist::Scalar::float32);
  REQUIRE(host_copy(y, 3) == std::vector<float>{1, 2, 3});
  comm.broadcast(x, 3, dist::Scalar::float32, 0);
  comm.barrier();
  REQUIRE_THROWS_WITH(comm.broadcast(x, 3, dist::Scalar::float32, 1), Contains("root 1"));
  // host tensors are refused by the typed helpers
  Tensor<float> host = Tensor<float>::zeros({2});
  REQUIRE_THROWS_WITH(dist::all_reduce_(comm, host), Contains("moves CUDA tensors, not cpu"));
  cudaFree(x);
  cudaFree(y);
}

// Host values (the Trainer's loss terms and sample count, the gradient reducer's flags, batch
// sizes) go through NCCL staged in device memory; a host pointer handed to NCCL itself would fail.
TEST_CASE("NCCL: host values through the staging helpers", "[dist][nccl]") {
  dist::NcclCommunicator comm(dist::single_process(), 0);
  std::vector<double> terms{0.25, 1.5, -3.0};
  dist::all_reduce_host(comm, terms.data(), 3, dist::Scalar::float64, dist::ReduceOp::mean);
  CHECK(terms == std::vector<double>{0.25, 1.5, -3.0});
  int64_t samples = 32;
  dist::all_reduce_host(comm, &samples, 1, dist::Scalar::int64, dist::ReduceOp::sum);
  CHECK(samples == 32);
  std::vector<int64_t> counts(1, -1);
  const int64_t mine = 7;
  dist::all_gather_host(comm, &mine, 1, counts.data(), dist::Scalar::int64);
  CHECK(counts == std::vector<int64_t>{7});
  CHECK(dist::all_gather_values(comm, std::vector<int64_t>{4, 5}) == std::vector<int64_t>{4, 5});
  std::vector<float> out(2, 0.0f);
  const std::vector<float> in{9.0f, -1.0f};
  dist::all_gather_v_host(comm, in.data(), 2, out.data(), {2}, dist::Scalar::float32);
  CHECK(out == in);
}

TEST_CASE("the NCCL environment rendezvous (RANK, WORLD_SIZE, BLIP_NCCL_ID_FILE)", "[dist][nccl]") {
  const auto file = std::filesystem::temp_directory_path() / "blip-nccl-id-test";
  std::filesystem::remove(file);
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "1", 1);
  setenv("BLIP_NCCL_ID_FILE", file.c_str(), 1);
  auto comm = dist::NcclCommunicator::from_environment();
  REQUIRE(comm->rank() == 0);
  REQUIRE(std::filesystem::file_size(file) == sizeof(ncclUniqueId));
  comm->barrier();
  setenv("RANK", "3", 1);
  REQUIRE_THROWS_WITH(dist::NcclCommunicator::from_environment(), Contains("outside WORLD_SIZE 1"));
  std::filesystem::remove(file);
}

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
