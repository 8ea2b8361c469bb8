// blip/backend/kernels.hpp — the kernel interface: `backend::Kernels<D>` for every device.
//
// Contract: Kernels<Cpu> (backend/cpu/kernels.hpp) and Kernels<Cuda> (backend/cuda/
// kernel_table.hpp) have static member functions of the same names and signatures, one per
// entry of BLIP_KERNELS (backend/kernel_list.hpp): raw device pointers, element counts and
// strides, no Tensor and no autograd — ops (include/blip/ops) hold those and call only this
// interface, so an op has no device branch. A kernel a device lacks throws blip::Error naming
// it; `supports<D>(Kernel::name)` asks first. Element types: float and double everywhere
// (bf16 operands for the *_bf16 kernels, int8 ones with float scales for quantize_rows_s8 and
// linear_s8_packed, float activations with an fp16-packed weight for linear_f16_packed,
// backend::PackedWeight for the packed forms); copies and fills also take the
// integer types.
//
// Adding a kernel: its line in BLIP_KERNELS, one function in backend/cpu/<family>.hpp, one
// static member of Kernels<Cpu> forwarding to it (and a Cuda one, or a line in
// BLIP_CUDA_MISSING); then an entry in tests/test_backend_ops.cpp's table.
#pragma once

#include "blip/backend/cpu/kernels.hpp"
#include "blip/backend/cuda/kernel_table.hpp"
#include "blip/backend/kernel_list.hpp"
