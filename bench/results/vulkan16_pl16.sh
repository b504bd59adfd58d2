#!/bin/bash
# decode_layer with head_dim 128 keys in two halves; argmax only up to 65,536; phi3 / phi4 A/B.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 200 $D/test_model_golden 2>&1 | grep -E "FAIL|PASSED|Failure|gave up" | head -30
for like in phi3-mini phi4-mini; do
  $D/pensieve make-model --like $like --random --out /tmp/$like --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
  B="--model /tmp/$like --device vulkan -p 0 -n 128 --no-probe"
  for rep in 1 2 3; do
    echo "### $like base"; PENSIEVE_VK_PERSISTENT=0 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror"
    echo "### $like persistent"; PENSIEVE_VK_PIPELINE_STATS=1 timeout 60 $D/pensieve bench $B 2>&1 | grep -E "^tg|GPU busy|gave up|rror|decode_layer" | sed 's/Binary Size=[0-9]* Stack Size=0 //'
  done
done 2>&1 | tee $OUT/pl16.txt
