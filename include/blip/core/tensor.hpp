// blip/core/tensor.hpp — Tensor<T, D>: a shared handle to device memory plus a strided layout.
//
// Contract:
// - Copying a Tensor copies the handle: both see the same memory and the same autograd slot
//   (as torch.Tensor). `detach()` gives a handle to the same memory with no autograd slot.
// - `data()` points at the first element; for Cuda it is a device pointer.
// - Views (ops/view.hpp) share memory; `is_contiguous()` says whether the layout is row-major.
// - Autograd (autograd/engine.hpp): a Tensor that requires grad carries an AutogradMeta with
//   its accumulated gradient (leaves) or the Node that produced it (op results).
// - host_exchanges() counts, on every device, the times the host wrote elements into a tensor
//   (from_vector, scalar) or read them out (to_vector, item). Code between two readings that
//   left it unchanged made no round trip through the host, whichever device it ran on: a CPU
//   test certifies the generic path that a Cuda run takes (whose copies cuda::transfer_stats()
//   also counts).
// Throws blip::Error for negative extents, host access to non-contiguous device memory, and
// `item()` on a tensor with other than one element.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "blip/core/device.hpp"
#include "blip/core/dtype.hpp"
#include "blip/core/layout.hpp"
#include "blip/core/shape.hpp"

namespace blip {

template <Element T, Device D>
struct AutogradMeta;  // autograd/graph.hpp

struct HostExchanges {
  uint64_t writes = 0, reads = 0;
  uint64_t total() const { return writes + reads; }
  friend HostExchanges operator-(const HostExchanges& a, const HostExchanges& b) {
    return {a.writes - b.writes, a.reads - b.reads};
  }
};

namespace detail {
inline std::atomic<uint64_t> host_writes{0}, host_reads{0};
}  // namespace detail

inline HostExchanges host_exchanges() {
  return {detail::host_writes.load(std::memory_order_relaxed), detail::host_reads.load(std::memory_order_relaxed)};
}

template <Element T, Device D = Cpu>
class Tensor {
 public:
  using value_type = T;
  using device_type = D;

  Tensor() = default;

  // Uninitialised memory of the given shape.
  static Tensor empty(Shape shape) {
    check_shape(shape, "Tensor::empty");
    const int64_t n = blip::numel(shape);
    Tensor t;
    t.storage_ = allocate(n);
    t.storage_numel_ = n;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    t.defined_ = true;
    return t;
  }
  static Tensor zeros(Shape shape) {
    Tensor t = empty(std::move(shape));
    DeviceMemory<D>::fill_zero(t.data(), sizeof(T) * static_cast<size_t>(t.numel()));
    return t;
  }
  static Tensor from_vector(Shape shape, const std::vector<T>& values) {
    BLIP_CHECK(blip::numel(shape) == static_cast<int64_t>(values.size()), "Tensor::from_vector: shape ",
               shape, " needs ", blip::numel(shape), " values, got ", values.size());
    Tensor t = empty(std::move(shape));
    detail::host_writes.fetch_add(1, std::memory_order_relaxed);
    DeviceMemory<D>::copy_from_host(t.data(), values.data(), sizeof(T) * values.size());
    return t;
  }
  static Tensor scalar(T value) { return from_vector({}, {value}); }

  // A view over existing memory (used by view ops and device code).
  Tensor(std::shared_ptr<T> storage, int64_t storage_numel, int64_t offset, Shape shape,
         Strides strides)
      : storage_(std::move(storage)),
        storage_numel_(storage_numel),
        offset_(offset),
        shape_(std::move(shape)),
        strides_(std::move(strides)),
        defined_(true) {}

  bool defined() const { return defined_; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const { return shape_[normalize_axis(axis, dim(), "Tensor::size")]; }
  int64_t stride(int64_t axis) const {
    return strides_[normalize_axis(axis, dim(), "Tensor::stride")];
  }
  int64_t numel() const { return blip::numel(shape_); }
  bool is_contiguous() const { return is_contiguous_layout(shape_, strides_); }
  T* data() const { return storage_.get() + offset_; }
  int64_t offset() const { return offset_; }
  const std::shared_ptr<T>& storage() const { return storage_; }
  int64_t storage_numel() const { return storage_numel_; }
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

  // Autograd slot (see autograd/graph.hpp for what it holds).
  const std::shared_ptr<AutogradMeta<T, D>>& autograd() const { return autograd_; }
  void set_autograd(std::shared_ptr<AutogradMeta<T, D>> meta) { autograd_ = std::move(meta); }
  bool requires_grad() const;             // autograd/graph.hpp
  Tensor& set_requires_grad(bool value) requires Differentiable<T>;  // leaves only; float32/float64
  Tensor grad() const;                    // accumulated gradient of a leaf; undefined if none
  void zero_grad();
  void backward() const requires Differentiable<T>;  // autograd/engine.hpp; a one-element float tensor

  Tensor detach() const {
    Tensor t = *this;
    t.autograd_.reset();
    return t;
  }

  // Host copies of the elements in row-major order.
  std::vector<T> to_vector() const {
    detail::host_reads.fetch_add(1, std::memory_order_relaxed);
    std::vector<T> out(static_cast<size_t>(numel()));
    if (is_contiguous()) {
      DeviceMemory<D>::copy_to_host(out.data(), data(), sizeof(T) * out.size());
      return out;
    }
    BLIP_CHECK((std::same_as<D, Cpu>), "Tensor::to_vector: a non-contiguous ", D::name,
               " tensor of shape ", shape_, " must be made contiguous first");
    const T* base = data();
    const int64_t last = shape_.empty() ? 1 : shape_.back();
    const int64_t step = shape_.empty() ? 0 : strides_.back();
    for_each_row(shape_, strides_, [&](int64_t offset, int64_t row) {
      for (int64_t j = 0; j < last; ++j) out[static_cast<size_t>(row * last + j)] = base[offset + j * step];
    });
    return out;
  }
  T item() const {
    BLIP_CHECK(numel() == 1, "Tensor::item: tensor of shape ", shape_, " has ", numel(),
               " elements, not 1");
    T value;
    detail::host_reads.fetch_add(1, std::memory_order_relaxed);
    DeviceMemory<D>::copy_to_host(&value, data(), sizeof(T));
    return value;
  }

 private:
  static std::shared_ptr<T> allocate(int64_t n) {
    const size_t bytes = sizeof(T) * static_cast<size_t>(n);
    T* p = static_cast<T*>(DeviceMemory<D>::allocate(bytes));
    return std::shared_ptr<T>(p, [bytes](T* q) { DeviceMemory<D>::release(q, bytes); });
  }

  std::shared_ptr<T> storage_;
  int64_t storage_numel_ = 0;
  int64_t offset_ = 0;
  Shape shape_;
  Strides strides_;
  bool defined_ = false;
  std::shared_ptr<AutogradMeta<T, D>> autograd_;
};

template <class X>
concept TensorType = requires {
  typename X::value_type;
  typename X::device_type;
} && std::same_as<X, Tensor<typename X::value_type, typename X::device_type>>;

}  // namespace blip
