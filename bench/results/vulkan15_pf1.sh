#!/bin/bash
# L2 prefetch experiment: tg128 with PENSIEVE_VK_PREFETCH schedules, alternating, x2.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do for p in 0 1 1,0.5 1,0.5,0.5 1,1 0,0,0,1 0,0,0,0,1 0,0,0,1,1 1,0.5,0.5,1,1 1,0.5,0.5,0.5,0.5; do
  echo "### $p"
  PENSIEVE_VK_PREFETCH=$p timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe 2>&1 | grep -E "^tg|GPU busy"
done; done 2>&1 | tee $OUT/pf1.txt
for p in 0 1,0.5,0.5,1,1; do
  PENSIEVE_VK_PREFETCH=$p timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 1 --profile 2>&1 | head -40
done > $OUT/pf1_profile.txt 2>&1
