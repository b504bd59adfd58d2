#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for cfg in 8,1,1,160 8,1,1,200 8,1,1,232 8,1,1,300 8,1,1,400 8,1,1,528 4,1,1,264 4,1,1,400 4,2,1,200; do
  echo "### frag $cfg"; PENSIEVE_VK_FRAG=$cfg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 8,16,20,32 2>&1 | grep -E "batched|rror"
done
