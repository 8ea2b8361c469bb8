#!/usr/bin/env bash
# The GPU checks, for a lent device machine (run through the device tool; see its README), in
# one command that finishes in under 10 minutes:
#   1. the CUDA op table and kernels: test_cuda (each kernel against the CPU kernel),
#      test_backend_ops (every op on every backend against float64, Cuda rows where kernels
#      exist), test_cuda_model (the tiny model, Retriever and a training step on the GPU against
#      the CPU, host<->device copies counted), test_nccl (world size 1);
#   2. the golden model cases on the GPU: blip-golden-check --device cuda (fp32 tolerances) and
#      --device cuda --precision bf16 (the reduced-precision bounds);
#   3. bench (a)-(d) on the GPU in fp32 and bf16, with the bf16 GEMM and copy rates (cuda_bench);
#   4. the same cases with HF BlipForImageTextRetrieval on the same GPU, fp32 and bf16 autocast
#      (bench/gpu_peers.py; mmpretrain where it imports).
# It writes one summary file, $OUT/summary.txt (OUT: the device tool's folder, else ./gpu-check),
# beside each step's log.
#
# The machine has no Debian -dev packages and no network, so blip is not built there: run
# `bash scripts/gpu_bundle.sh` here first and name gpu-bundle in the device tool's carry; the
# bundle's binaries run through the dynamic loader they were linked against (any host glibc).
# Without a bundle it falls back to building in BLIP_GPU_BUILD (where the dependencies exist).
set -uo pipefail
deadline=$((SECONDS + ${BLIP_GPU_CHECK_SECONDS:-540}))  # one device-tool command may run 600 s
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu-check}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
status=0
{ nvidia-smi || echo "nvidia-smi failed"; } > "$out/nvidia-smi.txt" 2>&1
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
note "gpu: ${gpu:-none seen by nvidia-smi}"

bundle="${BLIP_GPU_BUNDLE_DIR:-$root/gpu-bundle}/blip-gpu.tar.xz"
if [ -f "$bundle" ]; then
  unpack="$(mktemp -d)"
  trap 'rm -rf "$unpack"' EXIT
  pack="$unpack/blip-gpu"
  export pack
  tar -C "$unpack" -xJf "$bundle"
  # cuBLAS comes from the machine: its toolkit, else the wheel PyTorch brought.
  wheel_cublas="$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2> /dev/null)"
  libpath="$pack/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${wheel_cublas:+$wheel_cublas:}/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu"
  bin="$pack/bin"
  golden="$pack/golden"
  run_bin() {  # the carried loader first; the host's as a fallback
    local exe="$bin/$1"; shift
    "$pack/lib/ld-linux.so" --library-path "$libpath" "$exe" "$@" || { local rc=$?; [ $rc -ne 127 ] && return $rc
      LD_LIBRARY_PATH="$libpath" "$exe" "$@"; }
  }
else
  build="${BLIP_GPU_BUILD:-$root/build-gpu}"
  if [ ! -x "$build/tests/cuda/test_cuda" ]; then
    bash "$root/scripts/configure.sh" "$build" -DBLIP_WITH_CUDA=ON -DBLIP_BUILD_BENCH=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { note "configure failed (no bundle: run scripts/gpu_bundle.sh here and carry gpu-bundle)"; tail -20 "$out/configure.log"; exit 1; }
    cmake --build "$build" -j "$(nproc)" --target test_cuda test_cuda_model test_nccl test_backend_ops cuda_bench \
      golden_check > "$out/build.log" 2>&1 || { note "build failed"; tail -40 "$out/build.log"; exit 1; }
  fi
  bin="$out/bin"
  mkdir -p "$bin"
  for f in tests/cuda/test_cuda tests/cuda/test_cuda_model tests/test_backend_ops tests/cuda/test_nccl bench/cuda_bench examples/blip-golden-check; do
    [ -x "$build/$f" ] && ln -sf "$build/$f" "$bin/"
  done
  golden="${BLIP_GOLDEN:-$root/../shared/golden}"
  run_bin() { local exe="$bin/$1"; shift; "$exe" "$@"; }
fi
export BLIP_HF_FIXTURES="$root/tests/data/hf"
export -f run_bin
export bin pack libpath 2> /dev/null

step() {  # step NAME TIMEOUT_S CMD...: runs, logs to $out/NAME.log, notes the exit and last line
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -le 5 ]; then note "$name: not run (the time is used up)"; status=1; return; fi
  local t0=$SECONDS
  timeout "$limit" bash -c '"$@"' _ "$@" > "$out/$name.log" 2>&1  # (run_bin is a function: through bash)
  local rc=$?
  note "$name: exit $rc in $((SECONDS - t0)) s — $(grep -v '^\s*$' "$out/$name.log" | tail -1)"
  # 77 = skipped for want of a device: a failure where nvidia-smi saw one (a runtime the driver
  # is too old for reads as "no device").
  [ $rc -eq 0 ] || { [ $rc -eq 77 ] && [ -z "$gpu" ]; } || status=1
}

# 1. kernels, op table, the model on the device
for t in test_cuda test_cuda_model test_backend_ops test_nccl; do
  if [ -e "$bin/$t" ]; then step "$t" 150 run_bin "$t"; else note "$t: not built"; fi
done
# 2. golden cases on the GPU
if [ -d "$golden" ]; then
  vocab=(--vocab "$root/data/bert-base-uncased-vocab.txt")  # the built-in path is this machine's
  step golden_cuda_fp32 180 run_bin blip-golden-check "${vocab[@]}" --device cuda "$golden"
  step golden_cuda_bf16 120 run_bin blip-golden-check "${vocab[@]}" --device cuda --precision bf16 "$golden"
  grep -h "FAIL" "$out/golden_cuda_fp32.log" "$out/golden_cuda_bf16.log" | head -20 >> "$summary"
else
  note "golden: no data at $golden"
fi
# 3. ours on the GPU
if [ -e "$bin/cuda_bench" ]; then
  step cuda_bench 150 run_bin cuda_bench --benchmark_counters_tabular=true
  grep -E "^BM_" "$out/cuda_bench.log" >> "$summary"
else
  note "cuda_bench: not built"
fi
# 4. the PyTorch peers on the same GPU
if python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2> /dev/null; then
  step gpu_peers 150 python3 "$root/bench/gpu_peers.py" --json "$out/gpu_peers.json"
  grep -E "^(hf|mmpretrain)" "$out/gpu_peers.log" >> "$summary"
else
  note "gpu_peers: torch with CUDA or transformers not importable"
fi

nccl_h="$(find /usr/local/cuda/include /usr/include -maxdepth 1 -name nccl.h 2>/dev/null | head -1)"
if [ -n "$nccl_h" ]; then
  major=$(awk '/#define NCCL_MAJOR/{print $3}' "$nccl_h"); minor=$(awk '/#define NCCL_MINOR/{print $3}' "$nccl_h")
  note "NCCL $major.$minor on the machine"
fi
exit $status
