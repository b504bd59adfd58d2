#!/usr/bin/env bash
# Builds the safetensors fuzz target with clang's libFuzzer (+ ASan/UBSan) and runs it for
# SECONDS (default 60) on the corpus. New interesting inputs land in the corpus directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
out=build-fuzz
mkdir -p $out
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
  tests/fuzz/fuzz_safetensors.cpp tensor/safetensors.cpp tensor/result.cpp tensor/dtype.cpp \
  tensor/tensor.cpp tensor/mapped_file.cpp -o $out/fuzz_safetensors
$out/fuzz_safetensors -max_total_time="$seconds" -max_len=65536 tests/fuzz/corpus/safetensors
