#!/bin/bash
# lm_head matvec shape (PENSIEVE_VK_MATVEC=wg,rows,tokens,lanes,kernel; only lm_head is a matvec on
# the persistent path), phi3-mini tg128.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
B="--model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe"
for rep in 1 2; do for t in 0,0,0,0,0 512,2,0,0,0 512,1,0,0,0 256,4,0,0,0 256,2,0,0,0 256,1,0,0,0 128,4,0,0,0 1024,4,0,0,0; do
  echo "### $t"; PENSIEVE_VK_MATVEC=$t timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
done; done 2>&1 | tee $OUT/pl17.txt
PENSIEVE_VK_MATVEC=256,2,0,0,0 timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -E "GPU per step|^ +[0-9]" | head -6
timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | grep -E "GPU per step|^ +[0-9]" | head -6
