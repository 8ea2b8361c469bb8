#!/usr/bin/env bash
# The GPU checks, for a lent device machine (run through the device tool; see its README):
# builds the CUDA tests unless a carried build folder has them, then runs the CUDA component's
# tests (test_cuda), the whole tiny model on the device against the CPU with its host<->device
# copies counted (test_cuda_model), the op table on every backend including Cuda (test_backend_ops: each row
# against float64, Cuda rows where the kernels exist) and the NCCL communicator at world size 1
# (test_nccl). Two NCCL ranks on the one
# GPU need NCCL >= 2.30 (NCCL_MULTI_RANK_GPU_ENABLE=1); with an older NCCL that is reported, not
# run. Logs go to $OUT (the device tool's folder) or ./gpu-check.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu-check}"
build="${BLIP_GPU_BUILD:-$root/build-gpu}"
mkdir -p "$out"
status=0
{ nvidia-smi || echo "nvidia-smi failed"; } > "$out/nvidia-smi.txt" 2>&1
if [ ! -x "$build/tests/test_cuda" ]; then
  bash "$root/scripts/configure.sh" "$build" -DBLIP_WITH_CUDA=ON -DBLIP_BUILD_BENCH=OFF -DBLIP_BUILD_EXAMPLES=OFF \
    -DBLIP_BUILD_TOOLS=OFF -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { echo "configure failed"; tail -20 "$out/configure.log"; exit 1; }
  cmake --build "$build" -j "$(nproc)" --target test_cuda test_cuda_model test_nccl test_backend_ops > "$out/build.log" 2>&1 || { echo "build failed"; tail -40 "$out/build.log"; exit 1; }
fi
for t in test_cuda test_cuda_model test_backend_ops test_nccl; do
  if [ -x "$build/tests/$t" ]; then
    timeout 300 "$build/tests/$t" > "$out/$t.log" 2>&1
    rc=$?
    echo "$t: exit $rc"; tail -3 "$out/$t.log"
    [ $rc -eq 0 ] || status=1
  else
    echo "$t: not built"
  fi
done
nccl_h="$(find /usr/local/cuda/include /usr/include -maxdepth 1 -name nccl.h 2>/dev/null | head -1)"
if [ -n "$nccl_h" ]; then
  major=$(awk '/#define NCCL_MAJOR/{print $3}' "$nccl_h"); minor=$(awk '/#define NCCL_MINOR/{print $3}' "$nccl_h")
  if [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 30 ]; }; then
    echo "NCCL $major.$minor: two ranks on one GPU are possible (NCCL_MULTI_RANK_GPU_ENABLE=1); no 2-rank GPU test is built yet"
  else
    echo "NCCL $major.$minor: two ranks on one GPU need NCCL >= 2.30 (Duplicate GPU detected); world size 1 only"
  fi
fi
exit $status
