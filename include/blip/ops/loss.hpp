// blip/ops/loss.hpp — cross_entropy with integer labels (mean over the batch).
//
// Contract: logits [N, C] and labels int64 [N] with 0 <= label < C (else blip::Error naming the
// position and label); returns the scalar mean of -log_softmax(logits)[i, label_i], like
// torch.nn.functional.cross_entropy with reduction='mean'. Soft-target losses (ITC) are
// composed from log_softmax, mul, sum and mean.
#pragma once

#include "blip/ops/softmax.hpp"

namespace blip {

template <Element T, Device D>
Tensor<T, D> cross_entropy(const Tensor<T, D>& logits, const Tensor<int64_t, D>& labels) {
  BLIP_CHECK(logits.dim() == 2 && labels.dim() == 1 && labels.size(0) == logits.size(0),
             "cross_entropy: expected logits [N, C] and labels [N], got ", logits.shape(), " and ", labels.shape());
  const int64_t n = logits.size(0), c = logits.size(1);
  BLIP_CHECK(n > 0, "cross_entropy: empty batch");
  const Tensor<int64_t, D> label = contiguous(labels);
  kernels<D>::check_indices(label.data(), n, c, "cross_entropy", "label");
  const Tensor<T, D> log_probs = log_softmax(logits.detach());
  Tensor<T, D> loss = Tensor<T, D>::empty({});
  kernels<D>::nll_mean(log_probs.data(), label.data(), n, c, loss.data());
  if (grad_needed(logits))
    record(loss, "cross_entropy", {&logits}, [log_probs, label, n, c](const Tensor<T, D>& gy) {
      const Tensor<T, D> g = contiguous(gy);  // (softmax - onehot) * g / n
      Tensor<T, D> gx = Tensor<T, D>::empty({n, c});
      kernels<D>::nll_mean_backward(log_probs.data(), label.data(), n, c, g.data(), gx.data());
      return std::vector{gx};
    });
  return loss;
}

}  // namespace blip
