// blip/io/tensor_bytes.hpp — turning stored tensor bytes into a Tensor<T, Cpu>: the one place
// where checkpoint readers (safetensors, PyTorch) convert element types and gather layouts.
//
// Contract: tensor_from_bytes<T>(src, dtype, shape, strides, what) builds a contiguous tensor of
// `shape` whose element at index i is read, little-endian, at src + itemsize * (i . strides),
// for dtype F32/F64/F16/BF16/I64/I32/U8/BOOL (safetensors' names) converted into T (16-bit
// floats through float, everything else by static_cast). The caller has checked that every
// addressed element lies inside its buffer; strides are in elements and non-negative. Another
// dtype throws blip::Error "<what> has dtype X, which blip does not load". Same-type contiguous
// data is used in place when the caller passes an owner of the bytes (a mapped file), else one
// (parallel) memcpy, since multi-GB checkpoints should load at memory speed.
#pragma once

#include <cstring>
#include <memory>
#include <string>

#include "blip/core/tensor.hpp"
#ifdef _OPENMP  // the library always has OpenMP; the libFuzzer builds of the readers do not
#include "blip/backend/cpu/parallel.hpp"
#endif

namespace blip::io {

// Bytes per element of a dtype as safetensors names it; 0 for a name it does not know.
inline size_t safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

namespace detail {

// Splits [0, n) over threads only for tensors of 16 MiB and more: a copy of a few MiB takes well
// under a millisecond, while a parallel region's barrier can cost a scheduler time slice when
// the cores are busy (BLIP-base, 950 tensors, 2 busy cores: 6.3 s per load with a region per
// tensor over 1 MiB, 0.5 s with regions for the few tensors of 16 MiB and more).
template <class Fn>
void for_chunks(int64_t n, int64_t bytes, Fn&& fn) {
#ifdef _OPENMP
  constexpr int64_t kParallelBytes = int64_t{16} << 20;
  if (bytes >= kParallelBytes) {
    cpu::parallel_for(n, kParallelBytes, fn);  // work large enough that parallel_for always splits
    return;
  }
#endif
  (void)bytes;
  if (n > 0) fn(int64_t{0}, n);
}

template <class S, Element T>
void convert_run(const uint8_t* src, int64_t step, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) {
    S s;
    std::memcpy(&s, src + static_cast<size_t>(i * step) * sizeof(S), sizeof(S));
    if constexpr (std::same_as<S, T>) {
      dst[i] = s;  // bit for bit: a 16-bit NaN keeps its payload
    } else if constexpr (std::same_as<S, bf16> || std::same_as<S, fp16>) {
      dst[i] = static_cast<T>(static_cast<float>(s));
    } else if constexpr (std::same_as<T, bf16> || std::same_as<T, fp16>) {
      dst[i] = T(static_cast<float>(s));
    } else {
      dst[i] = static_cast<T>(s);
    }
  }
}

template <class S, Element T>
void gather(const uint8_t* src, const Shape& shape, const Strides& strides, T* dst) {
  const int64_t n = numel(shape);
  if (n == 0) return;
  if (shape.empty() || is_contiguous_layout(shape, strides)) {
    if constexpr (std::same_as<S, T>) {
      constexpr int64_t kChunk = int64_t{1} << 20;  // bytes per parallel piece
      const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
      for_chunks((bytes + kChunk - 1) / kChunk, bytes, [&](int64_t begin, int64_t end) {
        const int64_t from = begin * kChunk, to = std::min(bytes, end * kChunk);
        std::memcpy(reinterpret_cast<uint8_t*>(dst) + from, src + from, static_cast<size_t>(to - from));
      });
    } else {
      for_chunks(n, n * static_cast<int64_t>(sizeof(S)), [&](int64_t begin, int64_t end) {
        convert_run<S>(src + static_cast<size_t>(begin) * sizeof(S), 1, end - begin, dst + begin);
      });
    }
    return;
  }
  // Rows along the last axis; the index of each row's first element is carried like an odometer.
  const size_t rank = shape.size();
  const int64_t last = shape[rank - 1], rows = n / last;
  std::vector<int64_t> index(rank, 0);
  int64_t base = 0;
  for (int64_t row = 0; row < rows; ++row) {
    convert_run<S>(src + static_cast<size_t>(base) * sizeof(S), strides[rank - 1], last, dst + row * last);
    for (size_t axis = rank - 1; axis-- > 0;) {
      base += strides[axis];
      if (++index[axis] < shape[axis]) break;
      base -= strides[axis] * shape[axis];
      index[axis] = 0;
    }
  }
}

}  // namespace detail

// The safetensors dtype name that is exactly T's layout, or "" when T has none here.
template <Element T>
constexpr const char* exact_dtype() {
  if constexpr (std::same_as<T, float>) return "F32";
  else if constexpr (std::same_as<T, double>) return "F64";
  else if constexpr (std::same_as<T, int64_t>) return "I64";
  else if constexpr (std::same_as<T, int32_t>) return "I32";
  else return "";
}

// `owner` (optional) keeps `src` alive: then a contiguous tensor already of type T, suitably
// aligned, is returned as a view of those bytes instead of a copy (a memory-mapped checkpoint is
// used in place; the mapping is copy-on-write, so writing to the tensor leaves the file alone).
template <Element T>
Tensor<T, Cpu> tensor_from_bytes(const uint8_t* src, const std::string& dtype, const Shape& shape,
                                 const Strides& strides, const std::string& what,
                                 const std::shared_ptr<const void>& owner = {}) {
  if (owner && dtype == exact_dtype<T>() && numel(shape) > 0 && is_contiguous_layout(shape, strides) &&
      reinterpret_cast<uintptr_t>(src) % alignof(T) == 0) {
    std::shared_ptr<T> in_place(owner, reinterpret_cast<T*>(const_cast<uint8_t*>(src)));
    return Tensor<T, Cpu>(std::move(in_place), numel(shape), 0, shape, contiguous_strides(shape));
  }
  Tensor<T, Cpu> out = Tensor<T, Cpu>::empty(shape);
  T* dst = out.data();
  if (dtype == "F32") detail::gather<float>(src, shape, strides, dst);
  else if (dtype == "F64") detail::gather<double>(src, shape, strides, dst);
  else if (dtype == "F16") detail::gather<fp16>(src, shape, strides, dst);
  else if (dtype == "BF16") detail::gather<bf16>(src, shape, strides, dst);
  else if (dtype == "I64") detail::gather<int64_t>(src, shape, strides, dst);
  else if (dtype == "I32") detail::gather<int32_t>(src, shape, strides, dst);
  else if (dtype == "U8" || dtype == "BOOL") detail::gather<uint8_t>(src, shape, strides, dst);
  else fail(what, " has dtype ", dtype, ", which blip does not load");
  return out;
}

}  // namespace blip::io
