// blip/dist/mpi_communicator.hpp — the MPI backend of dist::Communicator (host memory), for CPU
// clusters: OpenMPI from Debian, found by CMake as the optional component blip::mpi.
//
// Contract:
// - MpiCommunicator() joins MPI_COMM_WORLD (initialising MPI if nobody has; then it also
//   finalises it) and works on a duplicate of it, so the caller's own MPI traffic never mixes
//   with ours.
// - Every collective is MPI's non-blocking one, driven by MPI_Test until it completes or its
//   deadline passes. While waiting, a rank answers liveness probes on a second duplicate
//   communicator with the collective it is in (sequence number and name). On a timeout the rank
//   probes every peer and throws blip::Error naming, for each peer, whether it answered and
//   where it waits: "rank 1 did not answer within 10 s (dead, stopped, or busy outside a
//   collective)", "rank 2 waits in barrier #17". A rank killed outright is also reported by
//   mpirun itself, which then ends the job.
// - Counts beyond MPI's int range are split (all_reduce, broadcast) or moved as per-rank
//   broadcasts (all_gather_v), so a gallery of any size can be gathered.
// - abort_world(code) ends every rank (MPI_Abort): the way out after a collective failed,
//   because MPI_Finalize would wait for the peer that is gone.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <array>
#include <climits>
#include <deque>
#include <thread>

#include "blip/dist/communicator.hpp"

namespace blip::dist {

namespace detail {
inline MPI_Datatype mpi_type(Scalar s) {
  switch (s) {
    case Scalar::float32: return MPI_FLOAT;
    case Scalar::float64: return MPI_DOUBLE;
    case Scalar::int64: return MPI_INT64_T;
    case Scalar::uint8: return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}
inline void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  fail("dist(mpi): ", what, " failed: ", std::string(text, static_cast<size_t>(length)));
}
}  // namespace detail

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = 0;
      detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_init_ = true;
    }
    detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &probe_), "MPI_Comm_dup");
    // Errors on our duplicates come back as codes (and become blip::Error) instead of aborting
    // inside MPI; the caller's MPI_COMM_WORLD keeps its own handler.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(probe_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    if (failed_) return;  // a peer is gone: freeing or finalising would wait for it
    finish_probe_replies();
    MPI_Comm_free(&probe_);
    MPI_Comm_free(&comm_);
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owns_init_ && !finalised) MPI_Finalize();
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  Memory memory() const override { return Memory::host; }

  void all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) override {
    begin(Op::all_reduce);
    auto* bytes = static_cast<char*>(data);
    for (int64_t start = 0; start < count; start += kMaxCount) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxCount, count - start));
      MPI_Request req;
      detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, bytes + start * scalar_bytes(scalar), n,
                                       detail::mpi_type(scalar), MPI_SUM, comm_, &req),
                        "MPI_Iallreduce");
      wait(req);
    }
    if (op == ReduceOp::mean) divide(data, count, scalar, size_);
  }

  void start_all_reduce(void* data, int64_t count, Scalar scalar, ReduceOp op) override {
    auto* bytes = static_cast<char*>(data);
    for (int64_t start = 0; start < count; start += kMaxCount) {
      begin(Op::all_reduce);
      const int n = static_cast<int>(std::min<int64_t>(kMaxCount, count - start));
      Pending p{MPI_REQUEST_NULL, bytes + start * scalar_bytes(scalar), n, scalar, op, seq_};
      detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, p.data, n, detail::mpi_type(scalar), MPI_SUM, comm_, &p.request),
                        "MPI_Iallreduce");
      pending_.push_back(p);
      op_ = Op::none;
    }
  }
  void progress() override {
    for (Pending& p : pending_) {
      if (p.request == MPI_REQUEST_NULL) continue;
      int done = 0;
      detail::mpi_check(MPI_Test(&p.request, &done, MPI_STATUS_IGNORE), "MPI_Iallreduce");
    }
  }
  void wait_all() override {
    for (Pending& p : pending_) {
      op_ = Op::all_reduce;
      waiting_ = p.seq;
      if (p.request != MPI_REQUEST_NULL) wait(p.request);
      if (p.op == ReduceOp::mean) divide(p.data, p.count, p.scalar, size_);
    }
    pending_.clear();
    op_ = Op::none;
    waiting_ = 0;
  }

  void all_gather(const void* send, int64_t count, void* recv, Scalar scalar) override {
    all_gather_v(send, count, recv, std::vector<int64_t>(static_cast<size_t>(size_), count), scalar);
  }

  void all_gather_v(const void* send, int64_t count, void* recv, const std::vector<int64_t>& counts,
                    Scalar scalar) override {
    BLIP_CHECK(static_cast<int>(counts.size()) == size_ && counts[static_cast<size_t>(rank_)] == count,
               "dist(mpi)::all_gather_v: counts ", counts, " for ", size_, " ranks, rank ", rank_, " sending ", count);
    int64_t total = 0;
    for (int64_t c : counts) {
      BLIP_CHECK(c >= 0, "dist(mpi)::all_gather_v: negative count in ", counts);
      total += c;
    }
    const size_t width = scalar_bytes(scalar);
    if (total <= kMaxCount) {
      begin(Op::all_gather);
      std::vector<int> n(counts.begin(), counts.end()), displacement(static_cast<size_t>(size_), 0);
      for (int r = 1; r < size_; ++r) displacement[static_cast<size_t>(r)] = displacement[static_cast<size_t>(r - 1)] + n[static_cast<size_t>(r - 1)];
      // MPI forbids aliasing send and receive buffers: a send inside recv (its own slot) is copied.
      const char* s = static_cast<const char*>(send);
      const char* r = static_cast<const char*>(recv);
      std::vector<char> copy;
      if (s + count * width > r && s < r + total * static_cast<int64_t>(width)) {
        copy.assign(s, s + count * width);
        s = copy.data();
      }
      MPI_Request req;
      detail::mpi_check(MPI_Iallgatherv(s, static_cast<int>(count), detail::mpi_type(scalar), recv,
                                        n.data(), displacement.data(), detail::mpi_type(scalar), comm_, &req),
                        "MPI_Iallgatherv");
      wait(req);
      return;
    }
    // Beyond int counts: each rank's block is broadcast from it in turn.
    int64_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      char* slot = static_cast<char*>(recv) + offset * width;
      if (r == rank_ && slot != send) std::memmove(slot, send, static_cast<size_t>(count) * width);
      broadcast(slot, counts[static_cast<size_t>(r)], scalar, r);
      offset += counts[static_cast<size_t>(r)];
    }
  }

  void broadcast(void* data, int64_t count, Scalar scalar, int root) override {
    BLIP_CHECK(root >= 0 && root < size_, "dist(mpi)::broadcast: root ", root, " outside [0, ", size_, ")");
    begin(Op::broadcast);
    auto* bytes = static_cast<char*>(data);
    for (int64_t start = 0; start < count; start += kMaxCount) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxCount, count - start));
      MPI_Request req;
      detail::mpi_check(MPI_Ibcast(bytes + start * scalar_bytes(scalar), n, detail::mpi_type(scalar), root, comm_, &req),
                        "MPI_Ibcast");
      wait(req);
    }
  }

  void barrier() override {
    begin(Op::barrier);
    MPI_Request req;
    detail::mpi_check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    wait(req);
  }

  // How long a timed-out rank waits for its peers' answers before it reports.
  void set_probe_window(std::chrono::milliseconds w) { probe_window_ = w; }

 private:
  enum class Op : int64_t { none, all_reduce, all_gather, broadcast, barrier };
  static constexpr std::array<const char*, 5> kOpNames{"nothing", "all_reduce", "all_gather", "broadcast", "barrier"};
  static constexpr int64_t kMaxCount = INT_MAX / 2;
  static constexpr int kPingTag = 1, kReplyTag = 2;

  struct Pending {
    MPI_Request request;
    void* data;
    int count;
    Scalar scalar;
    ReduceOp op;
    uint64_t seq;
  };

  void begin(Op op) {
    BLIP_CHECK(!failed_, "dist(mpi): a collective failed earlier on rank ", rank_, "; the group is unusable");
    op_ = op;
    ++seq_;
  }
  // The collective this rank waits in: a started non-blocking one, else the latest.
  uint64_t waiting_seq() const { return waiting_ ? waiting_ : seq_; }

  static void divide(void* data, int64_t count, Scalar scalar, int by) {
    auto apply = [&](auto* p) {
      for (int64_t i = 0; i < count; ++i) p[i] /= by;
    };
    switch (scalar) {
      case Scalar::float32: apply(static_cast<float*>(data)); break;
      case Scalar::float64: apply(static_cast<double*>(data)); break;
      case Scalar::int64: apply(static_cast<int64_t*>(data)); break;
      case Scalar::uint8: apply(static_cast<uint8_t*>(data)); break;
    }
  }

  // Tests until done; spins for the first ~millisecond (small collectives finish there), then
  // sleeps between tests so a waiting rank leaves the core to its peers.
  void wait(MPI_Request& req) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto deadline = start + timeout_;
    for (int64_t polls = 0;; ++polls) {
      int done = 0;
      detail::mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), kOpNames[static_cast<size_t>(op_)]);
      if (done) {
        op_ = Op::none;
        return;
      }
      answer_probes();
      if (clock::now() > deadline) report_timeout();
      if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 500 : 50));
      else std::this_thread::yield();
    }
  }

  // Answers pending liveness probes with {sequence number, op} of the collective this rank is in.
  void answer_probes() {
    for (;;) {
      int flag = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, kPingTag, probe_, &flag, &status);
      if (!flag) break;
      char ping = 0;
      MPI_Recv(&ping, 1, MPI_CHAR, status.MPI_SOURCE, kPingTag, probe_, MPI_STATUS_IGNORE);
      replies_.push_back({static_cast<int64_t>(waiting_seq()), static_cast<int64_t>(op_)});
      reply_requests_.emplace_back();
      MPI_Isend(replies_.back().data(), 2, MPI_INT64_T, status.MPI_SOURCE, kReplyTag, probe_, &reply_requests_.back());
    }
  }
  void finish_probe_replies() {
    for (auto& r : reply_requests_) MPI_Wait(&r, MPI_STATUS_IGNORE);
    reply_requests_.clear();
    replies_.clear();
  }

  [[noreturn]] void report_timeout() {
    using clock = std::chrono::steady_clock;
    failed_ = true;
    const int n = size_;
    // Members, not locals: a peer that answers after we gave up still writes into them (the
    // requests stay pending; the group is unusable from here on).
    auto& answer = probe_answers_;
    auto& recvs = probe_recvs_;
    auto& sends = probe_sends_;
    answer.assign(static_cast<size_t>(n), {-1, -1});
    recvs.assign(static_cast<size_t>(n), MPI_REQUEST_NULL);
    sends.assign(static_cast<size_t>(n), MPI_REQUEST_NULL);
    std::vector<int> answered(static_cast<size_t>(n), 0);
    for (int r = 0; r < n; ++r) {
      if (r == rank_) continue;
      MPI_Irecv(answer[static_cast<size_t>(r)].data(), 2, MPI_INT64_T, r, kReplyTag, probe_, &recvs[static_cast<size_t>(r)]);
      MPI_Isend(&ping_, 1, MPI_CHAR, r, kPingTag, probe_, &sends[static_cast<size_t>(r)]);
    }
    const auto window = std::min<std::chrono::milliseconds>(probe_window_, timeout_);
    const auto deadline = clock::now() + window;
    int pending = n - 1;
    while (pending > 0 && clock::now() < deadline) {
      for (int r = 0; r < n; ++r) {
        if (r == rank_ || answered[static_cast<size_t>(r)]) continue;
        int flag = 0;
        MPI_Test(&recvs[static_cast<size_t>(r)], &flag, MPI_STATUS_IGNORE);
        if (flag) answered[static_cast<size_t>(r)] = 1, --pending;
      }
      answer_probes();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string peers;
    for (int r = 0; r < n; ++r) {
      if (r == rank_) continue;
      const auto& a = answer[static_cast<size_t>(r)];
      std::string line;
      if (!answered[static_cast<size_t>(r)])
        line = str("rank ", r, " did not answer within ", window.count() / 1000.0,
                   " s (dead, stopped, or busy outside a collective)");
      else if (a[0] == static_cast<int64_t>(waiting_seq()))
        line = str("rank ", r, " waits in the same collective");
      else
        line = str("rank ", r, " waits in ", kOpNames[static_cast<size_t>(std::clamp<int64_t>(a[1], 0, 4))], " #", a[0]);
      peers += (peers.empty() ? "" : "; ") + line;
    }
    fail("dist(mpi): ", kOpNames[static_cast<size_t>(op_)], " #", waiting_seq(), " on rank ", rank_, " of ", size_,
         " timed out after ", timeout_.count() / 1000.0, " s: ", peers);
  }

  MPI_Comm comm_ = MPI_COMM_NULL, probe_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owns_init_ = false, failed_ = false;
  uint64_t seq_ = 0, waiting_ = 0;
  Op op_ = Op::none;
  std::vector<Pending> pending_;
  std::chrono::milliseconds probe_window_{std::chrono::seconds(10)};
  std::deque<std::array<int64_t, 2>> replies_;  // stable addresses, kept until their sends complete
  std::vector<std::array<int64_t, 2>> probe_answers_;  // a timed-out rank's probes (see report_timeout)
  std::vector<MPI_Request> probe_recvs_, probe_sends_;
  char ping_ = 1;
  std::vector<MPI_Request> reply_requests_;
};

// Ends every rank of the job with `code` (after a failed collective).
[[noreturn]] inline void abort_world(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace blip::dist
