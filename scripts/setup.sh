#!/usr/bin/env bash
# Installs every build, test and data dependency of uvit.cpp from Debian's packages.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config \
  libdnnl-dev libopenblas-dev nlohmann-json3-dev libcli11-dev zlib1g-dev \
  libgtest-dev libbenchmark-dev libssl-dev libcpp-httplib-dev openmpi-bin libopenmpi-dev \
  python3 python3-numpy python3-torch python3-scipy python3-torchvision python3-pil \
  python3-matplotlib ccache chromium strace gdb \
  dataset-fashion-mnist
