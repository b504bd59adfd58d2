#!/bin/bash
# Phase 17, run 7: v3 (the staging's loads in one batch; lm_head without gather; RoPE tables cached)
# against run 5's c, and two timing-only builds of v3 (wrong results): noloop (key pos read from the
# cache like the others: no special path in the loops), nostage (no RoPE / new key in the staging).
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
mkdir -p /tmp/v && tar xJf $D/vars.tar.xz -C /tmp/v
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for v in v3 v3noloop v3nostage; do echo "== $v"; PENSIEVE_VK_PIPELINE_STATS=1 timeout 150 /tmp/v/pensieve_$v bench --model /tmp/phi3-mini --device vulkan -p 0 -n 8 --no-probe --batch 20 2>&1 | grep attn_dec4; done
for rep in 1 2 3; do for v in c v3 v3noloop v3nostage; do
  echo "### $v"
  timeout 150 /tmp/v/pensieve_$v bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,20,32 2>&1 | grep -E "batched"
done; done
for v in c v3 v3noloop v3nostage; do echo "### $v"; timeout 150 /tmp/v/pensieve_$v bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 20 --profile 2>&1 | grep attention/; done
