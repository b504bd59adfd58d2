#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for cfg in 8,1,2,132 8,1,1,132; do
  echo "### stats+profile20 $cfg"; PENSIEVE_VK_FRAG=$cfg PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 20 --profile 2>&1 | grep -E "mmq4_frag|sequences decode|attention/" | grep -v "mmq4_coop\[256" | sed 's/Binary Size.*Shared/Shared/' | head -14
done
for cfg in 8,1,2,132 8,1,1,132 8,1,2,200 8,1,1,264 8,1,2,264 8,1,2,100 8,1,2,0,2 8,1,2,0,3; do
  echo "### frag $cfg"; PENSIEVE_VK_FRAG=$cfg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 8,16,20,32 2>&1 | grep -E "batched|rror"
done
