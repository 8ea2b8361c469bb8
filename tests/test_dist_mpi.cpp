// Distributed tests over MPI: run by ctest under `mpirun -np 2` and `-np 3` (tests/CMakeLists.txt).
// Collectives against what each rank can compute alone, the gather-with-gradient against the
// gradient of the global loss, the timeout's report, and k data-parallel training steps
// against one process with the whole batch.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <mpi.h>

#include <thread>

#include "blip/blip.hpp"
#include "blip/dist/collectives.hpp"
#include "blip/dist/data_parallel.hpp"
#include "blip/dist/mpi_communicator.hpp"
#include "blip/train/blip_micro_loss.hpp"
#include "blip/train/fashion_mnist_task.hpp"  // TrainBatch

using namespace blip;
using Catch::Matchers::Contains;

namespace {

dist::MpiCommunicator& world() {
  static dist::MpiCommunicator comm;
  return comm;
}

}  // namespace

TEST_CASE("the MPI world is the one mpirun started", "[dist][mpi]") {
  auto& w = world();
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  REQUIRE(size != nullptr);
  REQUIRE(w.size() == std::atoi(size));
  REQUIRE(w.size() >= 2);
  REQUIRE(std::string(w.backend()) == "mpi");
}

TEST_CASE("all_reduce, broadcast and all_gather agree with the values every rank can compute", "[dist][mpi]") {
  auto& w = world();
  const int R = w.rank(), W = w.size();
  // sum and mean, float, double and int64
  Tensor<float> f = Tensor<float>::from_vector({3}, {float(R), float(2 * R), 1.0f});
  dist::all_reduce_(w, f);
  const float tri = static_cast<float>(W * (W - 1) / 2);
  REQUIRE(f.to_vector() == std::vector<float>{tri, 2 * tri, float(W)});
  std::vector<double> d{double(R) + 0.5};
  w.all_reduce(d.data(), 1, dist::Scalar::float64, dist::ReduceOp::mean);
  REQUIRE(d[0] == Approx((W - 1) / 2.0 + 0.5));
  std::vector<int64_t> i{int64_t{1} << 40, R};
  w.all_reduce(i.data(), 2, dist::Scalar::int64, dist::ReduceOp::sum);
  REQUIRE(i[0] == W * (int64_t{1} << 40));
  // broadcast from the last rank
  Tensor<int64_t> b = Tensor<int64_t>::from_vector({2}, {R, 7 * R});
  dist::broadcast_(w, b, W - 1);
  REQUIRE(b.to_vector() == std::vector<int64_t>{W - 1, 7 * (W - 1)});
  // all_gather_concat with rank r holding r rows (rank 0 none) of width 2
  std::vector<float> mine;
  for (int j = 0; j < R; ++j) mine.insert(mine.end(), {float(R), float(j)});
  const Tensor<float> x = R == 0 ? Tensor<float>::empty({0, 2}) : Tensor<float>::from_vector({R, 2}, mine);
  const Tensor<float> all = dist::all_gather_concat(w, x);
  std::vector<float> expected;
  for (int r = 0; r < W; ++r)
    for (int j = 0; j < r; ++j) expected.insert(expected.end(), {float(r), float(j)});
  REQUIRE(all.shape() == Shape{W * (W - 1) / 2, 2});
  REQUIRE(all.to_vector() == expected);
  // host vectors of different lengths
  const std::vector<int64_t> ids = dist::all_gather_values(w, std::vector<int64_t>(static_cast<size_t>(R + 1), R));
  std::vector<int64_t> want;
  for (int r = 0; r < W; ++r) want.insert(want.end(), static_cast<size_t>(r + 1), r);
  REQUIRE(ids == want);
}

TEST_CASE("a shape mismatch across ranks is an error naming the rank, on every rank", "[dist][mpi]") {
  auto& w = world();
  const Tensor<float> x = Tensor<float>::zeros({2, w.rank() == 1 ? 3 : 4});
  REQUIRE_THROWS_WITH(dist::all_gather_concat(w, x), Contains("rank 1 has shape [2, 3]") || Contains("rank 1 has [2, 3]"));
}

TEST_CASE("all_gather_with_grad: backward sums the ranks' gradients and keeps this rank's slice", "[dist][mpi][grad]") {
  auto& w = world();
  const int R = w.rank(), W = w.size();
  // Rank r owns x_r [2, 3]; its loss is sum(c_r * gathered) with c_r known to every rank, so the
  // global loss is sum_r sum(c_r * X) and d/dx_r = (sum_r c_r)[rows of r].
  Generator gx(7 + static_cast<uint64_t>(R));
  Tensor<double> x = randn<double>({2, 3}, gx);
  x.set_requires_grad(true);
  auto coeff = [&](int r) {
    Generator g(100 + static_cast<uint64_t>(r));
    return randn<double>({2 * W, 3}, g);
  };
  const Tensor<double> gathered = dist::all_gather_with_grad(w, x);
  REQUIRE(gathered.shape() == Shape{2 * W, 3});
  sum(mul(gathered, coeff(R))).backward();
  std::vector<double> expected(6, 0.0);
  for (int r = 0; r < W; ++r) {
    const auto c = coeff(r).to_vector();
    for (int k = 0; k < 6; ++k) expected[static_cast<size_t>(k)] += c[static_cast<size_t>(6 * R + k)];
  }
  const auto g = x.grad().to_vector();
  for (int k = 0; k < 6; ++k) REQUIRE(g[static_cast<size_t>(k)] == Approx(expected[static_cast<size_t>(k)]).epsilon(1e-12));

  // Finite differences of the global loss, every rank perturbing its own element 0 in turn.
  NoGradGuard no_grad;
  const double h = 1e-6;
  for (int owner = 0; owner < W; ++owner) {
    auto global_loss = [&](double delta) {
      Tensor<double> y = clone(x.detach());
      if (R == owner) y.data()[0] += delta;
      double l = sum(mul(dist::all_gather_concat(w, y), coeff(R))).item();
      w.all_reduce(&l, 1, dist::Scalar::float64, dist::ReduceOp::sum);
      return l;
    };
    const double fd = (global_loss(h) - global_loss(-h)) / (2 * h);
    double analytic = R == owner ? g[0] : 0.0;
    w.all_reduce(&analytic, 1, dist::Scalar::float64, dist::ReduceOp::sum);
    REQUIRE(fd == Approx(analytic).epsilon(1e-6));
  }
}

TEST_CASE("a collective that a peer never joins times out naming that peer", "[dist][mpi][timeout]") {
  auto& w = world();
  dist::MpiCommunicator side;  // a second group: the failed one is not reused
  side.set_timeout(std::chrono::milliseconds(400));
  side.set_probe_window(std::chrono::milliseconds(1500));
  const int late = side.size() - 1;
  if (side.rank() != late) {
    std::string message;
    try {
      side.barrier();
    } catch (const Error& e) {
      message = e.what();
    }
    REQUIRE_THAT(message, Contains("barrier #1") && Contains("timed out after 0.4 s") &&
                              Contains("rank " + std::to_string(late) + " did not answer"));
    if (side.size() > 2 && side.rank() == 0) REQUIRE_THAT(message, Contains("rank 1 waits in the same collective"));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(4000));  // busy outside any collective
    side.set_timeout(std::chrono::seconds(30));
    side.barrier();  // completes with the others' requests, still pending on their side
  }
  w.barrier();
}

namespace {

using Model = StandardBlip<float, Cpu>;

BlipConfig equivalence_config() {
  BlipConfig c = presets::tiny();
  c.queue_size = 16;
  return c;
}

struct GlobalBatch {
  Tensor<float> images;
  Tensor<int64_t> ids, mask;
  std::vector<int64_t> image_ids;
};

GlobalBatch make_batch(int64_t n, uint64_t seed) {
  Generator g(seed);
  const int64_t L = 8;
  std::vector<int64_t> ids, mask, image_ids;
  for (int64_t b = 0; b < n; ++b) {
    ids.push_back(101);
    const int64_t len = 4 + g.uniform_int(4);
    for (int64_t j = 1; j < L; ++j) ids.push_back(j < len ? 1 + g.uniform_int(100) : 0);
    for (int64_t j = 0; j < L; ++j) mask.push_back(j < len ? 1 : 0);
    image_ids.push_back(b / 2);  // pairs of captions of one image: same-id masking across ranks
  }
  return {randn<float>({n, 3, 32, 32}, g), Tensor<int64_t>::from_vector({n, L}, ids),
          Tensor<int64_t>::from_vector({n, L}, mask), image_ids};
}

train::TrainBatch<float, Cpu> rows_of(const GlobalBatch& g, int64_t start, int64_t n) {
  return {contiguous(narrow(g.images, 0, start, n)),
          {contiguous(narrow(g.ids, 0, start, n)), contiguous(narrow(g.mask, 0, start, n))},
          std::vector<int64_t>(g.image_ids.begin() + start, g.image_ids.begin() + start + n)};
}

// Deterministic and robust to rounding: the first valid candidate after the row, cyclically.
int64_t first_valid_after(NegativeKind, int64_t row, const std::vector<float>& weights) {
  const int64_t C = static_cast<int64_t>(weights.size());
  for (int64_t k = 1; k <= C; ++k) {
    const int64_t j = (row + k) % C;
    if (weights[static_cast<size_t>(j)] > 0) return j;
  }
  return row;
}

// Every parameter, momentum copy and queue, by name.
std::vector<std::pair<std::string, std::vector<float>>> named_state(Model& m) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  m.visit_parameters([&](const std::string& name, Parameter<float, Cpu>& p) { out.emplace_back(name, p.value().to_vector()); });
  m.visit_momentum_parameters([&](const std::string& name, const std::string&, Parameter<float, Cpu>& p) {
    out.emplace_back(name, p.momentum().to_vector());
  });
  out.emplace_back("image_queue", m.head.image_queue.to_vector());
  out.emplace_back("text_queue", m.head.text_queue.to_vector());
  return out;
}

// The attention key biases are the one exception to "equal within 1e-5": softmax is
// shift-invariant, so their exact gradient is 0 and what backward returns is rounding noise,
// which AdamW's normalisation turns into steps of up to lr (docs/distributed.md).
struct StateDifference {
  double worst = 0, worst_key_bias = 0;
  std::string where;
};
StateDifference compare_states(Model& x, Model& y, int64_t E) {
  auto key_bias = [&](const std::string& name, size_t k) {
    const bool fused_qkv = name.find("attn.qkv.bias") != std::string::npos;
    return (fused_qkv && k >= static_cast<size_t>(E) && k < static_cast<size_t>(2 * E)) ||
           name.find("key.bias") != std::string::npos;
  };
  const auto a = named_state(x), b = named_state(y);
  REQUIRE(a.size() == b.size());
  StateDifference d;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t k = 0; k < a[t].second.size(); ++k) {
      const double v = std::abs(double(a[t].second[k]) - double(b[t].second[k]));
      if (key_bias(a[t].first, k)) {
        d.worst_key_bias = std::max(d.worst_key_bias, v);
      } else if (v > d.worst) {
        d.worst = v;
        d.where = a[t].first + "[" + std::to_string(k) + "]";
      }
    }
  return d;
}

}  // namespace

TEST_CASE("k data-parallel steps on W ranks x B equal one process with batch W*B", "[dist][mpi][train]") {
  auto& w = world();
  const int W = w.size(), R = w.rank();
  const int64_t B = 3, steps = 3;
  train::TrainConfig tc;
  tc.total_steps = steps;
  tc.optimizer.lr = 1e-3;
  tc.alpha_warmup_steps = 2;
  tc.overlap_gradients = train::TrainConfig::Overlap::on;
  tc.bucket_elements = 4096;  // many buckets, started during the backward pass between its collectives

  // The distributed run: rank 0's initial weights everywhere (other ranks start elsewhere).
  Model dist_model(equivalence_config());
  {
    Generator init(R == 0 ? 5 : 900 + static_cast<uint64_t>(R));
    dist_model.init_weights(init);
    dist_model.copy_params();
  }
  dist::broadcast_model(w, dist_model);
  Model single(equivalence_config());
  {
    Generator init(5);
    single.init_weights(init);
    single.copy_params();
  }
  REQUIRE(dist::state_checksum(dist_model) == dist::state_checksum(single));

  train::Trainer<float, Cpu> dist_trainer(named_parameters(dist_model), tc);
  dist_trainer.set_communicator(w);
  train::Trainer<float, Cpu> single_trainer(named_parameters(single), tc);
  int64_t step_d = 0, step_s = 0;
  const auto dist_micro = train::blip_micro_loss(
      dist_model, [&] { return rows_of(make_batch(W * B, 40 + static_cast<uint64_t>(step_d++)), R * B, B); },
      first_valid_after, w);
  const auto single_micro = train::blip_micro_loss(
      single, [&] { return rows_of(make_batch(W * B, 40 + static_cast<uint64_t>(step_s++)), 0, W * B); },
      first_valid_after);
  for (int64_t s = 0; s < steps; ++s) {
    const auto d = dist_trainer.step(dist_micro);
    const auto o = single_trainer.step(single_micro);
    INFO("step " << s << " dist loss " << d.loss << " single " << o.loss);
    REQUIRE(d.samples == o.samples);
    for (size_t t = 0; t < d.terms.size(); ++t) REQUIRE(d.terms[t].second == Approx(o.terms[t].second).margin(1e-5));
  }
  const StateDifference diff = compare_states(dist_model, single, equivalence_config().vision.embed_dims);
  INFO("largest parameter / momentum / queue difference " << diff.worst << " at " << diff.where << "; key biases "
                                                            << diff.worst_key_bias);
  REQUIRE(diff.worst < 1e-5);
  REQUIRE(diff.worst_key_bias <= 2 * tc.optimizer.lr * steps);
  REQUIRE(dist_model.head.idx_queue.to_vector() == single.head.idx_queue.to_vector());
  REQUIRE(dist_model.head.queue_ptr.item() == single.head.queue_ptr.item());
  // The overlapped reduction gives what reducing after the backward pass gives (bit for bit at
  // 2 ranks; at 3 the bucket layouts may sum in another order).
  {
    Model after(equivalence_config());
    Generator init(5);
    after.init_weights(init);
    after.copy_params();
    train::TrainConfig no_overlap = tc;
    no_overlap.overlap_gradients = train::TrainConfig::Overlap::off;
    train::Trainer<float, Cpu> t(named_parameters(after), no_overlap);
    t.set_communicator(w);
    int64_t step_a = 0;
    const auto micro = train::blip_micro_loss(
        after, [&] { return rows_of(make_batch(W * B, 40 + static_cast<uint64_t>(step_a++)), R * B, B); },
        first_valid_after, w);
    for (int64_t s = 0; s < steps; ++s) t.step(micro);
    const StateDifference d = compare_states(after, dist_model, equivalence_config().vision.embed_dims);
    INFO("overlapped vs after the backward pass: " << d.worst << " at " << d.where << "; key biases " << d.worst_key_bias);
    REQUIRE(d.worst < 1e-6);
    REQUIRE(d.worst_key_bias <= 2 * tc.optimizer.lr * steps);
  }
  // Every rank holds bit-identical state (the momentum update included).
  const std::vector<int64_t> sums = dist::all_gather_values(w, std::vector<int64_t>{dist::state_checksum(dist_model)});
  for (int64_t c : sums) REQUIRE(c == sums[0]);
}

int main(int argc, char** argv) {
  world();  // MPI_Init before Catch runs; finalised when the static is destroyed
  const int failed = Catch::Session().run(argc, argv);
  int any = failed;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any == 0 ? 0 : 1;
}
