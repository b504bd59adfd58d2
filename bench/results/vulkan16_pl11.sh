#!/bin/bash
# decode_layer: rows per round per projection (RS=qkv,o,gate_up pairs,down) vs spills.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rs in 3,2,1,1 4,2,1,1 3,2,1,2 3,2,2,1 5,2,1,1 3,1,1,1 2,2,1,1 4,2,2,1 3,2,1,1; do
  echo "### RS $rs"; RS=$rs PENSIEVE_VK_PERSISTENT=layer PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror|decode_layer" | sed 's/Binary Size=[0-9]* Stack Size=0 //'
done 2>&1 | tee $OUT/pl11.txt
