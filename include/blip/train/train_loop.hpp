// blip/train/train_loop.hpp — run_training(): steps a Trainer to the end (or a time budget)
// with a progress bar, a JSONL metrics log and periodic checkpoints.
//
// Contract:
// - Each step's StepStats goes to the progress bar (step/total, loss terms, images/s, ETA)
//   and, every log_every steps and at the last one, to the metrics log as one JSON object per
//   line: {"step", "lr", "alpha", "loss", <term>..., "images_per_s", "elapsed_s"} ("step" counts
//   steps done, 1-based). The log is appended to (a resumed run continues it) and flushed per line.
// - time_budget_s > 0 stops after the step that crosses the budget; after calibrate_steps
//   steps, and every replan_every steps after that, the run's length is re-planned from the
//   recent step time (Trainer::set_total_steps, alpha warm-up kept at alpha_warmup_fraction of
//   the run) so the cosine schedule ends about when the time is up.
// - stop_at_step > 0 ends the call after that step without changing the plan (the schedules
//   still run to total_steps), so a later resume continues the same run.
// - checkpoint(step_done) is called every checkpoint_every steps and after the last step.
// - Data parallel, the time-budget decisions (re-plan, stop) are rank 0's, broadcast, so every
//   rank runs the same steps.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "blip/io/atomic_file.hpp"
#include "blip/train/trainer.hpp"
#include "blip/util/progress.hpp"

namespace blip::train {

struct LoopOptions {
  std::string metrics_path;  // empty: no log
  int64_t log_every = 10;
  int64_t checkpoint_every = 0;  // 0: only at the end (when a checkpoint function is given)
  double time_budget_s = 0;      // 0: run all steps
  int64_t stop_at_step = 0;      // > 0: stop once this many steps are done (an interruption the plan does not know)
  int64_t calibrate_steps = 20;  // steps timed before the first re-plan to the budget
  int64_t replan_every = 100;    // later re-plans, from the step time since the previous one
  double alpha_warmup_fraction = 1.0 / 3.0;
  bool quiet = false;
  std::string label = "train";
};

struct LoopResult {
  int64_t steps = 0;  // steps done in this call
  double seconds = 0, images_per_s = 0;
  StepStats last;
};

inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream os;
  os << std::setprecision(7) << v;
  return os.str();
}

inline std::string metrics_json(const StepStats& s, double images_per_s, double elapsed_s) {
  std::ostringstream os;
  os << "{\"step\": " << s.step + 1 << ", \"lr\": " << json_number(s.lr) << ", \"alpha\": " << json_number(s.alpha)
     << ", \"loss\": " << json_number(s.loss);
  for (const auto& [name, v] : s.terms) os << ", \"" << name << "\": " << json_number(v);
  os << ", \"images_per_s\": " << json_number(images_per_s) << ", \"elapsed_s\": " << json_number(elapsed_s) << "}";
  return os.str();
}

template <Differentiable T, Device D>
LoopResult run_training(Trainer<T, D>& trainer, const typename Trainer<T, D>::MicroLoss& micro_loss,
                        const LoopOptions& options, const std::function<void(int64_t)>& checkpoint = {}) {
  // Appended to through O_NOFOLLOW (io/atomic_file.hpp's AppendFile): a planted symlink is refused.
  std::unique_ptr<io::AppendFile> log;
  if (!options.metrics_path.empty()) log = std::make_unique<io::AppendFile>(options.metrics_path);
  const auto start = std::chrono::steady_clock::now();
  const auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const int64_t first = trainer.step_index();
  ProgressBar bar(options.label, trainer.config().total_steps, options.quiet, "step");
  bar.set(first);
  LoopResult result;
  int64_t samples = 0, planned_at_step = 0;
  double planned_at_s = 0;
  while (!trainer.done()) {
    result.last = trainer.step(micro_loss);
    ++result.steps;
    samples += result.last.samples;
    const double elapsed = seconds();
    const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
    const int64_t done = trainer.step_index();

    // Re-plan after the first calibrate_steps steps, then every replan_every steps, from the
    // step time since the previous plan (the machine's load may change as the run goes).
    if (options.time_budget_s > 0 && options.replan_every > 0 && !trainer.done() &&
        (result.steps == options.calibrate_steps ||
         (result.steps > options.calibrate_steps && (result.steps - options.calibrate_steps) % options.replan_every == 0))) {
      const double per_step = (elapsed - planned_at_s) / static_cast<double>(result.steps - planned_at_step);
      const auto remaining = static_cast<int64_t>((options.time_budget_s - elapsed) / per_step);
      int64_t total = std::max({done + std::max<int64_t>(remaining, 1), trainer.config().warmup_steps, int64_t{1}});
      dist::broadcast_host(trainer.communicator(), &total, 1, dist::Scalar::int64, 0);  // rank 0's clock plans for all
      trainer.set_total_steps(total, static_cast<int64_t>(options.alpha_warmup_fraction * static_cast<double>(total)));
      bar.set_total(total);
      planned_at_s = elapsed;
      planned_at_step = result.steps;
    }

    std::ostringstream status;
    status << std::fixed << std::setprecision(3) << "loss " << result.last.loss;
    for (const auto& [name, v] : result.last.terms) status << " " << name << " " << v;
    status << std::setprecision(0) << " | " << rate << " img/s";
    bar.set(done, status.str());

    int64_t out_of_time = options.time_budget_s > 0 && elapsed >= options.time_budget_s ? 1 : 0;
    if (options.time_budget_s > 0) dist::broadcast_host(trainer.communicator(), &out_of_time, 1, dist::Scalar::int64, 0);
    const bool last = trainer.done() || out_of_time != 0 || (options.stop_at_step > 0 && done >= options.stop_at_step);
    if (log && (last || options.log_every <= 1 || done % options.log_every == 0)) {
      log->write(metrics_json(result.last, rate, elapsed) + "\n");
    }
    if (checkpoint && (last || (options.checkpoint_every > 0 && done % options.checkpoint_every == 0))) checkpoint(done);
    if (last) break;
  }
  bar.finish();
  result.seconds = seconds();
  result.images_per_s = result.seconds > 0 ? static_cast<double>(samples) / result.seconds : 0.0;
  return result;
}

}  // namespace blip::train
