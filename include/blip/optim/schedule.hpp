// blip/optim/schedule.hpp — learning-rate schedules: linear warm-up then cosine annealing.
//
// Contract: lr_at(step) for step in [0, total_steps]: during the first warmup_steps the rate
// rises linearly from base_lr * warmup_start_factor to base_lr (mmengine LinearLR); then it
// follows eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T)) / 2 over the remaining
// T = total_steps - warmup_steps steps (mmengine CosineAnnealingLR). Past the end it stays at
// eta_min.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "blip/core/error.hpp"

namespace blip {

struct CosineSchedule {
  double base_lr = 1e-3;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;
  double warmup_start_factor = 0.0;
  double eta_min = 0.0;

  double lr_at(int64_t step) const {
    BLIP_CHECK(total_steps > 0 && warmup_steps >= 0 && warmup_steps <= total_steps && step >= 0,
               "CosineSchedule: step ", step, " with total ", total_steps, " and warm-up ", warmup_steps);
    if (step < warmup_steps) {
      const double f = warmup_start_factor + (1.0 - warmup_start_factor) * static_cast<double>(step) /
                                                 static_cast<double>(warmup_steps);
      return base_lr * f;
    }
    const int64_t span = total_steps - warmup_steps;
    if (span == 0) return base_lr;
    const double t = static_cast<double>(std::min(step - warmup_steps, span)) / static_cast<double>(span);
    return eta_min + (base_lr - eta_min) * (1.0 + std::cos(std::numbers::pi * t)) / 2.0;
  }
};

}  // namespace blip
