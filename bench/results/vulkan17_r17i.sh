#!/bin/bash
# Phase 17, run 9: v3 with (8,8) against (12,16) K / V loads in flight at 4-32 sequences, x2.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do for a in 128,12,16 128,8,8; do
  echo "### $a"
  PENSIEVE_VK_ATTN=$a timeout 200 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 4,8,12,16,20,24,28,32 2>&1 | grep -E "batched"
done; done
