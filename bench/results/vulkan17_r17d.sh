#!/bin/bash
# Phase 17, run 4: first tile's row offsets before the staging, and the fused staging's loads in one
# batch (pensieve) against run 3's binary (pensieve_c) and against PENSIEVE_VK_ATTN_ROPE=0, x3.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 300 $D/test_vulkan_ops --gtest_filter='*Attention*' 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|actual" | head -20
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 20 2>&1 | grep attn_dec4
for rep in 1 2 3; do for b in "pensieve_c X=0" "pensieve X=0" "pensieve PENSIEVE_VK_ATTN_ROPE=0"; do
  set -- $b
  echo "### $b"
  env $2 timeout 150 $D/$1 bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "batched"
done; done
