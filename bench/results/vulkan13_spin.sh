#!/bin/bash
# Host round trip of one-sequence decode: GPU busy vs wall per token, blocking fence wait vs polling.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2 3; do for spin in 0 3000; do
  echo "### spin $spin"
  PENSIEVE_VK_SPIN_US=$spin timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 -r 5 --no-probe --batch 1 2>&1 | grep -E "^tg|GPU busy|batched"
done; done | tee $OUT/spin.txt
