#!/bin/bash
# Phase 17, run 5: variants of the fused attention (c: run 3's; v2: + the new key's score loop
# unrolled; v3: v2 + the staging's loads in one batch; v4: v2 + the first tile's offsets before the
# staging), registers and batched 1,16,20,32 x3 alternating, with GPU busy per step.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
mkdir -p /tmp/v && tar xJf $D/vars.tar.xz -C /tmp/v
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for v in c v2 v3 v4; do echo "== $v"; PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 /tmp/v/pensieve_$v bench --model /tmp/phi3-mini --device vulkan -p 0 -n 8 --no-probe --batch 20 2>&1 | grep attn_dec4; done
for rep in 1 2 3; do for v in c v2 v3 v4; do
  echo "### $v"
  timeout 150 /tmp/v/pensieve_$v bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "batched"
done; done
echo "### c ROPE=0"; PENSIEVE_VK_ATTN_ROPE=0 timeout 150 /tmp/v/pensieve_c bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "batched"
