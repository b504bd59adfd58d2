#!/bin/bash
# Phase 17, run 1: GPU tests; A/B of the RoPE fusion into the decode attention (PENSIEVE_VK_ATTN_ROPE=0
# against the default), batched 1,16,20,32, x3 alternating; 20-sequence profile both ways.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure|Expected|actual" | head -60
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
grep -E "PASSED|FAIL" $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for e in PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $e"
  env $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "GPU busy|batched"
done; done > $OUT/ab.txt
for e in PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $e"; env $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 20 --profile 2>&1 | tail -16
done > $OUT/profile.txt
cat $OUT/ab.txt; cat $OUT/profile.txt
