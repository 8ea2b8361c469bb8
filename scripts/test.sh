#!/usr/bin/env bash
# The whole test suite: set up, build (Release with assertions), run ctest; then the unit
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="$(nproc)"
bash "$root/scripts/setup.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

echo "== build and test (Release, assertions on)"
bash "$root/scripts/configure.sh" "$root/build-test" -DBLIP_BUILD_BENCH=ON
cmake --build "$root/build-test" -j "$jobs"
ctest --test-dir "$root/build-test" --output-on-failure -j 1

echo "== unit tests under ASan + UBSan"
bash "$root/scripts/configure.sh" "$root/build-asan" -DBLIP_SANITIZE=ON -DBLIP_WITH_CUDA=OFF \
  -DBLIP_BUILD_BENCH=OFF -DBLIP_BUILD_EXAMPLES=OFF -DBLIP_BUILD_TOOLS=OFF -DCMAKE_CXX_FLAGS_RELEASE="-O1"
cmake --build "$root/build-asan" -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -j 1 -L unit
