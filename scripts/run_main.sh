#!/usr/bin/env bash
# The main job on its embedded default: set up, build, run. Until the BLIP demo lands this
# trains a small model for a few steps and prints its loss going down.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
bash "$root/scripts/configure.sh" "$root/build" -DBLIP_BUILD_TESTS=OFF -DBLIP_BUILD_BENCH=OFF
cmake --build "$root/build" --target train_tiny -j "$(nproc)"
"$root/build/examples/train_tiny"
