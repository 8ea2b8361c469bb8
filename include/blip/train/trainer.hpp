// blip/train/trainer.hpp — Trainer: one optimiser step at a time, as mmpretrain's BLIP
// retrieval training runs it (AdamW, cosine learning rate, the head's alpha warm-up).
//
// Contract:
// - TrainConfig defaults mirror configs/blip/blip-base_8xb32_retrieval.py: AdamW lr 2e-5,
//   weight decay 0.04 on every parameter (no paramwise settings), cosine annealing to 0, and
//   WarmupParamHook(alpha, warmup_epochs=2 of 6): alpha = alpha0 * min(1, step / alpha_warmup_steps).
//   The optional linear learning-rate warm-up (warmup_steps) is ours (mmengine LinearLR).
// - step(micro_loss): zero the gradients; for micro = 0..accumulation-1 call micro_loss(ctx),
//   back-propagate (sum of its terms) / accumulation; then AdamW with lr_at(step). So the
//   gradient of an accumulated step is the mean of the micro-batches' gradients, which equals
//   one large batch's exactly when the loss is a per-sample mean and nothing else depends on
//   the batch split (BLIP's queue, momentum update and hard negatives do).
// - Non-finite losses throw blip::Error naming the step and term before any parameter moves.
// - Data parallel (set_communicator with size() > 1): each gradient becomes the mean over the
//   ranks before AdamW, so every rank takes the same step: overlapped with the last micro-batch's
//   backward pass (dist::GradientReducer) or after it (dist::all_reduce_gradients), as
//   TrainConfig::overlap_gradients chooses. StepStats' terms are the ranks' mean, samples their
//   sum, and comm_seconds the gradient communication the step waited for.
#pragma once

#include <chrono>
#include <cmath>
#include <memory>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "blip/dist/data_parallel.hpp"
#include "blip/optim/adamw.hpp"
#include "blip/optim/schedule.hpp"
#include "blip/ops/index.hpp"

namespace blip::train {

struct TrainConfig {
  int64_t total_steps = 1;   // optimiser steps in the whole run (the schedules' length)
  int64_t accumulation = 1;  // micro-batches per optimiser step
  AdamWOptions optimizer{.lr = 2e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.04};
  int64_t warmup_steps = 0;           // linear lr warm-up (0 in the reference config)
  double warmup_start_factor = 0.0;
  double eta_min = 0.0;
  double alpha = 0.4;                 // the ITC head's distillation weight once warmed up
  int64_t alpha_warmup_steps = 0;     // the reference: 2 of 6 epochs, i.e. total_steps / 3
  // Data parallel: all-reduce gradient buckets during the backward pass (on), after it (off), or
  // automatic: overlapped where the transport runs beside the compute (NCCL on a GPU), after the
  // backward pass on host memory (MPI), where the reduction's copies and sums take the cores the
  // backward pass needs (measured: docs/performance.md, "Data-parallel step").
  enum class Overlap { automatic, on, off } overlap_gradients = Overlap::automatic;
  int64_t bucket_elements = int64_t{1} << 22;  // gradient floats per all-reduce bucket
};

// The reference's alpha warm-up: alpha0 * min(1, step / warmup_steps) before each step.
inline double warmup_alpha(double alpha0, int64_t step, int64_t warmup_steps) {
  if (warmup_steps <= 0) return alpha0;
  return alpha0 * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup_steps));
}

// What a micro-batch's loss function is told.
struct StepContext {
  int64_t step = 0;   // optimiser step (0-based)
  int64_t micro = 0;  // micro-batch within the step
  double lr = 0, alpha = 0;
};

// Named scalar loss terms (summed for the gradient) and how many samples produced them.
template <Differentiable T, Device D>
struct LossTerms {
  std::vector<std::pair<std::string, Tensor<T, D>>> terms;
  int64_t samples = 0;
};

struct StepStats {
  int64_t step = 0;  // the step just taken
  double lr = 0, alpha = 0, loss = 0;
  std::vector<std::pair<std::string, double>> terms;  // each term's mean over the micro-batches
  int64_t samples = 0;
  double comm_seconds = 0;  // data parallel: time waiting for the gradients' all-reduce
};

template <Differentiable T = float, Device D = Cpu>
class Trainer {
 public:
  using MicroLoss = std::function<LossTerms<T, D>(const StepContext&)>;

  Trainer(std::vector<NamedParameter<T, D>> params, TrainConfig config)
      : config_(config), optimizer_(std::move(params), config.optimizer) {
    BLIP_CHECK(config.total_steps > 0 && config.accumulation > 0 && config.warmup_steps >= 0 &&
                   config.warmup_steps <= config.total_steps && config.alpha_warmup_steps >= 0,
               "Trainer: invalid config (total_steps ", config.total_steps, ", accumulation ", config.accumulation,
               ", warmup_steps ", config.warmup_steps, ", alpha_warmup_steps ", config.alpha_warmup_steps, ")");
  }

  const TrainConfig& config() const { return config_; }
  void set_communicator(dist::Communicator& comm) {
    comm_ = &comm;
    reducer_.reset();
    using Overlap = TrainConfig::Overlap;
    const bool overlap = config_.overlap_gradients == Overlap::on ||
                         (config_.overlap_gradients == Overlap::automatic && comm.memory() == dist::Memory::cuda);
    if (comm.size() > 1 && overlap)
      reducer_ = std::make_unique<dist::GradientReducer<T, D>>(comm, optimizer_.params(), config_.bucket_elements);
  }
  dist::Communicator& communicator() const { return *comm_; }
  AdamW<T, D>& optimizer() { return optimizer_; }
  int64_t step_index() const { return step_; }
  void set_step_index(int64_t step) {  // resume
    BLIP_CHECK(step >= 0 && step <= config_.total_steps, "Trainer: step ", step, " is outside [0, ",
               config_.total_steps, "]");
    step_ = step;
  }
  bool done() const { return step_ >= config_.total_steps; }

  // Re-plans the run's length (e.g. from a measured step time) before the cosine part starts.
  void set_total_steps(int64_t total, int64_t alpha_warmup_steps) {
    BLIP_CHECK(total >= std::max<int64_t>(step_, 1) && total >= config_.warmup_steps && alpha_warmup_steps >= 0,
               "Trainer: total_steps ", total, " must cover the ", step_, " steps taken and the ",
               config_.warmup_steps, " warm-up steps");
    config_.total_steps = total;
    config_.alpha_warmup_steps = alpha_warmup_steps;
  }

  double lr_at(int64_t step) const {
    return CosineSchedule{.base_lr = config_.optimizer.lr, .total_steps = config_.total_steps,
                          .warmup_steps = config_.warmup_steps, .warmup_start_factor = config_.warmup_start_factor,
                          .eta_min = config_.eta_min}
        .lr_at(step);
  }
  double alpha_at(int64_t step) const { return warmup_alpha(config_.alpha, step, config_.alpha_warmup_steps); }

  StepStats step(const MicroLoss& micro_loss) {
    BLIP_CHECK(!done(), "Trainer::step: all ", config_.total_steps, " steps are done");
    StepStats stats;
    stats.step = step_;
    stats.lr = lr_at(step_);
    stats.alpha = alpha_at(step_);
    optimizer_.zero_grad();
    const T inv = static_cast<T>(1.0 / static_cast<double>(config_.accumulation));
    for (int64_t micro = 0; micro < config_.accumulation; ++micro) {
      LossTerms<T, D> out = micro_loss(StepContext{.step = step_, .micro = micro, .lr = stats.lr, .alpha = stats.alpha});
      BLIP_CHECK(!out.terms.empty(), "Trainer::step: the loss function returned no terms at step ", step_);
      const std::vector<double> values = term_values(out);
      check_finite_everywhere(out, values, micro);
      Tensor<T, D> total;
      for (size_t i = 0; i < out.terms.size(); ++i) {
        const auto& [name, value] = out.terms[i];
        const double v = values[i];
        if (micro == 0) stats.terms.emplace_back(name, 0.0);
        BLIP_CHECK(i < stats.terms.size() && stats.terms[i].first == name, "Trainer::step: micro-batch ", micro,
                   " returned term ", name, ", not the terms of micro-batch 0");
        stats.terms[i].second += v / static_cast<double>(config_.accumulation);
        total = total.defined() ? add(total, value) : value;
      }
      stats.samples += out.samples;
      if (reducer_ && micro + 1 == config_.accumulation) reducer_->prepare();
      scale(total, inv).backward();
    }
    if (comm_->size() > 1) {
      if (reducer_) {
        stats.comm_seconds = reducer_->finish();
      } else {
        const auto start = std::chrono::steady_clock::now();
        dist::all_reduce_gradients(*comm_, optimizer_.params(), config_.bucket_elements);
        stats.comm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      std::vector<double> values;
      for (const auto& term : stats.terms) values.push_back(term.second);
      dist::all_reduce_host(*comm_, values.data(), static_cast<int64_t>(values.size()), dist::Scalar::float64,
                            dist::ReduceOp::mean);
      for (size_t i = 0; i < values.size(); ++i) stats.terms[i].second = values[i];
      dist::all_reduce_host(*comm_, &stats.samples, 1, dist::Scalar::int64, dist::ReduceOp::sum);
    }
    for (const auto& [name, v] : stats.terms) stats.loss += v;
    optimizer_.set_lr(stats.lr);
    optimizer_.step();
    ++step_;
    return stats;
  }

 private:
  // The terms' values on the host, read in one exchange (one wait for a device per micro-batch).
  static std::vector<double> term_values(const LossTerms<T, D>& out) {
    std::vector<Tensor<T, D>> flat;
    for (const auto& term : out.terms) {
      BLIP_CHECK(term.second.numel() == 1, "Trainer::step: loss term ", term.first, " has shape ", term.second.shape(),
                 ", not one value");
      flat.push_back(reshape(term.second.detach(), {1}));
    }
    const std::vector<T> v = concat(flat, 0).to_vector();
    return std::vector<double>(v.begin(), v.end());
  }

  // A non-finite term stops every rank together (one rank alone would leave the others waiting
  // in the backward pass's collectives until their timeout).
  void check_finite_everywhere(const LossTerms<T, D>& out, const std::vector<double>& values, int64_t micro) const {
    std::string bad;
    for (size_t i = 0; i < values.size(); ++i)
      if (!std::isfinite(values[i]) && bad.empty()) bad = str(out.terms[i].first, " is ", values[i]);
    if (comm_->size() == 1) {
      BLIP_CHECK(bad.empty(), "Trainer::step: ", bad, " at step ", step_, " (micro-batch ", micro, ")");
      return;
    }
    const std::vector<int64_t> flags = dist::all_gather_values(*comm_, std::vector<int64_t>{bad.empty() ? 0 : 1});
    std::vector<int64_t> ranks;
    for (size_t r = 0; r < flags.size(); ++r)
      if (flags[r]) ranks.push_back(static_cast<int64_t>(r));
    BLIP_CHECK(ranks.empty(), "Trainer::step: a loss term is not finite on rank(s) ", ranks, " at step ", step_,
               " (micro-batch ", micro, ")", bad.empty() ? std::string() : "; here " + bad);
  }

  TrainConfig config_;
  AdamW<T, D> optimizer_;
  dist::Communicator* comm_ = &dist::single_process();
  std::unique_ptr<dist::GradientReducer<T, D>> reducer_;
  int64_t step_ = 0;
};

}  // namespace blip::train
