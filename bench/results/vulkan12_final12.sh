#!/bin/bash
# Phase 12 record run: GPU tests, then per model the full bench (with profile), pp512 x3, and long
# prompts with the automatic prefill attention against narrow tiles only (PENSIEVE_VK_FLASH_WIDE=0).
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -40
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' | head -20 ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
for like in phi3-mini phi4-mini; do
  $D/pensieve make-model --like $like --random --out /tmp/$like --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
  timeout 200 $D/pensieve bench --model /tmp/$like --device vulkan --batch 1,4,16,20,32 --profile > $OUT/bench_$like.txt 2>&1
  for rep in 1 2 3; do timeout 100 $D/pensieve bench --model /tmp/$like --device vulkan -p 512 -n 0 --no-probe >> $OUT/pp512.txt 2>&1; done
  long=4096; [ $like = phi4-mini ] && long=8192
  for P in 2048 $long; do for cfg in auto:X=0 narrow:PENSIEVE_VK_FLASH_WIDE=0; do
    echo "### $like p$P ${cfg%%:*}" >> $OUT/long.txt
    env ${cfg#*:} timeout 100 $D/pensieve bench --model /tmp/$like --device vulkan -p $P -n 0 --no-probe --profile >> $OUT/long.txt 2>&1
  done; done
done
grep -E "^(pp|tg|batched)" $OUT/bench_*.txt; grep -E "^pp512 " $OUT/pp512.txt; grep -E "^###|^pp[0-9]+ |attention/" $OUT/long.txt
