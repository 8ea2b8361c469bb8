// blip/testing/clustered_features.hpp — synthetic gallery features for ANN tests and benches:
// n unit rows of width d around `clusters` random N(0, 1) centres, spread `spread` per
// coordinate, L2-normalised (a stand-in where no trained model's features exist at that scale).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "blip/core/rng.hpp"

namespace blip::testing {

inline std::vector<float> clustered_unit_features(int64_t n, int64_t d, int64_t clusters, uint64_t seed,
                                                  float spread = 0.35f) {
  Generator g(seed);
  std::vector<float> centres(static_cast<size_t>(clusters * d)), x(static_cast<size_t>(n * d));
  for (auto& v : centres) v = static_cast<float>(g.normal());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = g.uniform_int(clusters);
    double norm = 0;
    for (int64_t j = 0; j < d; ++j) {
      const float v = centres[static_cast<size_t>(c * d + j)] + spread * static_cast<float>(g.normal());
      x[static_cast<size_t>(i * d + j)] = v;
      norm += double(v) * v;
    }
    for (int64_t j = 0; j < d; ++j) x[static_cast<size_t>(i * d + j)] /= static_cast<float>(std::sqrt(norm));
  }
  return x;
}

}  // namespace blip::testing
