#!/bin/bash
# Vulkan performance run on the lent GPU (device tool). The carried folder (.devcarry/vk) holds this
# script and binaries built on Debian 12 from this worktree; .devcarry/gl holds the loader .debs
# (libvulkan1 + glvnd: NVIDIA's ICD needs libglvnd). Steps (each skippable): the Vulkan tests of the
# ops, the engine and the golden logits, the demo byte-exact check, the op sweep, and pensieve bench
# on random full-size models made there. Logs go to $OUT; a short summary is printed last.
#   MODELS="phi3-mini phi4-mini" SKIP_TESTS=1 SWEEP="--sweep --check" bash .devcarry/vk/vulkan_device_run.sh
set -u
REPO=$PWD
D=$(cd "$(dirname "$0")" && pwd)
for f in "$D"/../gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # libcpp-httplib (pensieve's server)
# The tests find their data at the path compiled in (SRC: the checkout the binaries were built in).
SRC=${SRC:-/work/main}
if [ "$REPO" != "$SRC" ]; then mkdir -p "$SRC" && ln -sfn "$REPO/tests" "$SRC/tests"; fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv > "$OUT/gpu.txt"
cd "$D"
step() { local name=$1 t=$2; shift 2; echo "=== $name" >> "$OUT/summary.txt"; ( set -o pipefail; timeout "$t" "$@" > "$OUT/$name.log" 2>&1 ); echo "=== $name rc=$?" >> "$OUT/summary.txt"; }
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  step ops 120 ./test_vulkan_ops --gtest_brief=1
  PENSIEVE_VK_DEVICE=0 step engine 180 ./test_engine --gtest_brief=1 --gtest_filter='EngineVulkan.*:ModelDevice.*:Sampler.*'
  PENSIEVE_VK_DEVICE=0 PENSIEVE_GOLDEN_VULKAN_ONLY=1 step golden 180 ./test_model_golden --gtest_brief=1
  ./pensieve run --model demo --prompt "" --temperature 0 --max-tokens 200 --device vulkan > "$OUT/demo.txt" 2>"$OUT/demo.err"
  cmp "$OUT/demo.txt" "$REPO/tests/data/stories260K/expected_greedy_n200.txt" && echo "demo byte-exact" >> "$OUT/summary.txt"
  tail -1 "$OUT/demo.err" >> "$OUT/summary.txt"
  cat "$OUT/ops.log" "$OUT/engine.log" "$OUT/golden.log" "$OUT/demo.err" > "$OUT/tests.log"; rm -f "$OUT/ops.log" "$OUT/engine.log" "$OUT/golden.log" "$OUT/demo.err" "$OUT/demo.txt"
  grep -hE "PASSED|FAILED|SKIPPED" "$OUT/tests.log" >> "$OUT/summary.txt"
fi
[ -n "${SWEEP:-}" ] && PENSIEVE_VK_PIPELINE_STATS=1 step sweep ${SWEEP_T:-240} ./pensieve-vulkan-bench $SWEEP
for m in ${MODELS:-phi3-mini}; do
  tok=phi3; case $m in phi4*) tok=phi4-mini;; esac
  rm -rf /tmp/$m; ./pensieve make-model --like $m --random --out /tmp/$m --tokenizer "$REPO/tests/data/tokenizers/$tok" > /dev/null 2>&1
  PENSIEVE_VK_PIPELINE_STATS=1 step bench_$m ${BENCH_T:-300} ./pensieve bench --model /tmp/$m --device vulkan -p 512 -n 128 --batch ${BATCH:-1,4,16,20,32} --profile ${BENCH_ARGS:-}
  grep -E "^(pp512|tg128|batched)" "$OUT/bench_$m.log" >> "$OUT/summary.txt"
done
# Extra A/B commands (EXTRA="cmd1;cmd2"), each logged to extra.log.
if [ -n "${EXTRA:-}" ]; then
  IFS=';' read -ra cmds <<< "$EXTRA"
  for c in "${cmds[@]}"; do echo "### $c" >> "$OUT/extra.log"; ( timeout 120 bash -c "$c" >> "$OUT/extra.log" 2>&1 ); done
  grep -E "^###|^(pp512|tg128|batched)" "$OUT/extra.log" >> "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
