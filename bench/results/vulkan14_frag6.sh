#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
export PENSIEVE_VK_FRAG=8,1,1,200
for sp in 2,3,9,9 1,3,9,9 3,3,9,9 2,2,9,9 2,4,9,9 2,3,6,9 2,3,12,9 2,3,9,6 2,3,9,12 2,3,9,16 2,3,8,8; do
  echo "### splits $sp"; PENSIEVE_VK_FRAG_SPLITS=$sp timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 20,32 2>&1 | grep -E "batched|rror"
done
for cfg in 8,1,1,400 8,1,1,500 8,1,1,700; do
  echo "### frag16 $cfg"; PENSIEVE_VK_FRAG=$cfg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 8,12,16 2>&1 | grep -E "batched|rror"
done
