#!/bin/bash
# Persistent decode layer: workgroup size 512 / 768 / 1024.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2; do for wg in 512 768 1024; do
  echo "### wg $wg"; PENSIEVE_VK_LAYER_WG=$wg timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done; done 2>&1 | tee $OUT/pl8.txt
for wg in 768 1024; do PENSIEVE_VK_LAYER_WG=$wg PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve bench $B -n 8 2>&1 | grep -E "decode_layer"; done
for wg in 768 1024; do PENSIEVE_VK_LAYER_WG=$wg timeout 200 $D/test_model_golden 2>&1 | grep -E "FAIL|PASSED|Failure|gave up" | head; done
