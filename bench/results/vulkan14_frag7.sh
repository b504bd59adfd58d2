#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do for b in pensieve pensieve_b; do
  echo "### bin $b"; PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/$b bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 16,20,32 2>&1 | grep -E "batched|rror|mmq4_frag\[256,128,32" | sed 's/Binary Size.*Shared/Shared/' | sort -u
done; done
for e in PENSIEVE_VK_ATTN_SPLIT=128 PENSIEVE_VK_ATTN_SPLIT=256 PENSIEVE_VK_ATTN_SPLIT=512 PENSIEVE_VK_ATTN=256,12,16 PENSIEVE_VK_ATTN=64,12,16 PENSIEVE_VK_ATTN=128,8,8 PENSIEVE_VK_ATTN=128,16,16; do
  echo "### $e"; env $e timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 20,32 --profile 2>&1 | grep -E "batched|rror|attention/attn_dec"
done
