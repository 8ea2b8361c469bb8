// blip/ops/matmul.hpp — matmul (batched, transposes as views) and linear (PyTorch weight layout).
//
// Contract:
// - matmul(a, b): a [..., m, k] @ b [..., k, n] -> [..., m, n]. Batch axes broadcast (a 2-D
//   operand is shared by every batch). Transposed operands are passed as views
//   (transpose(x, -1, -2)): a row- or column-major matrix goes to the GEMM without a copy.
// - linear(x, weight, bias): y = x · weightᵀ + bias with weight [out, in] (torch.nn.Linear),
//   x [..., in] -> [..., out]; bias may be an undefined tensor.
// Throws blip::Error naming the op and the shapes on a rank < 2 or inner-size mismatch.
#pragma once

#include "blip/ops/elementwise.hpp"
#include "blip/ops/precision.hpp"

namespace blip {

namespace detail {

// How a [batch..., rows, cols] tensor is handed to a GEMM: op(X) is the logical matrix.
struct MatrixLayout {
  bool ok = false;          // false: needs a contiguous copy first
  bool transposed = false;  // memory holds Xᵀ row-major
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

template <Element T, Device D>
MatrixLayout matrix_layout(const Tensor<T, D>& x) {
  const int64_t rank = x.dim();
  const int64_t rows = x.shape()[rank - 2], cols = x.shape()[rank - 1];
  const int64_t sr = x.strides()[rank - 2], sc = x.strides()[rank - 1];
  MatrixLayout layout;
  if ((sc == 1 || cols == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1))) {
    layout.ok = true;
    layout.ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
  } else if ((sr == 1 || rows == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1))) {
    layout.ok = true;
    layout.transposed = true;
    layout.ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
  } else {
    return layout;
  }
  // Batch axes must collapse to one stride (stride 0 for a broadcast operand also works).
  int64_t inner_extent = 1;
  bool have_stride = false;
  for (int64_t axis = rank - 3; axis >= 0; --axis) {
    const int64_t extent = x.shape()[static_cast<size_t>(axis)];
    const int64_t stride = x.strides()[static_cast<size_t>(axis)];
    if (extent == 1) continue;
    if (!have_stride) {
      layout.batch_stride = stride;
      have_stride = true;
    } else if (stride != layout.batch_stride * inner_extent) {
      layout.ok = false;
      return layout;
    }
    inner_extent *= extent;
  }
  return layout;
}

// C[b] = op(A[b]) op(B[b]) for logical matrices a [batch.., m, k], b [batch.., k, n] (same batch
// shape, possibly stride 0) into contiguous c.
template <Element T, Device D>
void batched_product(const Tensor<T, D>& a_in, const Tensor<T, D>& b_in, const Tensor<T, D>& c) {
  Tensor<T, D> a = a_in, b = b_in;
  MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  if (!la.ok) { a = contiguous(a); la = matrix_layout(a); }
  if (!lb.ok) { b = contiguous(b); lb = matrix_layout(b); }
  const int64_t rank = c.dim();
  const int64_t m = c.shape()[rank - 2], n = c.shape()[rank - 1], k = a.shape()[rank - 1];
  const int64_t batch = c.numel() / std::max<int64_t>(m * n, 1);
  if (c.numel() == 0) return;
  kernels<D>::gemm_batched(la.transposed, lb.transposed, m, n, k, T(1), a.data(), la.ld, la.batch_stride, b.data(),
                           lb.ld, lb.batch_stride, T(0), c.data(), n, m * n, batch);
}

// bf16 copies for the products of a bf16 PrecisionScope (ops/precision.hpp).
template <Device D>
Tensor<bf16, D> to_bf16(const Tensor<float, D>& x) {
  const Tensor<float, D> xc = contiguous(x.detach());
  Tensor<bf16, D> y = Tensor<bf16, D>::empty(xc.shape());
  kernels<D>::to_bf16(xc.data(), y.data(), xc.numel());
  return y;
}
template <Device D>
Tensor<bf16, D> bf16_weight(const Tensor<float, D>& w) {
  return PrecisionScope::active()->bf16_weight(
      w, [](const float* src, bf16* dst, int64_t n) { kernels<D>::to_bf16(src, dst, n); });
}

template <Device D>
backend::PackedWeight packed_bf16_weight(const Tensor<float, D>& w) {
  return PrecisionScope::active()->packed_weight(w, PrecisionScope::Packing::bf16, [](const Tensor<float, D>& wc) {
    const Tensor<bf16, D> w16 = to_bf16(wc);  // rounded as the plain copy is, then reordered
    return kernels<D>::pack_linear_bf16(w16.data(), wc.size(0), wc.size(1));
  });
}

// op(a) · op(b) in bf16 for row-major bf16 matrices a [m,k] (or [k,m] with ta) and b [k,n] (or
// [n,k] with tb), into a new float [m, n].
template <Device D>
Tensor<float, D> product_bf16(const Tensor<bf16, D>& a, bool ta, const Tensor<bf16, D>& b, bool tb) {
  const int64_t m = ta ? a.size(1) : a.size(0), k = ta ? a.size(0) : a.size(1), n = tb ? b.size(0) : b.size(1);
  Tensor<float, D> c = Tensor<float, D>::empty({m, n});
  kernels<D>::gemm_bf16(ta, tb, m, n, k, a.data(), a.size(1), b.data(), b.size(1), c.data(), n);
  return c;
}

// a [m,k] · b [k,n] (+ bias per column) for 2-D float tensors with fp16 products (gemm_f16; a
// transposed view of a contiguous tensor is read as such), into a new float [m, n].
template <Device D>
Tensor<float, D> product_f16(const Tensor<float, D>& a_in, const Tensor<float, D>& b_in,
                             const Tensor<float, D>& bias = {}) {
  Tensor<float, D> a = a_in.detach(), b = b_in.detach();
  MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  if (!la.ok) { a = contiguous(a); la = matrix_layout(a); }
  if (!lb.ok) { b = contiguous(b); lb = matrix_layout(b); }
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  Tensor<float, D> c = Tensor<float, D>::empty({m, n});
  kernels<D>::gemm_f16(la.transposed, lb.transposed, m, n, k, a.data(), la.ld, b.data(), lb.ld,
                       bias.defined() ? bias.data() : nullptr, c.data(), n);
  return c;
}

// a [m,k] · b [k,n] for 2-D float tensors with `products` (a transposed view of a contiguous
// tensor is read as such).
template <Element T, Device D>
Tensor<T, D> product(const Tensor<T, D>& a, const Tensor<T, D>& b, Products products) {
  if constexpr (std::same_as<T, float>) {
    if (products == Products::fp16) return product_f16(a, b);
    if (products == Products::bf16) {
      const auto operand = [](const Tensor<float, D>& x, bool& transposed) {
        transposed = !x.is_contiguous() && x.stride(0) == 1 && x.stride(1) == x.size(0);
        return to_bf16(transposed ? transpose(x, 0, 1) : x);
      };
      bool ta = false, tb = false;
      const Tensor<bf16, D> a16 = operand(a, ta), b16 = operand(b, tb);
      return product_bf16(a16, ta, b16, tb);
    }
  }
  return matmul(a, b);
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> matmul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  BLIP_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands need rank >= 2, got ", a.shape(), " and ", b.shape());
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  BLIP_CHECK(b.size(-2) == k, "matmul: inner sizes differ: ", a.shape(), " @ ", b.shape());
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor<T, D> y = Tensor<T, D>::empty(out_shape);
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {m, k});
  b_full.insert(b_full.end(), {k, n});
  if (b.dim() == 2 && a.dim() > 2 && a.is_contiguous()) {  // fold a's batch into rows: one GEMM
    const int64_t all_rows = numel(batch) * m;
    detail::batched_product(reshape(a.detach(), {all_rows, k}), b.detach(), reshape(y, {all_rows, n}));
  } else {
    detail::batched_product(expand(a.detach(), a_full), expand(b.detach(), b_full), y);
  }
  if (grad_needed(a, b))
    record(y, "matmul", {&a, &b}, [a = a.detach(), b = b.detach(), ra = a.requires_grad(),
                                   rb = b.requires_grad()](const Tensor<T, D>& gy) {
      Tensor<T, D> ga, gb;
      if (ra) ga = sum_to(matmul(gy, transpose(b, -1, -2)), a.shape());
      if (rb) {
        if (b.dim() == 2 && a.dim() > 2) {
          const int64_t kk = a.size(-1), nn = b.size(-1), rows = numel(Shape(a.shape().begin(), a.shape().end() - 1));
          gb = matmul(transpose(reshape(a, {rows, kk}), 0, 1), reshape(gy, {rows, nn}));
        } else {
          gb = sum_to(matmul(transpose(a, -1, -2), gy), b.shape());
        }
      }
      return std::vector{ga, gb};
    });
  return y;
}

namespace detail {

// linear() inside a bf16 PrecisionScope: y = x16 · w16ᵀ + b with float accumulation; the
// backward (when recorded) multiplies in bf16 too: gx = g16 · w16, gw = g16ᵀ · x16, gb = sum(g).
template <Device D>
Tensor<float, D> linear_bf16(const Tensor<float, D>& x, const Tensor<float, D>& weight, const Tensor<float, D>& bias,
                             bool needs_grad) {
  const int64_t in = weight.size(1), out = weight.size(0);
  const int64_t rows = numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor<bf16, D> x16 = to_bf16(reshape(x.detach(), {rows, in}));
  const Tensor<float, D> w = contiguous(weight.detach());
  const Tensor<float, D> b = bias.defined() ? contiguous(bias.detach()) : Tensor<float, D>();
  const float* b_data = b.defined() ? b.data() : nullptr;
  Tensor<float, D> y2 = Tensor<float, D>::empty({rows, out});
  Shape out_shape = x.shape();
  out_shape.back() = out;
  if (!needs_grad) {  // the backward would need the plain copy: pack only where there is none
    if (const backend::PackedWeight packed = packed_bf16_weight(w)) {
      kernels<D>::linear_bf16_packed(x16.data(), rows, in, packed, out, b_data, y2.data());
      return reshape(y2, out_shape);
    }
  }
  const Tensor<bf16, D> w16 = bf16_weight(w);
  kernels<D>::linear_bf16(x16.data(), rows, in, w16.data(), out, b_data, y2.data());
  Tensor<float, D> y = reshape(y2, out_shape);
  if (needs_grad)
    record(y, "linear", {&x, &weight, &bias},
           [x16, w16, rows, in, out, in_shape = x.shape(), rx = x.requires_grad(), rw = weight.requires_grad(),
            rb = bias.defined() && bias.requires_grad()](const Tensor<float, D>& gy) {
             const Tensor<float, D> g2 = reshape(gy, {rows, out});
             const Tensor<bf16, D> g16 = to_bf16(g2);
             Tensor<float, D> gx, gw, gb;
             if (rx) gx = reshape(product_bf16(g16, false, w16, false), in_shape);
             if (rw) gw = product_bf16(g16, true, x16, false);
             if (rb) gb = sum(g2, {0});
             return std::vector{gx, gw, gb};
           });
  return y;
}

// linear() inside an int8 PrecisionScope without a recorded gradient: x quantised per row, the
// weight per output channel (packed once per scope), int32 accumulation. Undefined where the
// device has no int8 GEMM (the caller then takes the bf16 path).
template <Device D>
Tensor<float, D> linear_int8(const Tensor<float, D>& x, const Tensor<float, D>& weight, const Tensor<float, D>& bias) {
  const int64_t in = weight.size(1), out = weight.size(0);
  const int64_t rows = numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const backend::PackedWeight packed =
      PrecisionScope::active()->packed_weight(contiguous(weight.detach()), PrecisionScope::Packing::s8,
                                              [](const Tensor<float, D>& w) {
        return kernels<D>::pack_linear_s8(w.data(), w.size(0), w.size(1));
      });
  if (!packed) return {};
  const Tensor<float, D> x2 = contiguous(reshape(x.detach(), {rows, in}));
  Tensor<int8_t, D> xq = Tensor<int8_t, D>::empty({rows, in});
  Tensor<float, D> x_scale = Tensor<float, D>::empty({rows});
  kernels<D>::quantize_rows_s8(x2.data(), xq.data(), x_scale.data(), rows, in);
  const Tensor<float, D> b = bias.defined() ? contiguous(bias.detach()) : Tensor<float, D>();
  Tensor<float, D> y = Tensor<float, D>::empty({rows, out});
  kernels<D>::linear_s8_packed(xq.data(), x_scale.data(), rows, in, packed, out, b.defined() ? b.data() : nullptr,
                               y.data());
  Shape out_shape = x.shape();
  out_shape.back() = out;
  return reshape(y, out_shape);
}

// Records the backward of y = x2 · wᵀ + bias (x2: x as [rows, in], w: the weight, both detached):
// gx = g · w, gw = gᵀ · x2, gb = sum(g), the two products in `products` (detail::product).
template <Element T, Device D>
void record_linear(Tensor<T, D>& y, const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                   const Tensor<T, D>& x2, const Tensor<T, D>& w, Products products) {
  record(y, "linear", {&x, &weight, &bias},
         [x2, w, products, in_shape = x.shape(), rx = x.requires_grad(), rw = weight.requires_grad(),
          rb = bias.defined() && bias.requires_grad()](const Tensor<T, D>& gy) {
           const Tensor<T, D> g2 = reshape(gy, {x2.size(0), w.size(0)});
           Tensor<T, D> gx, gw, gb;
           if (rx) gx = reshape(product(g2, w, products), in_shape);
           if (rw) gw = product(transpose(g2, 0, 1), x2, products);
           if (rb) gb = sum(g2, {0});
           return std::vector{gx, gw, gb};
         });
}

// linear() inside an fp16 PrecisionScope on a device with fp16 products
// (backend/cpu/half_gemm.hpp): without a recorded gradient and with fixed weights, the weight
// rounded and packed once per scope and x rounded per call; otherwise (training autocast, a
// recorded gradient) both rounded per call, and the backward's two products in fp16 too.
template <Device D>
Tensor<float, D> linear_fp16(const Tensor<float, D>& x, const Tensor<float, D>& weight, const Tensor<float, D>& bias,
                             bool needs_grad) {
  const int64_t in = weight.size(1), out = weight.size(0);
  const int64_t rows = numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor<float, D> w = contiguous(weight.detach());
  const Tensor<float, D> x2 = contiguous(reshape(x.detach(), {rows, in}));
  const Tensor<float, D> b = bias.defined() ? contiguous(bias.detach()) : Tensor<float, D>();
  Shape out_shape = x.shape();
  out_shape.back() = out;
  if (!needs_grad) {
    const backend::PackedWeight packed = PrecisionScope::active()->packed_weight(
        w, PrecisionScope::Packing::f16,
        [](const Tensor<float, D>& wc) { return kernels<D>::pack_linear_f16(wc.data(), wc.size(0), wc.size(1)); });
    if (packed) {  // (empty under Weights::changing)
      Tensor<float, D> y = Tensor<float, D>::empty({rows, out});
      kernels<D>::linear_f16_packed(x2.data(), rows, in, packed, w.data(), out, b.defined() ? b.data() : nullptr,
                                    y.data());
      return reshape(y, out_shape);
    }
  }
  Tensor<float, D> y = reshape(product_f16(x2, transpose(w, 0, 1), b), out_shape);
  if (needs_grad) record_linear(y, x, weight, bias, x2, w, Products::fp16);
  return y;
}

}  // namespace detail

template <Element T, Device D>
Tensor<T, D> linear(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias = {}) {
  BLIP_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", x.shape(),
             " does not match weight ", weight.shape(), " (expected [..., ", weight.dim() == 2 ? weight.size(1) : -1, "])");
  const int64_t in = weight.size(1), out = weight.size(0);
  BLIP_CHECK(!bias.defined() || bias.shape() == Shape{out}, "linear: bias ", bias.shape(),
             " does not match weight ", weight.shape());
  const int64_t rows = numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const bool needs_grad = grad_needed(x, weight, bias);
  if constexpr (std::same_as<T, float>) {  // the reduced paths make their own operands and output
    const Precision precision = PrecisionScope::current();
    if (precision == Precision::int8 && !needs_grad)
      if (Tensor<float, D> y = detail::linear_int8(x, weight, bias); y.defined()) return y;
    const Products products = scope_products<D>();
    if (products == Products::fp16) return detail::linear_fp16(x, weight, bias, needs_grad);
    if (products == Products::bf16) return detail::linear_bf16(x, weight, bias, needs_grad);
  }
  const Tensor<T, D> x2 = reshape(x.detach(), {rows, in});
  const Tensor<T, D> w = contiguous(weight.detach());
  const Tensor<T, D> b = bias.defined() ? contiguous(bias.detach()) : Tensor<T, D>();
  Tensor<T, D> y2 = Tensor<T, D>::empty({rows, out});
  kernels<D>::linear(x2.data(), rows, in, w.data(), out, b.defined() ? b.data() : nullptr, y2.data());
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor<T, D> y = reshape(y2, out_shape);
  if (needs_grad) detail::record_linear(y, x, weight, bias, x2, w, Products::fp32);
  return y;
}

}  // namespace blip
