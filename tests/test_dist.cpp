// dist/ in one process: the single-process communicator, shards, the DefaultSampler split of
// the DataLoader, and that the data-parallel code paths reduce to the plain ones at size 1.
// The multi-rank tests run under mpirun (test_dist_mpi.cpp).
#include <catch2/catch.hpp>

#include <set>

#include "blip/blip.hpp"
#include "blip/data/loader.hpp"
#include "blip/dist/collectives.hpp"
#include "blip/dist/data_parallel.hpp"

using namespace blip;
using Catch::Matchers::Contains;

TEST_CASE("the single-process communicator: collectives are identities", "[dist]") {
  dist::Communicator& c = dist::single_process();
  REQUIRE(c.rank() == 0);
  REQUIRE(c.size() == 1);
  Generator g(3);
  Tensor<float> x = randn<float>({4, 5}, g);
  const auto before = x.to_vector();
  dist::all_reduce_(c, x, dist::ReduceOp::mean);
  REQUIRE(x.to_vector() == before);
  REQUIRE(dist::all_gather_concat(c, x).to_vector() == before);
  REQUIRE(dist::all_gather_values(c, std::vector<int64_t>{4, 2}) == std::vector<int64_t>{4, 2});
  std::vector<float> out(20);
  c.all_gather_v(x.data(), 20, out.data(), {20}, dist::Scalar::float32);
  REQUIRE(out == before);
  REQUIRE_THROWS_WITH(c.all_gather_v(x.data(), 20, out.data(), {10, 10}, dist::Scalar::float32), Contains("counts"));
  REQUIRE_THROWS_WITH(c.set_timeout(std::chrono::milliseconds(0)), Contains("timeout must be positive"));
  // with grad: the gradient passes straight through
  Tensor<double> y = randn<double>({3, 2}, g);
  y.set_requires_grad(true);
  sum(mul(dist::all_gather_with_grad(c, y), y.detach())).backward();
  REQUIRE(y.grad().to_vector() == y.detach().to_vector());
}

TEST_CASE("shard_of splits n items into contiguous blocks that join in rank order", "[dist]") {
  for (int64_t n : {0, 1, 7, 10, 33})
    for (int W : {1, 2, 3, 5}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < W; ++r) {
        const dist::Shard s = dist::shard_of(n, r, W);
        REQUIRE(s.begin == next);
        next = s.end;
        smallest = std::min(smallest, s.size());
        largest = std::max(largest, s.size());
      }
      REQUIRE(next == n);
      REQUIRE(largest - smallest <= 1);
    }
  REQUIRE_THROWS_WITH(dist::shard_of(5, 3, 3), Contains("rank 3 of 3"));
}

TEST_CASE("the DataLoader's distributed split is mmengine's DefaultSampler", "[dist][data]") {
  const int64_t N = 10;
  auto positions = [&](int rank, int world, bool shuffle, bool round_up) {
    data::LoaderOptions o;
    o.batch_size = 4;
    o.workers = 0;
    o.shuffle = shuffle;
    o.seed = 17;
    o.rank = rank;
    o.world = world;
    o.round_up = round_up;
    data::DataLoader<int64_t, std::vector<int64_t>> loader(
        N, [](int64_t i, Generator&) { return i; }, [](std::vector<int64_t>&& v) { return v; }, o);
    loader.start_epoch(2);
    std::vector<int64_t> seen;
    while (auto b = loader.next()) seen.insert(seen.end(), b->begin(), b->end());
    REQUIRE(static_cast<int64_t>(seen.size()) == loader.samples());
    return seen;
  };
  for (bool shuffle : {false, true}) {
    const std::vector<int64_t> order = positions(0, 1, shuffle, true);  // the whole epoch's order
    REQUIRE(std::set<int64_t>(order.begin(), order.end()).size() == N);
    // round_up: (order * 2)[:12], rank r takes positions r, r + 3, ...
    for (int r = 0; r < 3; ++r) {
      std::vector<int64_t> want;
      for (int64_t p = r; p < 12; p += 3) want.push_back(order[static_cast<size_t>(p % N)]);
      REQUIRE(positions(r, 3, shuffle, true) == want);
    }
    // without round_up: a partition of the epoch
    std::multiset<int64_t> all;
    for (int r = 0; r < 3; ++r) {
      const auto mine = positions(r, 3, shuffle, false);
      all.insert(mine.begin(), mine.end());
    }
    REQUIRE(all == std::multiset<int64_t>(order.begin(), order.end()));
  }
}

TEST_CASE("state_checksum covers the parameters, momentum copies and queues", "[dist]") {
  StandardBlip<float, Cpu> model(presets::tiny());
  Generator g(2);
  model.init_weights(g);
  model.copy_params();
  const uint32_t before = dist::state_checksum(model);
  REQUIRE(dist::state_checksum(model) == before);
  // a changed queue column changes the checksum
  NoGradGuard no_grad;
  const float kept = model.head.image_queue.data()[0];
  model.head.image_queue.data()[0] += 1.0f;
  REQUIRE(dist::state_checksum(model) != before);
  model.head.image_queue.data()[0] = kept;
  REQUIRE(dist::state_checksum(model) == before);
  Tensor<float> m = model.vision_neck.weight.momentum();
  m.data()[0] += 1.0f;
  REQUIRE(dist::state_checksum(model) != before);
}

TEST_CASE("a leaf's post-accumulate hook runs once, after its gradient is complete", "[dist][autograd]") {
  Tensor<double> x = Tensor<double>::from_vector({2}, {1.0, -2.0});
  Tensor<double> unused = Tensor<double>::from_vector({1}, {4.0});
  x.set_requires_grad(true);
  unused.set_requires_grad(true);
  std::vector<std::vector<double>> seen;
  int unused_calls = 0;
  x.autograd()->post_accumulate = [&] { seen.push_back(x.grad().to_vector()); };
  unused.autograd()->post_accumulate = [&] { ++unused_calls; };
  // x reaches the loss through three paths of different depths
  const Tensor<double> loss = add(add(sum(scale(x, 2.0)), sum(mul(x, x))), sum(scale(exp(x), 1.0)));
  loss.backward();
  REQUIRE(seen.size() == 1);
  REQUIRE(seen[0][0] == Approx(2.0 + 2.0 * 1.0 + std::exp(1.0)));
  REQUIRE(seen[0][1] == Approx(2.0 - 4.0 + std::exp(-2.0)));
  REQUIRE(unused_calls == 0);  // not in this graph
}
