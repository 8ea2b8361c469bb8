// src/cuda/check.hpp — private to blip::cuda: turning CUDA and cuBLAS status codes into
// blip::Error (the message names the failed call and the runtime's own description), and the
// bookkeeping the host-side waits share (transfer counts, deferred index faults).
#pragma once

#include <cuda_runtime.h>

#include "cublas_api.hpp"

#include "blip/core/error.hpp"

namespace blip::cuda::detail {

[[noreturn]] inline void cuda_failed(const char* call, cudaError_t err) {
  fail("blip::cuda: ", call, " failed: ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
       ")");
}

[[noreturn]] inline void cublas_failed(const char* call, cublasStatus_t status) {
  fail("blip::cuda: ", call, " failed: ", cublas().status_string(status));
}

// Counts a host<->device copy in transfer_stats() (runtime.cu).
void note_transfer(bool to_device, size_t bytes) noexcept;

// Throws the first index fault recorded by check_indices on `stream` (all streams when `all`),
// once the host has waited for that stream; every such pending check is then retired (index.cu).
void report_index_faults(cudaStream_t stream, bool all);
// Called as a stream is destroyed (after waiting for it): its pending checks move to the default
// stream's list.
void forget_stream(cudaStream_t stream) noexcept;

}  // namespace blip::cuda::detail

#define BLIP_CUDA_CHECK(call)                                             \
  do {                                                                    \
    const cudaError_t blip_err_ = (call);                                 \
    if (blip_err_ != cudaSuccess) ::blip::cuda::detail::cuda_failed(#call, blip_err_); \
  } while (false)

#define BLIP_CUBLAS_CHECK(call)                                           \
  do {                                                                    \
    const cublasStatus_t blip_status_ = (call);                           \
    if (blip_status_ != CUBLAS_STATUS_SUCCESS)                            \
      ::blip::cuda::detail::cublas_failed(#call, blip_status_);           \
  } while (false)
