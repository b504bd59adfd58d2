#!/bin/bash
# Phase 17 on an H100: GPU tests and the bench (phi3-mini), with the A/B of the RoPE fusion.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|actual" | head -40
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for e in PENSIEVE_VK_ATTN_ROPE=0 X=0 PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $e"
  env $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 512 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "^pp|^tg|GPU busy|batched"
done | tee $OUT/ab.txt
