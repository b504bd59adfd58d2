#!/bin/bash
# AFRAG first run: GPU tests, then batched decode with mmq4_frag against PENSIEVE_VK_FRAG=0, and a tuning sweep.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 200 $D/test_vulkan_ops --gtest_filter='*Matmul*:*Coop*:*Recorded*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure|Expected|Which|got|NMSE|error" | head -60 ) > $OUT/tests.txt 2>&1
( timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|OK \]|Failure" | head -20
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' | head -20 ) >> $OUT/tests.txt 2>&1
cat $OUT/tests.txt | head -90
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
PENSIEVE_VK_PIPELINE_STATS=1 timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 16 --no-probe --batch 32 --profile > $OUT/bench_prof.txt 2>&1
grep -E "mmq4_frag|probe" $OUT/bench_prof.txt | head -8 | cut -c1-300
grep -E "^(tg|batched)|sequences decode|ms/step|mmq4|attention|rope" $OUT/bench_prof.txt | head -40
for e in "PENSIEVE_VK_FRAG=0" "X=0"; do
  echo "### $e"; env $e timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,16,20,32 2>&1 | grep -E "^tg|batched"
done
for cfg in 4,2,1 4,2,3 4,1,2 4,1,3 8,1,2 8,1,3 8,2,2 4,2,2,528 4,2,2,132 4,1,2,528 8,1,2,528 8,1,2,132; do
  echo "### frag $cfg"; PENSIEVE_VK_FRAG=$cfg timeout 60 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 64 --no-probe --batch 16,20,32 2>&1 | grep -E "batched|rror"
done
