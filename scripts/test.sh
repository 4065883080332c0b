#!/usr/bin/env bash
# Builds uvit.cpp and runs the whole test suite (unit, PyTorch parity, end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD"
ctest --test-dir "$BUILD" --output-on-failure -j2 "$@"
