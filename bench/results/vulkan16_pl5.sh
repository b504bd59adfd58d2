#!/bin/bash
# Persistent decode layer: polls by plain loads (pensieve) vs atomics (pensieve_v3); weights
# requested before the sync (PREF=1) or after staging (PREF=0).
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 200 $D/test_model_golden 2>&1 | grep -E "FAIL|PASSED|Failure|gave up" | head -30
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2; do
  echo "### base"; PENSIEVE_VK_PERSISTENT=0 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### v3 atomics poll"; PENSIEVE_VK_LAYER_L2=0 timeout 60 $D/pensieve_v3 bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### load poll"; timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### load poll, PREF 0"; PREF=0 timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done 2>&1 | tee $OUT/pl5.txt
./.devcarry/vk/pensieve-vulkan-bench --overhead 2>&1 | tail -12
