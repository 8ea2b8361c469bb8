// dist_step — how much of a data-parallel BLIP training step the gradient all-reduce takes, and
// how much of it the overlap with the backward pass hides. Run under mpirun (docs/performance.md):
//   mpirun -np 2 --bind-to none bench/dist_step [img_size] [batch_per_rank] [steps]
// BLIP-base widths (224M trainable parameters; the image size only changes the compute), one
// thread per rank unless OMP_NUM_THREADS says otherwise. Per mode (overlapped, after backward):
// median step time and median seconds the step waited for the gradients; and the time of one
// blocking all-reduce of all the gradients (the communication there is to hide).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "blip/blip.hpp"
#include "blip/dist/data_parallel.hpp"
#include "blip/dist/mpi_communicator.hpp"
#include "blip/train/blip_micro_loss.hpp"
#include "blip/train/fashion_mnist_task.hpp"

using namespace blip;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  dist::MpiCommunicator comm;
  const int64_t img = argc > 1 ? std::atoll(argv[1]) : 128, B = argc > 2 ? std::atoll(argv[2]) : 4,
                steps = argc > 3 ? std::atoll(argv[3]) : 5;
  BlipConfig c = presets::blip_base();
  c.vision.img_size = img;
  const int64_t L = 35;
  Generator data(7 + static_cast<uint64_t>(comm.rank()));
  std::vector<int64_t> ids(static_cast<size_t>(B * L), 1037), image_ids;
  for (int64_t b = 0; b < B; ++b) ids[static_cast<size_t>(b * L)] = 101, image_ids.push_back(comm.rank() * B + b);
  const train::TrainBatch<float, Cpu> batch{randn<float>({B, 3, img, img}, data),
                                            {Tensor<int64_t>::from_vector({B, L}, ids), full<int64_t, Cpu>({B, L}, 1)},
                                            image_ids};
  int64_t params = 0;
  for (bool overlap : {true, false}) {
    StandardBlip<float, Cpu> model(c);
    Generator init(1);
    model.init_weights(init);
    model.copy_params();
    train::TrainConfig tc;
    tc.total_steps = steps + 1;
    tc.overlap_gradients = overlap ? train::TrainConfig::Overlap::on : train::TrainConfig::Overlap::off;
    train::Trainer<float, Cpu> trainer(named_parameters(model), tc);
    trainer.set_communicator(comm);
    params = 0;
    for (auto& [name, p] : trainer.optimizer().params()) params += p->value().numel();
    const auto micro = train::blip_micro_loss(model, [&] { return batch; }, {}, comm);
    std::vector<double> step_s, wait_s;
    for (int64_t s = 0; s <= steps; ++s) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      const auto stats = trainer.step(micro);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s == 0) continue;  // warm-up (first allocation of buckets and primitives)
      step_s.push_back(dt);
      wait_s.push_back(stats.comm_seconds);
    }
    if (comm.is_main())
      std::printf("{\"mode\": \"%s\", \"ranks\": %d, \"img_size\": %lld, \"batch_per_rank\": %lld, \"steps\": %lld, "
                  "\"median_step_s\": %.3f, \"median_gradient_wait_s\": %.3f}\n",
                  overlap ? "overlapped" : "after_backward", comm.size(), static_cast<long long>(img),
                  static_cast<long long>(B), static_cast<long long>(steps), median(step_s), median(wait_s));
  }
  // One blocking all-reduce of every gradient, as one buffer.
  std::vector<float> grads(static_cast<size_t>(params), 1.0f);
  std::vector<double> reduce_s;
  for (int r = 0; r < 4; ++r) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    comm.all_reduce(grads.data(), params, dist::Scalar::float32, dist::ReduceOp::mean);
    reduce_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (comm.is_main())
    std::printf("{\"all_reduce_of_all_gradients\": {\"floats\": %lld, \"median_s\": %.3f}}\n",
                static_cast<long long>(params), median(reduce_s));
  return 0;
}
