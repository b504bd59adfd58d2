#!/bin/bash
# Persistent decode layer: idle workgroups warm L2 with W_o / W_gu during attention (A/B).
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 200 $D/test_model_golden 2>&1 | grep -E "FAIL|PASSED|Failure|gave up" | head -30
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2; do
  echo "### base"; PENSIEVE_VK_PERSISTENT=0 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  for l2 in 0 1 2; do
  echo "### L2 $l2"; PENSIEVE_VK_LAYER_L2=$l2 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  done
done 2>&1 | tee $OUT/pl4.txt
