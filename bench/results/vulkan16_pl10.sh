#!/bin/bash
# decode_step: weight units in flight per lane (BUDGET) vs spills.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for bu in 16 12 9 6; do
  echo "### step budget $bu"; BUDGET=$bu PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror|decode_step"
  echo "### layer budget $bu"; PENSIEVE_VK_PERSISTENT=layer BUDGET=$bu PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror|decode_layer"
done 2>&1 | tee $OUT/pl10.txt
