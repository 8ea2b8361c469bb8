#!/usr/bin/env bash
# Installs what blip needs from Debian 12 packages (only what is missing). Idempotent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config clang libclang-rt-14-dev
  libeigen3-dev libdnnl-dev libopenblas-openmp-dev catch2 libbenchmark-dev nlohmann-json3-dev libutf8proc-dev libsentencepiece-dev libpng-dev libjpeg62-turbo-dev
  libwebp-dev libgif-dev
  libzip-dev zlib1g-dev libcli11-dev dataset-fashion-mnist
  libopenmpi-dev openmpi-bin libfaiss-dev
  libcpp-httplib-dev chromium fonts-dejavu-core
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
