#!/usr/bin/env bash
# The main job on its embedded default: set up, build, run `blip demo` (trains a small BLIP from
# scratch on Fashion-MNIST for 5 minutes, evaluates retrieval on the 10k test images, writes
# blip-demo/ with the metrics and an image grid of text queries). Extra arguments go to the demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
bash "$root/scripts/configure.sh" "$root/build" -DBLIP_BUILD_TESTS=OFF -DBLIP_BUILD_BENCH=OFF -DBLIP_BUILD_EXAMPLES=OFF
cmake --build "$root/build" --target blip_cli -j "$(nproc)"
"$root/build/tools/blip/blip" demo "$@"
