#!/bin/bash
# Matvec: all of a lane's units requested at once (PENSIEVE_VK_UPL), tg128 A/B alternating x3.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for p in 0 3 8 12; do
  echo "### UPL $p"
  PENSIEVE_VK_UPL=$p timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe 2>&1 | grep -E "^tg|GPU busy"
done; done 2>&1 | tee $OUT/upl1.txt
for p in 0 12; do
  PENSIEVE_VK_PIPELINE_STATS=1 PENSIEVE_VK_UPL=$p timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -vE "^\s*$" | head -60
done > $OUT/upl1_profile.txt 2>&1
PENSIEVE_VK_UPL=12 timeout 200 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -30
