#!/bin/bash
# Phase 17, run 2: registers of attn_dec4 with and without the RoPE fusion; batched 16/20/32 with
# other K / V loads in flight (PENSIEVE_VK_ATTN=wg,kb,vb), fused and not.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 20 2>&1 | grep attn_dec4
PENSIEVE_VK_ATTN_ROPE=0 PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 20 2>&1 | grep attn_dec4
for a in 128,12,16 128,8,8 128,6,6 128,4,4 64,12,16; do for e in PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $a $e"
  env PENSIEVE_VK_ATTN=$a $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 16,20,32 2>&1 | grep -E "batched"
done; done
