#!/bin/bash
# Matvec: a lane's units requested in two batches (PENSIEVE_VK_UPL, PENSIEVE_VK_UPL_WG for down), tg128 A/B x3.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for p in "0 0" "3 0" "8 0" "8 256" "8 128" "0 256"; do
  set -- $p
  echo "### UPL $1 WG $2"
  PENSIEVE_VK_UPL=$1 PENSIEVE_VK_UPL_WG=$2 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe 2>&1 | grep -E "^tg|GPU busy"
done; done 2>&1 | tee $OUT/upl2.txt
for p in "0 0" "8 0" "8 256" "8 128"; do
  set -- $p
  echo "### UPL $1 WG $2"
  PENSIEVE_VK_PIPELINE_STATS=1 PENSIEVE_VK_UPL=$1 PENSIEVE_VK_UPL_WG=$2 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -E "down|o_proj" | head -6
done > $OUT/upl2_profile.txt 2>&1
cat $OUT/upl2_profile.txt
