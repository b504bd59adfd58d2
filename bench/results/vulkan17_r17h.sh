#!/bin/bash
# Phase 17, run 8: v3's K / V loads in flight (PENSIEVE_VK_ATTN=128,kb,vb; the sums are the same),
# batched 20 / 32, x2 alternating, with registers.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for a in 128,12,16 128,8,8 128,12,8 128,8,16 128,16,16 128,6,12; do echo "== $a"; PENSIEVE_VK_ATTN=$a PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 8 --no-probe --batch 20 2>&1 | grep 'attn_dec4.*,1\]'; done
for rep in 1 2; do for a in 128,12,16 128,8,8 128,12,8 128,8,16 128,16,16 128,6,12; do
  echo "### $a"
  PENSIEVE_VK_ATTN=$a timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 20,32 2>&1 | grep -E "batched"
done; done
