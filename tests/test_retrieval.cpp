// RetrievalRecall against mmpretrain's metric on the golden score matrices (ties included).
#include <catch2/catch.hpp>

#include "blip/testing/golden_inputs.hpp"
#include "golden_dirs.hpp"

TEST_CASE("RetrievalRecall reproduces every golden retrieval case, key order and tie order included", "[eval][golden]") {
  const auto results = blip::testing::run_retrieval_cases(golden_root() / "retrieval");
  REQUIRE(results.size() >= 7);
  for (const auto& r : results) {
    INFO(r.name << ": max error " << r.max_error << " " << r.detail);
    CHECK(r.ok);
  }
}

TEST_CASE("RetrievalRecall on a hand-made case and its errors", "[eval]") {
  using blip::Tensor;
  // 2 images, 3 captions (image 0 has captions 0 and 2).
  const auto i2t = Tensor<float>::from_vector({2, 3}, {0.1f, 0.9f, 0.8f, 0.7f, 0.2f, 0.3f});
  const auto t2i = Tensor<float>::from_vector({3, 2}, {0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.4f});
  const auto m = blip::eval::retrieval_recall(i2t, t2i, {{0, 2}, {1}}, {1, 2});
  REQUIRE(m.size() == 4);
  REQUIRE(m[0].first == "i2t/retrieval/Recall@1");
  REQUIRE(m[0].second == 0.0);    // image 0's best is caption 1 (wrong); image 1's best is caption 0 (wrong)
  REQUIRE(m[1].second == 50.0);   // at 2: image 0 finds caption 2; image 1's top-2 are {0, 2}: miss
  REQUIRE(m[2].second == 100.0 * 2 / 3);  // captions 0 and 1 rank their image first; caption 2 does not
  REQUIRE(m[3].second == 100.0);
  REQUIRE_THROWS_WITH(blip::eval::retrieval_recall(i2t, t2i, {{0, 2}, {1}}, {1, 5}), Catch::Matchers::Contains("exceeds"));
}
