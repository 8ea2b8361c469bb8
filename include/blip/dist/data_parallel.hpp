// blip/dist/data_parallel.hpp — data-parallel training over a Communicator: the initial state
// from rank 0, the gradients' mean in buckets, and the state checksum that shows every rank
// holds the same model.
//
// Contract:
// - broadcast_model(comm, model): rank 0's parameters, momentum copies (unless aliased: they
//   are the parameters) and the ITC head's queues and pointers, on every rank.
// - all_reduce_gradients(comm, params, bucket_elements): each gradient becomes the mean over the
//   ranks, moved in buckets of at most bucket_elements floats (few collectives, bounded extra
//   memory). A parameter that has a gradient on some ranks and none on others counts as zero
//   there (every rank then steps it, as DDP with find_unused_parameters); one with a gradient
//   nowhere stays without.
// - GradientReducer(comm, params): the same mean, overlapped with the backward pass as DDP does
//   it. Parameters go into buckets in reverse order (the order backward finishes them); each
//   parameter's post-accumulate hook marks it ready, and a bucket's non-blocking all-reduce
//   starts once all its gradients are final and every earlier bucket has started, so each rank
//   issues the same sequence. prepare() before the backward, finish() after it: it starts what
//   is left, waits, unpacks; the values equal all_reduce_gradients' up to the order of summation.
//   Every rank's graph must reach the same parameters (BLIP's does): one that some ranks lack
//   would start its bucket later there, out of order with the collectives inside the backward
//   pass (all_gather_with_grad's); use all_reduce_gradients for such models.
// - state_checksum(model): CRC-32 of every parameter, momentum copy and queue, in visit order.
#pragma once

#include <chrono>

#include "blip/dist/collectives.hpp"
#include "blip/io/crc32.hpp"
#include "blip/nn/parameter.hpp"

namespace blip::dist {

template <class Model>
void broadcast_model(Communicator& comm, Model& model, int root = 0) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  // Which momentum copies are separate must agree, or the ranks would broadcast different lists.
  int64_t separate = 0;
  model.visit_momentum_parameters([&](const std::string&, const std::string&, Parameter<T, D>& p) {
    separate += p.has_momentum() && !p.momentum_aliased();
  });
  const std::vector<int64_t> all = all_gather_values(comm, std::vector<int64_t>{separate});
  for (size_t r = 0; r < all.size(); ++r)
    BLIP_CHECK(all[r] == all[0], "dist::broadcast_model: rank ", r, " has ", all[r], " separate momentum copies, rank 0 has ",
               all[0], "; the ranks' models differ in state");
  model.visit_parameters([&](const std::string&, Parameter<T, D>& p) {
    Tensor<T, D> v = p.value();
    broadcast_(comm, v, root);
  });
  model.visit_momentum_parameters([&](const std::string&, const std::string&, Parameter<T, D>& p) {
    if (!p.has_momentum() || p.momentum_aliased()) return;
    Tensor<T, D> m = p.momentum();
    broadcast_(comm, m, root);
  });
  model.head.visit_buffers([&](const std::string&, Tensor<T, D>& t) { broadcast_(comm, t, root); }, "");
  model.head.visit_index_buffers([&](const std::string&, Tensor<int64_t, D>& t) { broadcast_(comm, t, root); }, "");
}

template <Differentiable T, Device D>
void all_reduce_gradients(Communicator& comm, const std::vector<NamedParameter<T, D>>& params,
                          int64_t bucket_elements = int64_t{1} << 22) {
  if (comm.size() == 1) return;
  BLIP_CHECK(bucket_elements > 0, "dist::all_reduce_gradients: bucket_elements must be positive");
  NoGradGuard no_grad;
  // Which parameters have a gradient somewhere (one small collective).
  std::vector<int64_t> has(params.size());
  for (size_t i = 0; i < params.size(); ++i) has[i] = params[i].second->grad().defined() ? 1 : 0;
  all_reduce_host(comm, has.data(), static_cast<int64_t>(has.size()), Scalar::int64, ReduceOp::sum);
  std::vector<Tensor<T, D>> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (has[i] == 0) continue;
    Parameter<T, D>& p = *params[i].second;
    if (!p.grad().defined()) p.value().autograd()->grad = Tensor<T, D>::zeros(p.shape());
    Tensor<T, D> g = p.grad();
    BLIP_CHECK(g.is_contiguous() && g.shape() == p.shape(), "dist::all_reduce_gradients: gradient of ",
               params[i].first, " has shape ", g.shape(), " (parameter ", p.shape(), ")");
    grads.push_back(g);
  }
  // Large gradients go in place; small ones are packed into a bucket first.
  Tensor<T, D> bucket;
  std::vector<size_t> members;
  int64_t filled = 0;
  auto flush = [&] {
    if (members.empty()) return;
    Tensor<T, D> used = narrow(bucket, 0, 0, filled);
    comm.all_reduce(used.data(), filled, scalar_of<T>(), ReduceOp::mean);
    int64_t at = 0;
    for (size_t m : members) {
      const int64_t n = grads[m].numel();
      copy_into(grads[m], reshape(narrow(bucket, 0, at, n), grads[m].shape()));
      at += n;
    }
    members.clear();
    filled = 0;
  };
  for (size_t i = 0; i < grads.size(); ++i) {
    const int64_t n = grads[i].numel();
    if (n >= bucket_elements) {
      comm.all_reduce(grads[i].data(), n, scalar_of<T>(), ReduceOp::mean);
      continue;
    }
    if (filled + n > bucket_elements) flush();
    if (!bucket.defined()) bucket = Tensor<T, D>::empty({bucket_elements});
    copy_into(narrow(bucket, 0, filled, n), reshape(grads[i], {n}));
    filled += n;
    members.push_back(i);
  }
  flush();
}

template <Differentiable T, Device D>
class GradientReducer {
 public:
  GradientReducer(Communicator& comm, std::vector<NamedParameter<T, D>> params, int64_t bucket_elements = int64_t{1} << 22)
      : comm_(comm), params_(std::move(params)), has_(params_.size(), 0), bucket_of_(params_.size()) {
    BLIP_CHECK(bucket_elements > 0, "dist::GradientReducer: bucket_elements must be positive");
    for (size_t k = params_.size(); k-- > 0;) {
      const int64_t n = params_[k].second->value().numel();
      if (buckets_.empty() || buckets_.back().in_place || n >= bucket_elements ||
          buckets_.back().elements + n > bucket_elements)
      {
        buckets_.emplace_back();
        buckets_.back().in_place = n >= bucket_elements;
      }
      buckets_.back().members.push_back(k);
      buckets_.back().elements += n;
      bucket_of_[k] = buckets_.size() - 1;
    }
    for (size_t k = 0; k < params_.size(); ++k)
      params_[k].second->value().autograd()->post_accumulate = [this, k] { on_ready(k); };
  }
  ~GradientReducer() {
    for (auto& [name, p] : params_) p->value().autograd()->post_accumulate = nullptr;
  }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Arms the hooks for the next backward (the last micro-batch of a step).
  void prepare() {
    armed_ = comm_.size() > 1;
    next_ = 0;
    for (Bucket& b : buckets_) b.ready = 0;
  }

  // Completes the averaging; returns the seconds spent waiting here (the communication the
  // backward pass did not hide).
  double finish() {
    if (!armed_) return 0.0;
    const auto start = std::chrono::steady_clock::now();
    NoGradGuard no_grad;
    while (next_ < buckets_.size()) launch(next_++);  // parameters no hook reported (not in this graph)
    comm_.wait_all();
    for (Bucket& b : buckets_) {
      if (b.in_place) continue;
      int64_t at = 0;
      for (size_t k : b.members) {
        Tensor<T, D> g = params_[k].second->grad();
        copy_into(g, reshape(narrow(b.buffer, 0, at, g.numel()), g.shape()));
        at += g.numel();
      }
    }
    // A parameter no rank has a gradient for stays without one (AdamW skips it, as alone).
    all_reduce_host(comm_, has_.data(), static_cast<int64_t>(has_.size()), Scalar::int64, ReduceOp::sum);
    for (size_t k = 0; k < params_.size(); ++k)
      if (has_[k] == 0) params_[k].second->zero_grad();
    armed_ = false;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  struct Bucket {
    bool in_place = false;      // one large gradient, reduced where it is
    std::vector<size_t> members;
    int64_t elements = 0, ready = 0;
    Tensor<T, D> buffer;
  };

  void on_ready(size_t k) {
    if (!armed_) return;
    Bucket& b = buckets_[bucket_of_[k]];
    ++b.ready;
    while (next_ < buckets_.size() && buckets_[next_].ready == static_cast<int64_t>(buckets_[next_].members.size()))
      launch(next_++);
    comm_.progress();
  }

  void launch(size_t index) {
    Bucket& b = buckets_[index];
    NoGradGuard no_grad;
    for (size_t k : b.members) {
      Parameter<T, D>& p = *params_[k].second;
      has_[k] = p.grad().defined() ? 1 : 0;
      if (!has_[k]) p.value().autograd()->grad = Tensor<T, D>::zeros(p.shape());
      BLIP_CHECK(p.grad().is_contiguous() && p.grad().shape() == p.shape(), "dist::GradientReducer: gradient of ",
                 params_[k].first, " has shape ", p.grad().shape(), " (parameter ", p.shape(), ")");
    }
    if (b.in_place) {
      Parameter<T, D>& p = *params_[b.members[0]].second;
      // Reduced where it is while the backward pass goes on: it must not share memory with a
      // gradient that a node still to run reads (accumulate may hand a leaf that very tensor).
      if (p.grad().storage().use_count() > 1) p.value().autograd()->grad = clone(p.grad());
      Tensor<T, D> g = p.grad();
      comm_.start_all_reduce(g.data(), g.numel(), scalar_of<T>(), ReduceOp::mean);
      return;
    }
    if (!b.buffer.defined()) b.buffer = Tensor<T, D>::empty({b.elements});
    int64_t at = 0;
    for (size_t k : b.members) {
      const Tensor<T, D> g = params_[k].second->grad();
      copy_into(narrow(b.buffer, 0, at, g.numel()), reshape(g, {g.numel()}));
      at += g.numel();
    }
    comm_.start_all_reduce(b.buffer.data(), b.elements, scalar_of<T>(), ReduceOp::mean);
  }

  Communicator& comm_;
  std::vector<NamedParameter<T, D>> params_;
  std::vector<int64_t> has_;
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  size_t next_ = 0;
  bool armed_ = false;
};

template <class Model>
uint32_t state_checksum(Model& model) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  uint32_t crc = io::crc32_init();
  auto add = [&](const auto& t) {
    const auto v = contiguous(t).to_vector();
    crc = io::crc32(crc, v.data(), v.size() * sizeof(v[0]));
  };
  model.visit_parameters([&](const std::string&, Parameter<T, D>& p) { add(p.value().detach()); });
  model.visit_momentum_parameters([&](const std::string&, const std::string&, Parameter<T, D>& p) {
    if (p.has_momentum()) add(p.momentum());
  });
  model.head.visit_buffers([&](const std::string&, Tensor<T, D>& t) { add(t); }, "");
  model.head.visit_index_buffers([&](const std::string&, Tensor<int64_t, D>& t) { add(t); }, "");
  return crc;
}

}  // namespace blip::dist
