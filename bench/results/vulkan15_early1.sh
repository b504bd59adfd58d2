#!/bin/bash
# Decode attention's early loads (PENSIEVE_VK_ATTN_EARLY) and qkv's early RoPE inputs: A/B against main (pensieve_base), x3.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 200 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure" | head -20
  PENSIEVE_VK_ATTN_EARLY=1 timeout 100 $D/test_vulkan_ops --gtest_filter='*Attention*' 2>&1 | grep -E "FAIL|PASSED|Failure" | head
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for p in "base X=0" "new X=0" "new PENSIEVE_VK_ATTN_EARLY=0"; do
  set -- $p
  echo "### $1 $2"
  env $2 timeout 60 $D/pensieve$([ $1 = base ] && echo _base) bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,4,16,32 2>&1 | grep -E "^tg|GPU busy|^batched"
done; done 2>&1 | tee $OUT/early1.txt
for b in pensieve_base pensieve; do echo "### $b"
  timeout 60 $D/$b bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -A8 "^1 sequence decode"
done > $OUT/early1_profile.txt 2>&1
cat $OUT/early1_profile.txt
