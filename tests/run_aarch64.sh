#!/usr/bin/env bash
# Cross-compiles the kernel tests for aarch64 (Debian's g++-aarch64-linux-gnu, kernels only: tensor/,
# quant/, kernels/ and their tests) and
# runs them under qemu-user with "-cpu max", so the NEON and dot-product kernel tables are tested
# against the reference on this x86 machine. Usage: tests/run_aarch64.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-aarch64}"
for tool in aarch64-linux-gnu-g++ qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "run_aarch64: $tool not found (tools/setup.sh installs it)" >&2; exit 1; }
done
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DPENSIEVE_KERNELS_ONLY=ON -DPENSIEVE_BENCH=OFF >/dev/null
ninja -C "$build" -j"$(nproc)"  # kernels-only: the libraries, test_ops, test_quant, test_ref_f64, test_fuzz_corpus
# Each test binary also runs as a whole once to print which tables it found.
qemu-aarch64-static -cpu max -L /usr/aarch64-linux-gnu "$build/tests/test_ops" --gtest_filter='CpuTables.*' | grep 'tables'
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
