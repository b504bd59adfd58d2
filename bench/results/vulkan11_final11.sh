#!/bin/bash
# Phase 11 record: GPU tests, full bench (phi3-mini, phi4-mini) with profiles, server bench.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/gpu.txt 2>&1
( timeout 200 $D/test_vulkan_ops 2>&1 | grep -E "backend|MLP|OK \]|FAIL|PASSED|Failure|SMs";
  timeout 200 $D/test_engine --gtest_filter='*ulkan*' 2>&1 | grep -E "OK \]|FAIL|PASSED|Failure";
  PENSIEVE_GOLDEN_VULKAN_ONLY=1 timeout 300 $D/test_model_golden 2>&1 | grep -E 'OK \]|FAIL|PASSED|Failure' ) > $OUT/tests.txt 2>&1
cat $OUT/tests.txt | grep -E "PASSED|FAIL"
for m in phi3-mini phi4-mini; do
  $D/pensieve make-model --like $m --random --out /tmp/$m --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
  PENSIEVE_VK_PIPELINE_STATS=1 timeout 240 $D/pensieve bench --model /tmp/$m --device vulkan --batch 1,4,16,20,32 --profile > $OUT/bench_$m.txt 2>&1
  grep -E "^(pp|tg|batched|read|device)" $OUT/bench_$m.txt
done
for r in 1 2 3; do for m in phi3-mini phi4-mini; do timeout 100 $D/pensieve bench --model /tmp/$m --device vulkan -p 512 -n 0 --no-probe >> $OUT/pp_again.txt 2>&1; done; done; grep pp512 $OUT/pp_again.txt
timeout 250 python3 bench/bench_server.py --bin $D/pensieve --model /tmp/phi3-mini --device vulkan --tokens 256 --soak-requests 5 --out $OUT/server.jsonl > $OUT/server.txt 2>&1
tail -25 $OUT/server.txt
