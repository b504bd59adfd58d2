#!/bin/bash
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for cfg in "4,2,1 0" "4,2,1 1" "4,2,1 2" "4,2,1 3" "8,1,2 0" "8,1,2 1" "8,1,2 2" "8,1,2 3"; do
  set -- $cfg
  echo "### frag $1 dbg $2"; PENSIEVE_VK_FRAG=$1 PENSIEVE_VK_FRAG_DBG=$2 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 32 --profile 2>&1 | grep -E "sequences decode|gate_up/mmq4|down/mmq4|qkv/mmq4|o_proj/mmq4" | grep -v coop | tail -5
done
