# BlipCuda.cmake — the optional blip::cuda component (device memory, kernels, cuBLAS GEMM).
#
# BLIP_WITH_CUDA: ON (fail without nvcc), OFF, or AUTO (on when check_language finds nvcc).
# When on: target blip_cuda (alias blip::cuda), a static library built from src/cuda/*.cu that
# defines BLIP_WITH_CUDA for its users, installed under the export set blipCudaTargets.
# Always sets BLIP_CUDA_STATUS, a one-line summary for the configure log. With NCCL beside the
# toolkit, also blip::nccl (the NCCL communicator, dist/nccl_communicator.hpp; not installed).

set_property(CACHE BLIP_WITH_CUDA PROPERTY STRINGS ON OFF AUTO)
string(TOUPPER "${BLIP_WITH_CUDA}" _blip_cuda_mode)
set(_blip_cuda_on OFF)

# Reports why the component is off: a FATAL_ERROR when it was asked for, a status line under AUTO.
macro(_blip_cuda_unavailable reason)
  if(_blip_cuda_mode STREQUAL "AUTO")
    set(BLIP_CUDA_STATUS "off (AUTO: ${reason})")
  else()
    message(FATAL_ERROR "blip: BLIP_WITH_CUDA=${BLIP_WITH_CUDA} but ${reason}. Install the CUDA "
      "toolkit (12.0 or newer), point CMAKE_CUDA_COMPILER (or the CUDACXX environment variable) "
      "at its nvcc, or configure with -DBLIP_WITH_CUDA=OFF.")
  endif()
endmacro()

if(_blip_cuda_mode STREQUAL "AUTO" OR BLIP_WITH_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    _blip_cuda_unavailable("no CUDA compiler (nvcc) was found")
  else()
    set(_blip_cuda_on ON)
  endif()
else()
  set(BLIP_CUDA_STATUS "off (BLIP_WITH_CUDA=${BLIP_WITH_CUDA})")
endif()

if(_blip_cuda_on)
  # Two architectures keep nvcc time low: sm_80 (A100) and sm_90 (H100/H200); each entry also
  # embeds PTX, so newer GPUs JIT-compile from it. Honour a user's choice (cache or CUDAARCHS).
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
    set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures blip::cuda is built for")
  endif()
  enable_language(CUDA)
  # The .cu files include the C++20 blip headers; nvcc takes -std=c++20 from CUDA 12.0 on.
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
    _blip_cuda_unavailable("nvcc ${CMAKE_CUDA_COMPILER_VERSION} predates C++20 support (CUDA 12.0)")
    set(_blip_cuda_on OFF)
  endif()
endif()

if(_blip_cuda_on)
  find_package(CUDAToolkit REQUIRED)

  add_library(blip_cuda STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/runtime.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/attention.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/contrastive.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/elementwise.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/index.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/pointwise.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/rowwise.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/select.cu
    ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/gemm.cu)
  add_library(blip::cuda ALIAS blip_cuda)
  set_target_properties(blip_cuda PROPERTIES
    EXPORT_NAME cuda
    POSITION_INDEPENDENT_CODE ON
    # Users link the shared runtime through CUDA::cudart; CMake's default (static cudart) would
    # put a second runtime instance into the same program.
    CUDA_RUNTIME_LIBRARY Shared)
  if(DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set_target_properties(blip_cuda PROPERTIES
      CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
  else()
    # Older CMake (3.25, as here) knows no CUDA20 flag for nvcc, though nvcc 12+ takes -std=c++20.
    target_compile_options(blip_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  endif()
  # Warnings are errors in the project's own CUDA code (nvcc's and the host compiler's).
  target_compile_options(blip_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror>
    $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>
    # Kernels read the std::array strides of backend/args.hpp (constexpr host functions).
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
  target_compile_definitions(blip_cuda PUBLIC BLIP_WITH_CUDA)
  # cuBLAS is dlopen()ed on first use, not linked (src/cuda/cublas_api.hpp says why).
  target_link_libraries(blip_cuda PUBLIC blip::blip CUDA::cudart ${CMAKE_DL_LIBS})
  target_include_directories(blip_cuda PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_definitions(blip_cuda PRIVATE BLIP_CUBLAS_SONAME="libcublas.so.${CUDAToolkit_VERSION_MAJOR}"
                                               BLIP_CUBLASLT_SONAME="libcublasLt.so.${CUDAToolkit_VERSION_MAJOR}"
                                               BLIP_CUBLAS_DIR="${CUDAToolkit_LIBRARY_DIR}")

  blip_install_when_built(blip_cuda blipCudaTargets)

  # Optional blip::nccl (dist/nccl_communicator.hpp): NCCL from the CUDA toolkit's folders.
  find_path(BLIP_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(BLIP_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  if(BLIP_NCCL_INCLUDE_DIR AND BLIP_NCCL_LIBRARY)
    add_library(blip_nccl INTERFACE)
    add_library(blip::nccl ALIAS blip_nccl)
    target_include_directories(blip_nccl INTERFACE ${BLIP_NCCL_INCLUDE_DIR})
    target_link_libraries(blip_nccl INTERFACE blip_cuda ${BLIP_NCCL_LIBRARY})
    target_compile_definitions(blip_nccl INTERFACE BLIP_WITH_NCCL)
    set(BLIP_NCCL_STATUS "on (${BLIP_NCCL_LIBRARY})")
  else()
    set(BLIP_NCCL_STATUS "off (nccl.h / libnccl not found beside the CUDA toolkit)")
  endif()

  set(BLIP_CUDA_STATUS
    "on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, CUDA toolkit ${CUDAToolkit_VERSION})")
endif()
unset(_blip_cuda_mode)
unset(_blip_cuda_on)
