// src/cuda/check.hpp — private to blip::cuda: turning CUDA and cuBLAS status codes into
// blip::Error. The message names the failed call and the runtime's own description.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "blip/core/error.hpp"

namespace blip::cuda::detail {

[[noreturn]] inline void cuda_failed(const char* call, cudaError_t err) {
  fail("blip::cuda: ", call, " failed: ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
       ")");
}

[[noreturn]] inline void cublas_failed(const char* call, cublasStatus_t status) {
  fail("blip::cuda: ", call, " failed: ", cublasGetStatusString(status));
}

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
