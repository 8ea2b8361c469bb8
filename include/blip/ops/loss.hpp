// blip/ops/loss.hpp — cross_entropy with integer labels (mean over the batch).
//
// Contract: logits [N, C] and labels int64 [N] with 0 <= label < C (else blip::Error naming the
// row and label); returns the scalar mean of -log_softmax(logits)[i, label_i], like
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
  const std::vector<int64_t> label = labels.to_vector();
  for (int64_t i = 0; i < n; ++i)
    BLIP_CHECK(label[static_cast<size_t>(i)] >= 0 && label[static_cast<size_t>(i)] < c, "cross_entropy: label ",
               label[static_cast<size_t>(i)], " of row ", i, " is outside [0, ", c, ")");
  const Tensor<T, D> log_probs = log_softmax(logits.detach());
  const std::vector<T> lp = log_probs.to_vector();
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total -= static_cast<double>(lp[static_cast<size_t>(i * c + label[static_cast<size_t>(i)])]);
  Tensor<T, D> loss = Tensor<T, D>::from_vector({}, {static_cast<T>(total / static_cast<double>(n))});
  if (grad_needed(logits))
    record(loss, "cross_entropy", {&logits}, [log_probs, label, n, c](const Tensor<T, D>& gy) {
      // (softmax - onehot) * g / n
      std::vector<T> g = exp(log_probs).to_vector();
      const T scale_by = gy.item() / static_cast<T>(n);
      for (int64_t i = 0; i < n; ++i) g[static_cast<size_t>(i * c + label[static_cast<size_t>(i)])] -= T(1);
      for (T& v : g) v *= scale_by;
      return std::vector{Tensor<T, D>::from_vector({n, c}, g)};
    });
  return loss;
}

}  // namespace blip
