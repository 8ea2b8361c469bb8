// blip/heads/itc_head.hpp — ITCHead: image-text contrastive loss with feature queues and
// momentum distillation (mmpretrain's ITCHead).
//
// Contract: loss(image_feat, text_feat, image_feat_m, text_feat_m, image_ids, temp, comm):
//   img_all = [image_feat_mᵀ | image_queue], txt_all likewise, idx_all = [ids | idx_queue];
//   distributed (comm.size() > 1) the momentum features and ids are those of every rank,
//   gathered in rank order without gradient, so each rank's rows see the global batch and the
//   mean of the ranks' losses is the loss of one process with the whole batch;
//   targets = alpha * softmax(feat_m @ all / temp) + (1 - alpha) * pos / pos.sum(1)
//   (pos = same image id, so duplicates give several positives), computed without gradient;
//   itc = (CE_soft(image_feat @ txt_all / temp) + CE_soft(text_feat @ img_all / temp)) / 2;
//   then the (gathered) momentum features enter the queues (the loss used the old contents),
//   identically on every rank.
// The enqueue wraps around the end of the queue, so any batch size works (mmpretrain asserts
// queue_size % batch == 0). Queues are buffers: image_queue/text_queue [E, Q] with unit
// columns, idx_queue [1, Q] (-100 = empty), queue_ptr.
#pragma once

#include "blip/dist/collectives.hpp"
#include "blip/nn/layers.hpp"
#include "blip/ops/contrastive.hpp"
#include "blip/ops/softmax.hpp"

namespace blip {

template <Differentiable T = float, Device D = Cpu>
class ItcHead {
 public:
  using value_type = T;
  using device_type = D;

  ItcHead(int64_t embed_dim, int64_t queue_size, double alpha_, Generator& gen) : alpha(alpha_) {
    BLIP_CHECK(embed_dim > 0 && queue_size > 0, "ItcHead: embed_dim ", embed_dim, " and queue_size ", queue_size,
               " must be positive");
    NoGradGuard no_grad;
    image_queue = l2_normalize_columns(randn<T, D>({embed_dim, queue_size}, gen));
    text_queue = l2_normalize_columns(randn<T, D>({embed_dim, queue_size}, gen));
    idx_queue = full<int64_t, D>({1, queue_size}, -100);
    queue_ptr = Tensor<int64_t, D>::zeros({1});
  }

  int64_t queue_size() const { return image_queue.size(1); }

  // image_ids: int64 [B] on the head's device (or a host vector, moved there).
  Tensor<T, D> loss(const Tensor<T, D>& image_feat, const Tensor<T, D>& text_feat, const Tensor<T, D>& image_feat_m,
                    const Tensor<T, D>& text_feat_m, const Tensor<int64_t, D>& image_ids, const Tensor<T, D>& temp,
                    dist::Communicator& comm = dist::single_process()) {
    const int64_t B = image_feat.size(0);
    BLIP_CHECK(image_ids.dim() == 1 && image_ids.numel() == B && text_feat.size(0) == B, "ItcHead::loss: ", B,
               " images, ", text_feat.size(0), " texts and ", image_ids.numel(), " image ids");
    Tensor<T, D> img_all, txt_all, targets_i2t, targets_t2i, image_feat_m_all, text_feat_m_all;
    const Tensor<int64_t, D> ids_all = dist::all_gather_concat(comm, image_ids);
    {
      NoGradGuard no_grad;
      image_feat_m_all = dist::all_gather_concat(comm, image_feat_m);
      text_feat_m_all = dist::all_gather_concat(comm, text_feat_m);
      img_all = concat(std::vector{transpose(image_feat_m_all, 0, 1), image_queue}, 1);
      txt_all = concat(std::vector{transpose(text_feat_m_all, 0, 1), text_queue}, 1);
      // pos / pos.sum(1) over [ids_all | idx_queue], one row per local sample
      const Tensor<T, D> targets =
          match_ids<T>(image_ids, concat(std::vector{ids_all, reshape(idx_queue, {queue_size()})}, 0), true);
      const T a = static_cast<T>(alpha), one_minus_a = static_cast<T>(1.0 - alpha);
      targets_i2t = add(scale(softmax(div(matmul(image_feat_m, txt_all), temp)), a), scale(targets, one_minus_a));
      targets_t2i = add(scale(softmax(div(matmul(text_feat_m, img_all), temp)), a), scale(targets, one_minus_a));
    }
    const Tensor<T, D> sim_i2t = div(matmul(image_feat, txt_all), temp);
    const Tensor<T, D> sim_t2i = div(matmul(text_feat, img_all), temp);
    const Tensor<T, D> loss_i2t = neg(mean(sum(mul(log_softmax(sim_i2t), targets_i2t), {1})));
    const Tensor<T, D> loss_t2i = neg(mean(sum(mul(log_softmax(sim_t2i), targets_t2i), {1})));
    const Tensor<T, D> itc = scale(add(loss_i2t, loss_t2i), T(0.5));
    enqueue(image_feat_m_all, text_feat_m_all, ids_all);
    return itc;
  }
  Tensor<T, D> loss(const Tensor<T, D>& image_feat, const Tensor<T, D>& text_feat, const Tensor<T, D>& image_feat_m,
                    const Tensor<T, D>& text_feat_m, const std::vector<int64_t>& image_ids, const Tensor<T, D>& temp,
                    dist::Communicator& comm = dist::single_process()) {
    return loss(image_feat, text_feat, image_feat_m, text_feat_m,
                Tensor<int64_t, D>::from_vector({static_cast<int64_t>(image_ids.size())}, image_ids), temp, comm);
  }

  // queue[:, ptr + j (mod Q)] = feat_m[j]; idx likewise; ptr = (ptr + B) mod Q — on the queues'
  // device, the pointer included (nothing is read back to the host).
  void enqueue(const Tensor<T, D>& image_feat_m, const Tensor<T, D>& text_feat_m, const Tensor<int64_t, D>& image_ids) {
    NoGradGuard no_grad;
    const int64_t B = image_feat_m.size(0), Q = queue_size();
    BLIP_CHECK(text_feat_m.size(0) == B && image_ids.numel() == B, "ItcHead::enqueue: ", B, " image features, ",
               text_feat_m.size(0), " text features and ", image_ids.numel(), " ids");
    enqueue_columns(image_queue, image_feat_m, queue_ptr);
    enqueue_columns(text_queue, text_feat_m, queue_ptr);
    enqueue_columns(idx_queue, reshape(image_ids, {B, 1}), queue_ptr);
    enqueue_advance(queue_ptr, B, Q);
  }

  template <class F>
  void visit_buffers(F&& f, const std::string& prefix) {
    f(join_name(prefix, "image_queue"), image_queue);
    f(join_name(prefix, "text_queue"), text_queue);
  }
  template <class F>
  void visit_index_buffers(F&& f, const std::string& prefix) {
    f(join_name(prefix, "idx_queue"), idx_queue);
    f(join_name(prefix, "queue_ptr"), queue_ptr);
  }

  Tensor<T, D> image_queue, text_queue;
  Tensor<int64_t, D> idx_queue, queue_ptr;
  double alpha;

 private:
  static Tensor<T, D> l2_normalize_columns(const Tensor<T, D>& x) {
    return contiguous(transpose(l2_normalize(transpose(x, 0, 1)), 0, 1));
  }
};

}  // namespace blip
