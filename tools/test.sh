#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the ctest suite (CPU kernels on every
# ISA this CPU runs, Vulkan on lavapipe, the models against their goldens, the server through the
# official SDKs), then the NEON kernel tests cross-built for aarch64 and run under qemu.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
jobs=$(nproc)
(cd build && ctest --output-on-failure -j"$jobs" --timeout 900)
if [ -x tests/run_aarch64.sh ]; then
  tests/run_aarch64.sh
fi
