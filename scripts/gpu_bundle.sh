#!/usr/bin/env bash
# The build-here half of scripts/gpu_check.sh. A lent GPU machine has the CUDA toolkit, cmake and
# PyTorch but no Debian -dev packages and no network, so it cannot build blip. This packs what
# gpu_check.sh runs there, built here with the CUDA component: the GPU tests, the op table, the
# golden check and the GPU bench, every shared library they load except the GPU
# driver (libcuda, which the machine's driver provides), the dynamic loader they were linked
# against (so they run whatever glibc the machine has), and the golden data (../shared/golden
# does not travel with the working tree). cuBLAS is not packed: blip opens it at run time from the
# machine's toolkit (gpu_check.sh puts its folder on LD_LIBRARY_PATH).
#
#   bash scripts/gpu_bundle.sh [BUILD_DIR]   # default build-test; configured with BLIP_WITH_CUDA
#
# Writes gpu-bundle/blip-gpu.tar.xz (ignored by git; name gpu-bundle in the device tool's carry),
# or BLIP_GPU_BUNDLE_DIR/blip-gpu.tar.xz.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-test}"
out="${BLIP_GPU_BUNDLE_DIR:-$root/gpu-bundle}"
grep -q '^BLIP_WITH_CUDA:STRING=\(ON\|AUTO\)' "$build/CMakeCache.txt" 2>/dev/null ||
  { echo "gpu_bundle: $build is not a configured build with CUDA (scripts/configure.sh $build)"; exit 1; }
# The targets this build has (test_nccl needs NCCL, cuda_bench Google Benchmark).
available="$(cmake --build "$build" --target help)"
targets=()
for t in test_cuda test_cuda_model test_backend_ops cuda_bench golden_check; do
  grep -q "^$t: " <<< "$available" && targets+=("$t")
done
for t in test_cuda test_cuda_model golden_check; do
  [[ " ${targets[*]} " == *" $t "* ]] || { echo "gpu_bundle: $build has no target $t (CUDA off?)"; exit 1; }
done
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pack="$stage/blip-gpu"
mkdir -p "$pack/bin" "$pack/lib"
bins=("$build/tests/cuda/test_cuda" "$build/tests/cuda/test_cuda_model" "$build/examples/blip-golden-check")
# (Not the blip tool or test_nccl: with MPI, OpenBLAS and NCCL's 218 MB they would not fit the
# 64 MiB the device tool carries.)
for b in "$build/tests/test_backend_ops" "$build/bench/cuda_bench"; do
  [ -x "$b" ] && bins+=("$b")
done
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "gpu_bundle: $b was not built"; exit 1; }
  cp "$b" "$pack/bin/"
  strip --strip-debug "$pack/bin/$(basename "$b")"
done
# Every library the binaries load (as resolved here), except the vDSO and the driver's own.
for b in "$pack"/bin/*; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
  while read -r lib; do
    case "$(basename "$lib")" in
      libcuda.so*|libnvidia*|libcublas*) ;;
      ld-linux*) cp -L "$lib" "$pack/lib/ld-linux.so" ;;
      *) cp -L "$lib" "$pack/lib/" ;;
    esac
  done
cp -r "$root/../shared/golden" "$pack/golden"
mkdir -p "$out"
XZ_OPT="-T0" tar -C "$stage" -cJf "$out/blip-gpu.tar.xz" blip-gpu
echo "gpu_bundle: $(du -h "$out/blip-gpu.tar.xz" | cut -f1) in $out/blip-gpu.tar.xz ($(ls "$pack/lib" | wc -l) libraries)"
