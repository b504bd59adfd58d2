#!/bin/bash
# Phase 17, run 6: GPU tests of the whole change (RoPE in the decode attention, v2; lm_head without
# gather / rmsnorm on the batched path; RoPE tables cached), then A/B x3 against run 5's c binary.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
mkdir -p /tmp/v && tar xJf $D/vars.tar.xz -C /tmp/v pensieve_c
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|actual" | head -40
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
grep -E "PASSED|FAIL" $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for b in "/tmp/v/pensieve_c X=0" "$D/pensieve X=0"; do
  set -- $b
  echo "### $b"
  env $2 timeout 150 $1 bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "batched|GPU busy"
done; done
timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 20 --profile 2>&1 | tail -13
