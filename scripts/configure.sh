#!/usr/bin/env bash
# configure.sh BUILD_DIR [extra cmake args...]: a Release build with assertions kept (-O2, no
# NDEBUG), Ninja, and ccache when present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$1"
shift
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache); fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2" \
  -DCMAKE_CUDA_FLAGS_RELEASE="-O2" "${launcher[@]}" "$@"
