// Parity with mmpretrain's BlipRetrieval on every model case set under the golden root.
#include <catch2/catch.hpp>

#include "blip/testing/golden_model.hpp"
#include "golden_dirs.hpp"

TEST_CASE("every golden model case set matches the reference", "[golden][model]") {
  const auto sets = model_case_sets();
  REQUIRE_FALSE(sets.empty());
  for (const auto& dir : sets) {
    for (const auto& r : blip::testing::run_model_case_set(dir)) {
      INFO(dir.filename().string() << " " << r.name << ": max error " << r.max_error << " (tolerance " << r.tolerance
                                   << ") " << r.detail);
      CHECK(r.ok);
    }
  }
}
