#!/bin/bash
# Persistent decode layer (shaders/decode_layer.comp): correctness on the H200, then tg128 A/B.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 120 $D/test_model_golden --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure|error|gave up|Expected|Which|actual" | head -40
timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure|gave up" | head -30
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do for p in 0 1; do for wg in 512 1024; do
  [ $p = 0 ] && [ $wg = 1024 ] && continue
  echo "### persistent $p wg $wg"
  PENSIEVE_VK_PERSISTENT=$p PENSIEVE_VK_LAYER_WG=$wg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done; done; done 2>&1 | tee $OUT/pl1.txt
for wg in 512 1024; do
  PENSIEVE_VK_PIPELINE_STATS=1 PENSIEVE_VK_LAYER_WG=$wg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -vE "^\s*$" | head -50
done > $OUT/pl1_profile.txt 2>&1
grep -iE "decode_layer|layer/" $OUT/pl1_profile.txt | head -20
