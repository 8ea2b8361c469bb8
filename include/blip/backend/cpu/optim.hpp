// blip/backend/cpu/optim.hpp — the parameter updates on the CPU: AdamW and the momentum EMA.
//
// Contract: elementwise over n contiguous elements, in the element type, in the order
// torch.optim.AdamW (1.13, single-tensor) and mmpretrain's momentum update compute them, so
// results are bit-identical to theirs for the same scalars.
#pragma once

#include <cmath>
#include <cstdint>

#include "blip/backend/args.hpp"
#include "blip/backend/cpu/parallel.hpp"

namespace blip::cpu {

template <class T>
void adamw(T* p, T* m, T* v, const T* g, int64_t n, const backend::AdamWCoefficients<T>& c) {
  parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      p[i] *= c.decay;
      m[i] = m[i] * c.beta1 + c.one_minus_beta1 * g[i];
      v[i] = v[i] * c.beta2 + c.one_minus_beta2 * (g[i] * g[i]);
      const T denom = std::sqrt(v[i]) / c.bias_correction2_sqrt + c.eps;
      p[i] += c.neg_step_size * (m[i] / denom);
    }
  });
}

// m = m * keep + v * take.
template <class T>
void ema(T* m, const T* v, int64_t n, T keep, T take) {
  parallel_for(n, 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) m[i] = m[i] * keep + v[i] * take;
  });
}

}  // namespace blip::cpu
