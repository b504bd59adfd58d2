#!/bin/bash
# H100: host time per token with the sync flag mapped in place vs copied to readback memory.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2 3; do
  echo "### base"; PENSIEVE_VK_PERSISTENT=0 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### persistent, flag mapped"; timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
  echo "### persistent, flag copied"; NOMAP=1 timeout 60 $D/pensieve_x bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done 2>&1 | tee $OUT/h100b.txt
