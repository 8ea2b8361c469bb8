// blip/data/loader.hpp — DataLoader: batches built by background threads, in a fixed order.
//
// Contract:
// - DataLoader<Item, Batch>(size, load, collate, options). start_epoch(e) orders the indices
//   [0, size): as they are, or (shuffle) permuted by a Generator seeded with seed + e, as
//   mmengine's DefaultSampler seeds its generator; consecutive batch_size runs of that order
//   are the batches, the last one short unless drop_last drops it.
// - Distributed (world > 1): each rank takes its share of that order as mmengine's
//   DefaultSampler does: with round_up the order is repeated to a multiple of world
//   (order * k)[:total], and rank r takes positions r, r + world, ...; without it, the last
//   ranks get one sample fewer (and may get fewer batches: for evaluation, never for training,
//   where every rank must take the same number of steps). Every rank must use the same seed.
// - load(index, gen) runs on a worker; `gen` is seeded from (seed, epoch, index) alone, so an
//   item — random augmentation included — never depends on which thread made it or when.
//   collate(items in sampler order) also runs on a worker. next() hands batches out in order:
//   batch content and order are identical for every worker count (workers = 0 loads in the
//   calling thread; -1, the default, uses every core).
// - Prefetch is bounded: at most `prefetch` batches are being built or waiting; workers sleep
//   while the consumer is behind, so a training step's GEMM threads get the cores back.
// - Workers run with one OpenMP thread each (no nested teams: the model's GEMMs already use
//   OpenMP) and `worker_nice` steps below the process's priority, so they fill idle cores
//   without slowing the model when both want the CPU.
// - An exception from load or collate reaches the consumer at that batch's next(), as a
//   blip::Error naming the batch, the sample index and the original message (which names the
//   file); the batch is dropped and next() may be called again. With several failures in one
//   batch, the first sample's error is reported, whatever the timing.
// - start_epoch() mid-epoch and the destructor wait for items in progress and discard the
//   rest; the destructor joins every thread. One consumer thread only.
#pragma once

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <omp.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "blip/core/error.hpp"
#include "blip/core/rng.hpp"

namespace blip::data {

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  bool drop_last = false;
  uint64_t seed = 0;
  int workers = -1;      // -1: all cores; 0: load in the consumer's thread
  int prefetch = 0;      // batches in flight; 0: enough to keep every worker busy twice over (at least 2)
  int worker_nice = 5;   // added to the process's nice value for worker threads (0: none)
  int rank = 0, world = 1;  // the DefaultSampler shard this process loads
  bool round_up = true;     // pad each rank to the same number of samples (mmengine's default)
};

inline int default_worker_count() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// The seed of one item's Generator: splitmix64 steps over (seed, epoch, index).
inline uint64_t item_seed(uint64_t seed, int64_t epoch, int64_t index) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(index));
}

template <class Item, class Batch>
class DataLoader {
 public:
  using LoadFn = std::function<Item(int64_t index, Generator& gen)>;
  using CollateFn = std::function<Batch(std::vector<Item>&& items)>;

  DataLoader(int64_t size, LoadFn load, CollateFn collate, LoaderOptions options = {})
      : size_(size), load_(std::move(load)), collate_(std::move(collate)), o_(options) {
    BLIP_CHECK(size_ >= 0, "DataLoader: negative dataset size ", size_);
    BLIP_CHECK(o_.batch_size > 0, "DataLoader: batch_size must be positive, got ", o_.batch_size);
    BLIP_CHECK(o_.workers >= -1, "DataLoader: workers must be -1 (all cores), 0 or more, got ", o_.workers);
    BLIP_CHECK(o_.prefetch >= 0, "DataLoader: prefetch must be 0 (automatic) or more, got ", o_.prefetch);
    BLIP_CHECK(load_ && collate_, "DataLoader: load and collate functions are required");
    BLIP_CHECK(o_.world > 0 && o_.rank >= 0 && o_.rank < o_.world, "DataLoader: rank ", o_.rank, " of world ", o_.world);
    const int64_t W = o_.world;
    samples_ = W == 1 ? size_ : o_.round_up ? (size_ + W - 1) / W : (size_ - o_.rank + W - 1) / W;
    if (size_ == 0) samples_ = 0;
    workers_ = o_.workers < 0 ? default_worker_count() : o_.workers;
    const int64_t per_batch = std::max<int64_t>(1, std::min<int64_t>(o_.batch_size, workers_));
    prefetch_ = o_.prefetch > 0 ? o_.prefetch : static_cast<int>(std::max<int64_t>(2, 2 * workers_ / per_batch));
    slots_.resize(static_cast<size_t>(prefetch_));
    reset_epoch(0);
    for (int w = 0; w < workers_; ++w) threads_.emplace_back([this] { work(); });
  }

  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  ~DataLoader() {
    {
      std::lock_guard lk(m_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  int64_t size() const { return size_; }
  int64_t samples() const { return samples_; }  // this rank's samples per epoch
  int64_t batch_size() const { return o_.batch_size; }
  int workers() const { return workers_; }
  int prefetch() const { return prefetch_; }
  int64_t num_batches() const {
    return o_.drop_last ? samples_ / o_.batch_size : (samples_ + o_.batch_size - 1) / o_.batch_size;
  }
  int64_t epoch() const { return epoch_; }
  // This epoch's sample order, this rank's share (before drop_last).
  const std::vector<int64_t>& order() const { return order_; }
  // Seconds the consumer has spent blocked in next() (data time), since construction.
  double wait_seconds() const { return wait_seconds_; }

  // Starts epoch `epoch` (no-op when it is the current one and nothing was taken from it yet).
  void start_epoch(int64_t epoch) {
    std::unique_lock lk(m_);
    if (epoch == epoch_ && consumed_ == 0) return;
    total_items_ = next_item_;  // no new claims
    idle_cv_.wait(lk, [&] { return in_flight_ == 0; });
    reset_epoch(epoch);
    lk.unlock();
    work_cv_.notify_all();
  }

  // The next batch of this epoch, or nothing at its end.
  std::optional<Batch> next() {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock lk(m_);
    if (consumed_ >= batches_) return std::nullopt;
    const int64_t b = consumed_;
    if (workers_ == 0) {
      ++consumed_;
      lk.unlock();
      std::optional<Batch> value = build_inline(b);
      wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return value;
    }
    Slot& slot = slots_[static_cast<size_t>(b % prefetch_)];
    ready_cv_.wait(lk, [&] { return slot.ready && slot.batch == b; });
    std::optional<Batch> value = std::move(slot.value);
    const std::string error = std::move(slot.error);
    slot.value.reset();
    slot.ready = false;
    ++consumed_;
    lk.unlock();
    work_cv_.notify_all();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!error.empty()) fail("DataLoader: batch ", b, " of epoch ", epoch_, ": ", error);
    return value;
  }

 private:
  struct Slot {
    int64_t batch = -1;
    std::vector<std::optional<Item>> items;
    int64_t remaining = 0;
    int64_t error_pos = -1;  // position in the batch of the reported error
    std::string error;
    std::optional<Batch> value;
    bool ready = false;
  };

  // Called with the lock held (or before the threads exist).
  void reset_epoch(int64_t epoch) {
    epoch_ = epoch;
    order_.resize(static_cast<size_t>(size_));
    std::iota(order_.begin(), order_.end(), int64_t{0});
    if (o_.shuffle) {
      Generator gen(o_.seed + static_cast<uint64_t>(epoch));
      for (int64_t i = size_ - 1; i > 0; --i) std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(gen.uniform_int(i + 1))]);
    }
    if (o_.world > 1 && size_ > 0) {
      std::vector<int64_t> mine;
      mine.reserve(static_cast<size_t>(samples_));
      for (int64_t i = 0; i < samples_; ++i) mine.push_back(order_[static_cast<size_t>((o_.rank + i * o_.world) % size_)]);
      order_ = std::move(mine);
    }
    batches_ = num_batches();
    total_items_ = std::min(samples_, batches_ * o_.batch_size);
    next_item_ = 0;
    consumed_ = 0;
    for (Slot& s : slots_) s = Slot{};
  }

  int64_t batch_length(int64_t b) const { return std::min(o_.batch_size, total_items_ - b * o_.batch_size); }

  std::string describe(int64_t index, const std::exception* e) const {
    return str("sample ", index, ": ", e ? e->what() : "unknown exception");
  }

  std::optional<Item> load_item(int64_t index, int64_t epoch, std::string& error) {
    try {
      Generator gen(item_seed(o_.seed, epoch, index));
      return load_(index, gen);
    } catch (const std::exception& e) {
      error = describe(index, &e);
    } catch (...) {
      error = describe(index, nullptr);
    }
    return std::nullopt;
  }

  std::optional<Batch> build_inline(int64_t b) {
    std::vector<Item> items;
    for (int64_t p = b * o_.batch_size; p < b * o_.batch_size + batch_length(b); ++p) {
      std::string error;
      const int64_t index = order_[static_cast<size_t>(p)];
      std::optional<Item> item = load_item(index, epoch_, error);
      if (!error.empty()) fail("DataLoader: batch ", b, " of epoch ", epoch_, ": ", error);
      items.push_back(std::move(*item));
    }
    return collate_(std::move(items));
  }

  void work() {
    omp_set_num_threads(1);
    if (o_.worker_nice > 0) {
      const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
      errno = 0;
      const int current = ::getpriority(PRIO_PROCESS, tid);
      if (errno == 0) (void)::setpriority(PRIO_PROCESS, tid, std::min(19, current + o_.worker_nice));
    }
    std::unique_lock lk(m_);
    for (;;) {
      work_cv_.wait(lk, [&] {
        return stopping_ || (next_item_ < total_items_ && next_item_ / o_.batch_size < consumed_ + prefetch_);
      });
      if (stopping_) return;
      const int64_t p = next_item_++;
      const int64_t b = p / o_.batch_size, pos = p % o_.batch_size, epoch = epoch_;
      const int64_t index = order_[static_cast<size_t>(p)];
      Slot& slot = slots_[static_cast<size_t>(b % prefetch_)];
      if (pos == 0) {  // the batch's first claim sets its slot up (the slot's last batch was consumed)
        slot = Slot{};
        slot.batch = b;
        slot.items.resize(static_cast<size_t>(batch_length(b)));
        slot.remaining = batch_length(b);
      }
      ++in_flight_;
      lk.unlock();
      std::string error;
      std::optional<Item> item = load_item(index, epoch, error);
      lk.lock();
      slot.items[static_cast<size_t>(pos)] = std::move(item);
      if (!error.empty() && (slot.error_pos < 0 || pos < slot.error_pos)) {
        slot.error_pos = pos;
        slot.error = std::move(error);
      }
      if (--slot.remaining == 0) {
        if (slot.error.empty()) {
          std::vector<Item> items;
          items.reserve(slot.items.size());
          for (auto& i : slot.items) items.push_back(std::move(*i));
          slot.items.clear();
          lk.unlock();
          std::optional<Batch> value;
          std::string collate_error;
          try {
            value.emplace(collate_(std::move(items)));
          } catch (const std::exception& e) {
            collate_error = str("collate: ", e.what());
          } catch (...) {
            collate_error = "collate: unknown exception";
          }
          lk.lock();
          slot.value = std::move(value);
          slot.error = std::move(collate_error);
        }
        slot.items.clear();
        slot.ready = true;
        ready_cv_.notify_all();
      }
      if (--in_flight_ == 0) idle_cv_.notify_all();
    }
  }

  int64_t size_, samples_ = 0;
  LoadFn load_;
  CollateFn collate_;
  LoaderOptions o_;
  int workers_ = 0, prefetch_ = 2;

  std::mutex m_;
  std::condition_variable work_cv_, ready_cv_, idle_cv_;
  std::vector<std::thread> threads_;
  std::vector<Slot> slots_;
  std::vector<int64_t> order_;
  int64_t epoch_ = 0, batches_ = 0, total_items_ = 0, next_item_ = 0, consumed_ = 0, in_flight_ = 0;
  bool stopping_ = false;
  double wait_seconds_ = 0;
};

}  // namespace blip::data
