#!/usr/bin/env bash
# scripts/gpu_bundle.sh and scripts/gpu_check.sh end to end where no GPU is usable (CI), so that
# the one command a lent GPU machine runs does not rot between the sessions that have one: the
# bundle builds, its binaries start through the carried loader (the GPU tests exit 77, the op
# table passes its CPU rows, the golden check skips --device cuda with its message), and
# summary.txt has a line per step. Where a GPU is usable it only checks that the bundle builds.
#   gpu_check_dry_run.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1 build=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
BLIP_GPU_BUNDLE_DIR="$work/bundle" bash "$src/scripts/gpu_bundle.sh" "$build" > "$work/bundle.log" 2>&1 ||
  { cat "$work/bundle.log"; exit 1; }
tail -1 "$work/bundle.log"
if nvidia-smi > /dev/null 2>&1; then echo "a GPU is present: bundle only"; exit 0; fi
set +e
OUT="$work/out" BLIP_GPU_BUNDLE_DIR="$work/bundle" BLIP_GPU_CHECK_SECONDS=240 bash "$src/scripts/gpu_check.sh" > "$work/check.log" 2>&1
rc=$?
set -e
summary="$work/out/summary.txt"
cat "$summary"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -eq 0 ] || fail "gpu_check.sh exited $rc without a GPU (every step skips: expected 0)"
grep -q "^test_cuda: exit 77 " "$summary" || fail "test_cuda did not start and skip"
grep -q "^test_cuda_model: exit 77 " "$summary" || fail "test_cuda_model did not start and skip"
grep -q "^test_backend_ops: exit 0 " "$summary" || fail "the op table did not pass its CPU rows through the carried loader"
grep -q "^golden_cuda_fp32: exit 77 .*no usable CUDA device" "$summary" || fail "blip-golden-check --device cuda did not skip"
if grep -q "^cuda_bench:" "$summary"; then  # (built with Google Benchmark)
  grep -q "^cuda_bench: exit 77 " "$summary" || fail "cuda_bench did not start and skip"
fi
echo "gpu_check dry run: ok"
