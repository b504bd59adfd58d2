#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure|Expected|Which|NMSE" | head -30
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 20 --profile 2>&1 | grep -E "mmq4_frag8|sequences decode" | sed 's/Binary Size.*Shared/Shared/' | sort -u | head -12
for rep in 1 2; do for e in PENSIEVE_VK_FRAG8=0 X=0; do
  echo "### $e"; env $e timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,6,8,20,24 2>&1 | grep -E "batched|rror"
done; done
for w in 198 230 264 330 400; do
  echo "### wgs $w"; PENSIEVE_VK_FRAG=8,1,1,$w timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 8,20 2>&1 | grep -E "batched|rror"
done
