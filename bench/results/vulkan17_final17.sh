#!/bin/bash
# Phase 17 record run (binaries of b9f1be8): phi3-mini / phi4-mini full bench with profile; same-call
# A/B of the RoPE fusion (PENSIEVE_VK_ATTN_ROPE=0 against the default), x2; server, 20 clients.
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
for like in phi3-mini phi4-mini; do
  $D/pensieve make-model --like $like --random --out /tmp/$like --tokenizer tests/data/tokenizers/phi3 > /dev/null 2>&1
  timeout 200 $D/pensieve bench --model /tmp/$like --device vulkan --batch 1,4,8,16,20,32 --profile > $OUT/bench_$like.txt 2>&1
done
for rep in 1 2; do for e in PENSIEVE_VK_ATTN_ROPE=0 X=0; do
  echo "### $e"
  env $e timeout 150 $D/pensieve bench --model /tmp/phi3-mini --device vulkan -p 0 -n 128 --no-probe --batch 1,8,16,20,24,32 2>&1 | grep -E "^tg|GPU busy|batched"
done; done > $OUT/ab.txt
timeout 250 python3 bench/bench_server.py --bin $D/pensieve --model /tmp/phi3-mini --device vulkan --tokens 256 --soak-requests 5 --out $OUT/server.jsonl > $OUT/server.txt 2>&1
grep -E "^(pp|tg|batched)|GPU busy" $OUT/bench_*.txt; cat $OUT/ab.txt; grep -h "\[bench\]" $OUT/server.txt | tail -20
