#!/bin/bash
# Phase 14 repeat: the 20-client server ratio and batched 20 / batched 1, twice more on the final binary.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
$D/pensieve make-model --like phi3-mini --random --out /tmp/phi3-mini --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
for rep in 1 2; do
  timeout 250 python3 bench/bench_server.py --bin $D/pensieve --model /tmp/phi3-mini --device vulkan --tokens 256 --soak-requests 5 --out $OUT/server_rep$rep.jsonl > $OUT/server_rep$rep.txt 2>&1
  timeout 100 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,20 > $OUT/bench_rep$rep.txt 2>&1
done
grep -h "\[bench\]" $OUT/server_rep*.txt; grep -h batched $OUT/bench_rep*.txt
