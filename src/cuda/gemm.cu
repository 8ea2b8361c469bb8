// src/cuda/gemm.cu — row-major strided-batched GEMM over column-major cuBLAS, and linear layers
// over cuBLASLt (the bias in the GEMM's epilogue). Lt's GELU epilogue is not used: frameworks fuse
// only the tanh-approximate GELU into it (XLA: openxla/xla#7751), and BLIP's GELU is the erf form.
//
// A row-major matrix read as column-major is its transpose, so C = op(A) op(B) in row-major is
// C^T = op(B)^T op(A)^T in column-major: cuBLAS gets the operands swapped and m, n swapped,
// with the transpose flags unchanged and the same leading dimensions.

#include <algorithm>
#include <climits>
#include <compare>
#include <cstdint>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/cuda/runtime.hpp"
#include "check.hpp"
#include "launch.hpp"

namespace blip::cuda {
namespace {

// k == 0 leaves C = beta * C; done here since cuBLAS's treatment of k == 0 (and of the null
// A/B pointers an empty tensor has) is not documented. beta == 0 overwrites, as BLAS does, so
// NaNs in uninitialised C do not survive.
template <class T>
__global__ void scale_kernel(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                             int64_t batch, T beta) {
  const int64_t total = batch * m * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t col = i % n, row = (i / n) % m, b = i / (n * m);
    T& x = c[b * stride_c + row * ldc + col];
    x = beta == T(0) ? T(0) : beta * x;
  }
}

int to_int(int64_t value, const char* what) {
  BLIP_CHECK(value <= INT_MAX, "blip::cuda::gemm: ", what, " = ", value,
             " exceeds the int range cuBLAS takes");
  return static_cast<int>(value);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
          int64_t ldc, int64_t stride_c, int64_t batch) {
  BLIP_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0,
             "blip::cuda::gemm: negative size m=", m, " n=", n, " k=", k, " batch=", batch);
  if (m == 0 || n == 0 || batch == 0) return;
  BLIP_CHECK(ldc >= n, "blip::cuda::gemm: ldc=", ldc, " is below n=", n);
  const cudaStream_t stream = static_cast<cudaStream_t>(current_stream());
  if (k == 0) {
    const int64_t total = batch * m * n;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 1 << 16));
    scale_kernel<T><<<blocks, 256, 0, stream>>>(c, m, n, ldc, stride_c, batch, beta);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) fail("blip::cuda::gemm: kernel launch failed: ", cudaGetErrorString(err));
    return;
  }
  // Row-major extents of the stored operands: A is m x k (k x m when transposed), B is k x n.
  const int64_t a_cols = trans_a ? m : k;
  const int64_t b_cols = trans_b ? k : n;
  BLIP_CHECK(lda >= a_cols, "blip::cuda::gemm: lda=", lda, " is below the ", a_cols,
             " columns of A", trans_a ? " (transposed)" : "");
  BLIP_CHECK(ldb >= b_cols, "blip::cuda::gemm: ldb=", ldb, " is below the ", b_cols,
             " columns of B", trans_b ? " (transposed)" : "");

  const auto handle = static_cast<cublasHandle_t>(cublas_handle());
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int cm = to_int(n, "n"), cn = to_int(m, "m"), ck = to_int(k, "k");
  const int clda = to_int(ldb, "ldb"), cldb = to_int(lda, "lda"), cldc = to_int(ldc, "ldc");
  const int cbatch = to_int(batch, "batch");
  if constexpr (std::is_same_v<T, float>) {
    // The handle is the thread's; its math mode follows the process's TF32 choice at each call.
    BLIP_CUBLAS_CHECK(detail::cublas().set_math_mode(handle, tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    BLIP_CUBLAS_CHECK(detail::cublas().sgemm_strided_batched(handle, op_b, op_a, cm, cn, ck, &alpha, b, clda,
                                                stride_b, a, cldb, stride_a, &beta, c, cldc,
                                                stride_c, cbatch));
  } else {
    static_assert(std::is_same_v<T, double>, "blip::cuda::gemm: float or double only");
    BLIP_CUBLAS_CHECK(detail::cublas().dgemm_strided_batched(handle, op_b, op_a, cm, cn, ck, &alpha, b, clda,
                                                stride_b, a, cldb, stride_a, &beta, c, cldc,
                                                stride_c, cbatch));
  }
}

// C [m, n] (row stride ldc, float) = op(A) · op(B) for bf16 A, B: cuBLAS with bf16 inputs and
// float accumulation and output (CUBLAS_COMPUTE_32F), beta = 0 or 1 (1: C holds a bias already).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda, const bf16* b,
               int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  BLIP_CHECK(m >= 0 && n >= 0 && k >= 0, "blip::cuda::gemm_bf16: negative size m=", m, " n=", n, " k=", k);
  if (m == 0 || n == 0) return;
  BLIP_CHECK(ldc >= n, "blip::cuda::gemm_bf16: ldc=", ldc, " is below n=", n);
  if (k == 0) {  // C = 0 (or C unchanged when accumulating), only the [m, n] block of C
    if (accumulate) return;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((m * n + 255) / 256, 1 << 16));
    scale_kernel<float><<<blocks, 256, 0, static_cast<cudaStream_t>(current_stream())>>>(c, m, n, ldc, 0, 1, 0.0f);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) fail("blip::cuda::gemm_bf16: kernel launch failed: ", cudaGetErrorString(err));
    return;
  }
  BLIP_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n), "blip::cuda::gemm_bf16: lda=", lda, " or ldb=", ldb,
             " is below the operand's columns");
  const auto handle = static_cast<cublasHandle_t>(cublas_handle());
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: operands swapped, as in gemm above.
  BLIP_CUBLAS_CHECK(detail::cublas().gemm_ex(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, b, CUDA_R_16BF,
                                 to_int(ldb, "ldb"), a, CUDA_R_16BF, to_int(lda, "lda"), &beta, c, CUDA_R_32F,
                                 to_int(ldc, "ldc"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

namespace {

// ---- linear through cuBLASLt --------------------------------------------------------------------
// Row-major y = x·wᵀ is column-major yᵀ [out, rows] = wᵀ-read-as-[in, out] transposed times
// x-read-as-[in, rows]: A = w (TRANSA = T), B = x (TRANSB = N), C = D = y; the bias, one value per
// row of the column-major D, is BIAS's broadcast. A plan (descriptor, layouts, the heuristic's
// best algorithm and its workspace) is made once per shape on each thread — the descriptor holds
// the bias pointer, set per call, so plans are not shared between threads.

constexpr size_t kLtWorkspace = size_t{4} << 20;

// The largest power of two (at most 256) dividing a pointer: Lt's heuristic assumes 256-byte
// aligned operands unless told less, and a view (narrowed rows, a third of a fused projection)
// may be less aligned, so the alignments are part of the plan's key.
uint32_t alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

struct LtKey {
  int device;
  int64_t rows, in, out;
  int ab_type, c_type;
  bool bias, tf32;
  uint32_t align_x, align_w, align_y;
  auto operator<=>(const LtKey&) const = default;
};

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool usable = false;  // false: Lt had no algorithm; the caller takes the plain GEMM
};

void destroy(const detail::CublasLtApi& lt, LtPlan& plan) {
  if (plan.a) (void)lt.layout_destroy(plan.a);
  if (plan.b) (void)lt.layout_destroy(plan.b);
  if (plan.c) (void)lt.layout_destroy(plan.c);
  if (plan.desc) (void)lt.desc_destroy(plan.desc);
  plan = LtPlan{};
}

struct ThreadLt {
  std::vector<std::pair<int, cublasLtHandle_t>> handles;
  std::map<LtKey, LtPlan> plans;
  ~ThreadLt() {  // at thread exit; errors ignored (the runtime may be shutting down)
    const detail::CublasLtApi* lt = handles.empty() ? nullptr : &detail::cublas_lt();
    if (!lt) return;
    for (auto& kv : plans) destroy(*lt, kv.second);
    for (auto& [device, handle] : handles) (void)lt->destroy(handle);
  }
  cublasLtHandle_t handle(int device) {
    for (auto& [d, h] : handles)
      if (d == device) return h;
    cublasLtHandle_t h = nullptr;
    BLIP_CUBLAS_CHECK(detail::cublas_lt().create(&h));
    handles.emplace_back(device, h);
    return h;
  }
};
thread_local ThreadLt t_lt;

// Plans kept per thread: evaluation with texts of many lengths makes a shape per length, so past
// this many the cache starts over (a plan costs one heuristic call to remake).
constexpr size_t kLtPlansKept = 512;

const LtPlan& lt_plan(const LtKey& key, cublasLtHandle_t handle) {
  auto it = t_lt.plans.find(key);
  if (it != t_lt.plans.end()) return it->second;
  const detail::CublasLtApi& lt = detail::cublas_lt();
  if (t_lt.plans.size() >= kLtPlansKept) {
    for (auto& kv : t_lt.plans) destroy(lt, kv.second);
    t_lt.plans.clear();
  }
  LtPlan plan;
  const auto ab = static_cast<cudaDataType_t>(key.ab_type), c = static_cast<cudaDataType_t>(key.c_type);
  // Plain fp32 products unless TF32 was asked for (float operands only; bf16 ones are bf16 anyway).
  const cublasComputeType_t compute = key.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  BLIP_CUBLAS_CHECK(lt.desc_create(&plan.desc, compute, CUDA_R_32F));
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  BLIP_CUBLAS_CHECK(lt.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa));
  BLIP_CUBLAS_CHECK(lt.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb));
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    BLIP_CUBLAS_CHECK(lt.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    BLIP_CUBLAS_CHECK(lt.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
  }
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  BLIP_CUBLAS_CHECK(lt.layout_create(&plan.a, ab, u(key.in), u(key.out), key.in));
  BLIP_CUBLAS_CHECK(lt.layout_create(&plan.b, ab, u(key.in), u(key.rows), key.in));
  BLIP_CUBLAS_CHECK(lt.layout_create(&plan.c, c, u(key.out), u(key.rows), key.out));
  cublasLtMatmulPreference_t pref = nullptr;
  BLIP_CUBLAS_CHECK(lt.preference_create(&pref));
  const uint64_t workspace = kLtWorkspace;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t status = lt.preference_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y}};
  for (const auto& [attribute, bytes] : alignments)
    if (status == CUBLAS_STATUS_SUCCESS) status = lt.preference_set(pref, attribute, &bytes, sizeof bytes);
  if (status == CUBLAS_STATUS_SUCCESS)
    status = lt.heuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found);
  (void)lt.preference_destroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan.algo = result.algo;
    plan.workspace = result.workspaceSize;
    plan.usable = true;
  }
  return t_lt.plans.emplace(key, plan).first->second;
}

// y = x·wᵀ (+ bias) through Lt; false when Lt has no algorithm for the shape (nothing was queued).
bool linear_lt(const void* x, int64_t rows, int64_t in, const void* w, int64_t out, const float* bias, void* y,
               cudaDataType_t ab_type, cudaDataType_t c_type) {
  // The BIAS epilogue wants a 16-byte aligned vector (a misaligned-address fault otherwise, seen
  // on A100); a bias view off that takes the plain path.
  if (bias && reinterpret_cast<uintptr_t>(bias) % 16 != 0) return false;
  int device = 0;
  BLIP_CUDA_CHECK(cudaGetDevice(&device));
  const cublasLtHandle_t handle = t_lt.handle(device);
  const bool fast = ab_type == CUDA_R_32F && tf32();
  const LtPlan& plan = lt_plan(LtKey{device, rows, in, out, ab_type, c_type, bias != nullptr, fast, alignment_of(x),
                                     alignment_of(w), alignment_of(y)},
                               handle);
  if (!plan.usable) return false;
  const detail::CublasLtApi& lt = detail::cublas_lt();
  if (bias) BLIP_CUBLAS_CHECK(lt.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  const float alpha = 1.0f, beta = 0.0f;
  const detail::DeviceBuffer<unsigned char> workspace(static_cast<int64_t>(plan.workspace));
  BLIP_CUBLAS_CHECK(lt.matmul(handle, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c, y, plan.c, &plan.algo,
                              workspace.data, plan.workspace, static_cast<cudaStream_t>(current_stream())));
  return true;
}

}  // namespace

template <class T>
void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, const T* bias, T* y) {
  BLIP_CHECK(rows >= 0 && in >= 0 && out >= 0, "blip::cuda::linear: negative size rows=", rows, " in=", in, " out=", out);
  if (rows == 0 || out == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (in > 0 && linear_lt(x, rows, in, w, out, bias, y, CUDA_R_32F, CUDA_R_32F)) return;
  }
  if (bias) copy_strided(Shape{rows, out}, bias, Strides{0, 1}, y);  // the bias, broadcast over rows
  gemm(false, true, rows, out, in, T(1), x, in, 0, w, in, 0, bias ? T(1) : T(0), y, out, 0, 1);
}

void linear_bf16(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, const float* bias, float* y) {
  BLIP_CHECK(rows >= 0 && in >= 0 && out >= 0, "blip::cuda::linear_bf16: negative size rows=", rows, " in=", in,
             " out=", out);
  if (rows == 0 || out == 0) return;
  if (in > 0 && linear_lt(x, rows, in, w, out, bias, y, CUDA_R_16BF, CUDA_R_32F)) return;
  if (bias) copy_strided(Shape{rows, out}, bias, Strides{0, 1}, y);
  gemm_bf16(false, true, rows, out, in, x, in, w, in, y, out, bias != nullptr);
}

template void linear<float>(const float*, int64_t, int64_t, const float*, int64_t, const float*, float*);
template void linear<double>(const double*, int64_t, int64_t, const double*, int64_t, const double*, double*);

#define BLIP_INSTANTIATE_GEMM(T)                                                             \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t, \
                        const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t);

BLIP_INSTANTIATE_GEMM(float)
BLIP_INSTANTIATE_GEMM(double)

}  // namespace blip::cuda
