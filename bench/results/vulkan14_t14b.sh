#!/bin/bash
# After the review's cleanup (x fragments loaded once for both weight fragments): GPU tests at the
# default and the two-fragment tunings; batched figures at the default and at 8,2,1.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
( timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "FAIL|PASSED|Failure"
  for t in 4,2,2 4,2,1; do echo "## PENSIEVE_VK_FRAG=$t"; PENSIEVE_VK_FRAG=$t timeout 200 $D/test_vulkan_ops --gtest_filter='*Matmul*:*Coop*' 2>&1 | grep -E "FAIL|PASSED|Failure"; done
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "FAIL|PASSED|Failure"
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'FAIL|PASSED|Failure' ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for e in X=0 PENSIEVE_VK_FRAG=4,2,1; do
  echo "### $e"; env $e timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,8,16,20,32 2>&1 | grep -E "batched|rror"
done | tee $OUT/bench.txt
