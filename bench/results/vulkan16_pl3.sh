#!/bin/bash
# Persistent decode layer: attention with its cache rows requested before the sync; ablation.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 200 $D/test_model_golden 2>&1 | grep -E "FAIL|PASSED|Failure|gave up|Expected|Which|actual" | head -30
timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure|gave up" | head -30
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2; do
  echo "### base"; PENSIEVE_VK_PERSISTENT=0 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### persistent"; timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done 2>&1 | tee $OUT/pl3.txt
for sk in 0 1 2 3 7 11 19 35 67; do
  echo "### SKIP $sk"; SKIP=$sk timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done 2>&1 | tee $OUT/pl3_skip.txt
PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -E "decode_layer|GPU per step" | head -8 | tee $OUT/pl3_profile.txt
