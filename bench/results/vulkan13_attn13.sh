#!/bin/bash
# One-sequence decode: attn_dec4 launch shapes (PENSIEVE_VK_ATTN=wg,kb,vb) at tg128, alternating with the default.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do for cfg in default 64,12,16 256,12,16 64,12,8 128,12,8 64,6,8 256,12,4; do
  if [ $cfg = default ]; then e=X=0; else e=PENSIEVE_VK_ATTN=$cfg; fi
  echo "### $cfg $(env $e timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 -r 5 --no-probe 2>&1 | grep -E '^tg|GPU busy' | tr -s ' ' | tr '\n' ' ')"
done; done | tee $OUT/attn13.txt
for cfg in default 64,12,16 256,12,16; do
  if [ $cfg = default ]; then e=X=0; else e=PENSIEVE_VK_ATTN=$cfg; fi
  echo "### $cfg"; env $e timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 -r 1 --no-probe --profile 2>&1 | grep -E "attention/"
done | tee -a $OUT/attn13.txt
