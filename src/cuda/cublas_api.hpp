// src/cuda/cublas_api.hpp — private to blip::cuda: cuBLAS, opened on first use instead of linked.
//
// Why: libcublasLt's static initialisers run in every process that links it, GPU or not. The
// blip tool links blip::cuda (for --device cuda), and linking cuBLAS made `blip --version` take
// 0.13 s and 235 MB of RSS instead of 0.01 s and 19 MB (Zen 4, CUDA 13.0, no GPU). cuBLAS is
// therefore dlopen()ed by the first GEMM, and these pointers are all blip calls of it (and of
// cuBLASLt, opened the same way by the first linear layer).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

namespace blip::cuda::detail {

struct CublasApi {
  decltype(&::cublasCreate_v2) create;
  decltype(&::cublasDestroy_v2) destroy;
  decltype(&::cublasSetStream_v2) set_stream;
  decltype(&::cublasSetMathMode) set_math_mode;
  decltype(&::cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&::cublasDgemmStridedBatched) dgemm_strided_batched;
  // The C function (compute type cublasComputeType_t); C++ also sees an inline overload.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  decltype(&::cublasGetStatusString) status_string;
  decltype(&::cublasGetProperty) get_property;
};

// cuBLASLt, for GEMMs with an epilogue (linear's bias added by the GEMM itself).
struct CublasLtApi {
  decltype(&::cublasLtCreate) create;
  decltype(&::cublasLtDestroy) destroy;
  decltype(&::cublasLtGetVersion) get_version;
  decltype(&::cublasLtMatmulDescCreate) desc_create;
  decltype(&::cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&::cublasLtMatmulDescSetAttribute) desc_set;
  decltype(&::cublasLtMatrixLayoutCreate) layout_create;
  decltype(&::cublasLtMatrixLayoutDestroy) layout_destroy;
  decltype(&::cublasLtMatmulPreferenceCreate) preference_create;
  decltype(&::cublasLtMatmulPreferenceDestroy) preference_destroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) preference_set;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) heuristic;
  decltype(&::cublasLtMatmul) matmul;
};

// The libraries, opened once (thread-safe); blip::Error naming the file and dlerror() when one,
// or one of its functions, cannot be found.
const CublasApi& cublas();
const CublasLtApi& cublas_lt();

}  // namespace blip::cuda::detail
