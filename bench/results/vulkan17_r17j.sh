#!/bin/bash
# Phase 17, run 10: the change as committed (RoPE in the decode attention, v3 staging, (8,8) loads
# for grids of <= 7 workgroups per SM; lm_head without gather; RoPE tables cached; rmsnorm's loads
# 4 at a time): GPU tests; A/B x3 against PENSIEVE_VK_ATTN_ROPE=0; profile at 20 sequences.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|actual" | head -40
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
grep -E "PASSED|FAIL" $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for e in PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $e"
  env $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 512 -n 128 --no-probe --batch 1,16,20,24,32 2>&1 | grep -E "^pp|^tg|batched|GPU busy"
done; done
timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 512 -n 64 --no-probe --batch 20 --profile 2>&1 | grep -A14 -E "prefill:|decode:"
