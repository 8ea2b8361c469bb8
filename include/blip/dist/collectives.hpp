// blip/dist/collectives.hpp — collectives over tensors and small host vectors, the calls the
// model, the trainer and the evaluation loop make.
//
// Contract (every rank calls each function in the same order):
// - all_reduce_(comm, t, op): t (contiguous, in the communicator's memory) reduced in place.
// - broadcast_(comm, t, root): t takes root's values.
// - all_gather_concat(comm, x): the ranks' x joined along axis 0 in rank order; their sizes
//   along axis 0 may differ (mmpretrain's all_gather + cat for features, collect_results for
//   a sharded evaluation); the other axes must agree (checked, naming the rank). No gradient.
// - all_gather_with_grad(comm, x): the same join, differentiable as BLIP's GatherLayer /
//   torch.distributed.nn.all_gather: backward all-reduces (sums) the output gradient and
//   returns this rank's slice of it. Every rank must call backward through it (the gradient
//   sum is a collective).
// - all_gather_values(comm, v, counts?): host vectors of any lengths joined in rank order (and,
//   if asked, each rank's length).
// - shard_of(n, comm): the contiguous block [begin, end) of n items this rank owns (the first
//   n % size ranks own one more), so that joining the blocks in rank order gives 0..n-1.
#pragma once

#include <numeric>

#include "blip/autograd/graph.hpp"
#include "blip/dist/communicator.hpp"
#include "blip/ops/copy.hpp"
#include "blip/ops/view.hpp"

namespace blip::dist {

template <class D>
void check_memory(const Communicator& comm, const char* what) {
  const Memory m = std::is_same_v<D, Cpu> ? Memory::host : Memory::cuda;
  BLIP_CHECK(m == comm.memory(), "dist::", what, ": the ", comm.backend(), " communicator moves ",
             comm.memory() == Memory::host ? "host" : "CUDA", " tensors, not ", D::name, " tensors");
}

template <class T, Device D>
void all_reduce_(Communicator& comm, Tensor<T, D>& t, ReduceOp op = ReduceOp::sum) {
  check_memory<D>(comm, "all_reduce_");
  BLIP_CHECK(t.is_contiguous(), "dist::all_reduce_: tensor of shape ", t.shape(), " must be contiguous");
  comm.all_reduce(t.data(), t.numel(), scalar_of<T>(), op);
}

template <class T, Device D>
void broadcast_(Communicator& comm, Tensor<T, D>& t, int root = 0) {
  check_memory<D>(comm, "broadcast_");
  BLIP_CHECK(t.is_contiguous(), "dist::broadcast_: tensor of shape ", t.shape(), " must be contiguous");
  comm.broadcast(t.data(), t.numel(), scalar_of<T>(), root);
}

template <class T>
std::vector<T> all_gather_values(Communicator& comm, const std::vector<T>& v, std::vector<int64_t>* counts_out = nullptr) {
  if (comm.size() == 1) {
    if (counts_out) *counts_out = {static_cast<int64_t>(v.size())};
    return v;
  }
  const int W = comm.size();
  std::vector<int64_t> counts(static_cast<size_t>(W));
  const int64_t mine = static_cast<int64_t>(v.size());
  all_gather_host(comm, &mine, 1, counts.data(), Scalar::int64);
  std::vector<T> out(static_cast<size_t>(std::accumulate(counts.begin(), counts.end(), int64_t{0})));
  all_gather_v_host(comm, v.data(), mine, out.data(), counts, scalar_of<T>());
  if (counts_out) *counts_out = counts;
  return out;
}

// Rows per rank of a join along axis 0, checked to agree on the other axes.
template <class T, Device D>
std::vector<int64_t> gathered_rows(Communicator& comm, const Tensor<T, D>& x, const char* what) {
  BLIP_CHECK(x.dim() >= 1, "dist::", what, ": needs at least one axis, got shape ", x.shape());
  std::vector<int64_t> shape(x.shape().begin(), x.shape().end());
  shape.insert(shape.begin(), x.dim());
  const std::vector<int64_t> all = all_gather_values(comm, shape);
  const size_t width = shape.size();
  BLIP_CHECK(all.size() == width * static_cast<size_t>(comm.size()), "dist::", what,
             ": the ranks' tensors differ in rank (number of axes)");
  std::vector<int64_t> rows;
  for (int r = 0; r < comm.size(); ++r) {
    const int64_t* s = all.data() + static_cast<size_t>(r) * width;
    BLIP_CHECK(std::equal(s + 2, s + width, shape.begin() + 2) && s[0] == shape[0], "dist::", what, ": rank ", r,
               " has shape ", std::vector<int64_t>(s + 1, s + width), " and rank ", comm.rank(), " has ", x.shape(),
               "; they must agree off axis 0");
    rows.push_back(s[1]);
  }
  return rows;
}

namespace detail {
// x's rows joined with the other ranks' (rows[r] from rank r), in rank order.
template <class T, Device D>
Tensor<T, D> join_rows(Communicator& comm, const Tensor<T, D>& x, const std::vector<int64_t>& rows) {
  int64_t inner = 1;
  for (int64_t a = 1; a < x.dim(); ++a) inner *= x.size(a);
  Shape shape = x.shape();
  shape[0] = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  std::vector<int64_t> counts;
  for (int64_t r : rows) counts.push_back(r * inner);
  const Tensor<T, D> mine = contiguous(x.detach());
  comm.all_gather_v(mine.data(), mine.numel(), out.data(), counts, scalar_of<T>());
  return out;
}
}  // namespace detail

template <class T, Device D>
Tensor<T, D> all_gather_concat(Communicator& comm, const Tensor<T, D>& x) {
  check_memory<D>(comm, "all_gather_concat");
  if (comm.size() == 1) return x.detach();
  NoGradGuard no_grad;
  return detail::join_rows(comm, x, gathered_rows(comm, x, "all_gather_concat"));
}

template <Differentiable T, Device D>
Tensor<T, D> all_gather_with_grad(Communicator& comm, const Tensor<T, D>& x) {
  check_memory<D>(comm, "all_gather_with_grad");
  if (comm.size() == 1) return x;
  const std::vector<int64_t> rows = gathered_rows(comm, x, "all_gather_with_grad");
  Tensor<T, D> out;
  {
    NoGradGuard no_grad;
    out = detail::join_rows(comm, x, rows);
  }
  if (grad_needed(x)) {
    const int64_t start = std::accumulate(rows.begin(), rows.begin() + comm.rank(), int64_t{0}), n = x.size(0);
    Communicator* c = &comm;
    record(out, "all_gather_with_grad", {&x}, [c, start, n](const Tensor<T, D>& gy) {
      Tensor<T, D> sum = clone(gy.detach());  // contiguous, and never the caller's gradient buffer
      all_reduce_(*c, sum, ReduceOp::sum);
      return std::vector{contiguous(narrow(sum, 0, start, n))};
    });
  }
  return out;
}

struct Shard {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

inline Shard shard_of(int64_t n, int rank, int size) {
  BLIP_CHECK(n >= 0 && size > 0 && rank >= 0 && rank < size, "dist::shard_of: ", n, " items, rank ", rank, " of ", size);
  const int64_t base = n / size, extra = n % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}
inline Shard shard_of(int64_t n, const Communicator& comm) { return shard_of(n, comm.rank(), comm.size()); }

}  // namespace blip::dist
