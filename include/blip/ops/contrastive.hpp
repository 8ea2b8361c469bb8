// blip/ops/contrastive.hpp — the bookkeeping of contrastive training as ops on the tensors' device:
// which columns share an image id, hard-negative draws, and the feature queue's enqueue. None has
// a gradient (they run under no_grad in the heads).
//
// Contract:
// - match_ids<U>(row_ids [R], col_ids [C], normalise) -> U [R, C]: 1 where the ids agree, 0
//   elsewhere; with `normalise`, each row divided by its number of matches (mmpretrain's
//   pos_idx / pos_idx.sum(1); a row without a match stays 0). U = uint8_t gives a mask.
// - sample_negatives(weights [R, C], row_ids [R], col_ids [C], row_offset, seed) -> int64 [R]:
//   per row a column drawn in proportion to its finite positive weights (torch.multinomial),
//   or, when the row has none, uniformly another image id, else another column than the row's own
//   sample (column row_offset + r, where that is a column), else the row itself. The draw is Philox keyed by `seed`
//   (backend/portable.hpp): identical on every device.
// - enqueue_columns(queue [E, Q], src [B, E], ptr [1]): column (ptr + j) mod Q of queue = row j
//   of src (later rows win when B > Q). enqueue_advance(ptr, B, Q): ptr = (ptr + B) mod Q. The
//   pointer stays on the device: nothing is read back.
#pragma once

#include "blip/ops/copy.hpp"

namespace blip {

template <class U, Device D>
Tensor<U, D> match_ids(const Tensor<int64_t, D>& row_ids, const Tensor<int64_t, D>& col_ids, bool normalise) {
  BLIP_CHECK(row_ids.dim() == 1 && col_ids.dim() == 1, "match_ids: ids must be 1-D, got ", row_ids.shape(), " and ",
             col_ids.shape());
  const Tensor<int64_t, D> r = contiguous(row_ids), c = contiguous(col_ids);
  Tensor<U, D> out = Tensor<U, D>::empty({r.numel(), c.numel()});
  kernels<D>::match_ids(r.data(), r.numel(), c.data(), c.numel(), out.data(), normalise);
  return out;
}

template <Element T, Device D>
Tensor<int64_t, D> sample_negatives(const Tensor<T, D>& weights, const Tensor<int64_t, D>& row_ids,
                                    const Tensor<int64_t, D>& col_ids, int64_t row_offset, uint64_t seed) {
  BLIP_CHECK(weights.dim() == 2 && row_ids.dim() == 1 && col_ids.dim() == 1 && row_ids.numel() == weights.size(0) &&
                 col_ids.numel() == weights.size(1),
             "sample_negatives: weights ", weights.shape(), ", row ids ", row_ids.shape(), " and column ids ",
             col_ids.shape(), " do not agree");
  BLIP_CHECK(row_offset >= 0, "sample_negatives: negative row offset ", row_offset);
  const Tensor<T, D> w = contiguous(weights.detach());
  const Tensor<int64_t, D> r = contiguous(row_ids), c = contiguous(col_ids);
  Tensor<int64_t, D> out = Tensor<int64_t, D>::empty({w.size(0)});
  kernels<D>::sample_negatives(w.data(), w.size(0), w.size(1), r.data(), c.data(), row_offset, seed, out.data());
  return out;
}

template <Element T, Device D>
void enqueue_columns(const Tensor<T, D>& queue, const Tensor<T, D>& src, const Tensor<int64_t, D>& ptr) {
  BLIP_CHECK(queue.dim() == 2 && queue.is_contiguous() && src.dim() == 2 && src.size(1) == queue.size(0) &&
                 ptr.numel() == 1 && queue.size(1) > 0,
             "enqueue_columns: queue ", queue.shape(), " (contiguous [E, Q]), rows ", src.shape(), " ([B, E]) and ptr ",
             ptr.shape(), " do not agree");
  const Tensor<T, D> s = contiguous(src.detach());
  kernels<D>::queue_enqueue(queue.data(), queue.size(0), queue.size(1), s.data(), s.size(0), ptr.data());
}

template <Device D>
void enqueue_advance(const Tensor<int64_t, D>& ptr, int64_t batch, int64_t queue_size) {
  BLIP_CHECK(ptr.numel() == 1 && queue_size > 0 && batch >= 0, "enqueue_advance: ptr ", ptr.shape(), ", batch ", batch,
             ", queue size ", queue_size);
  kernels<D>::queue_advance(ptr.data(), batch, queue_size);
}

}  // namespace blip
