#!/bin/bash
# Phase 17 review: one shared rope_dim include (decode_layer.comp, attn_dec4.comp): registers, GPU
# tests, tg128 and batched 1 / 20 x2.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|actual" | head -40
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 8 --no-probe --batch 20 2>&1 | grep -E 'decode_layer|attn_dec4'
for rep in 1 2; do timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,20 2>&1 | grep -E "^tg|GPU busy|batched"; done | tee $OUT/bench.txt
