#!/usr/bin/env bash
# A/B of pensieve-kernel-bench binaries on a noisy machine: runs them in turn N times (A B A B ...)
# with one filter and prints, per benchmark, each binary's median and range over its N runs.
# Figures: rows_tokens_per_s in M/s where the benchmark has it, else bytes_per_second in GB/s,
# else GMAC_per_s; `probe` is the run's read_bw_GBps.
#
#   cp build/bench/pensieve-kernel-bench /tmp/bench_a     # before the change
#   ...change, rebuild...
#   bench/results/ab_medians.sh 'matmul_q4/phi3_qkv/batch:(1|16)/fast' 5 /tmp/bench_a build/bench/pensieve-kernel-bench
set -euo pipefail
filter=$1 n=$2
shift 2
out=$(mktemp -d)
for i in $(seq "$n"); do
  k=0
  for bin in "$@"; do
    "$bin" --benchmark_filter="$filter" --benchmark_format=json 2>/dev/null >"$out/$k.$i.json"
    k=$((k + 1))
  done
done
python3 - "$out" "$n" "$@" <<'PY'
import json, statistics, sys
out, n, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {}
for k in range(len(bins)):
    for i in range(1, n + 1):
        j = json.load(open(f"{out}/{k}.{i}.json"))
        res.setdefault(("probe", k), []).append(float(j["context"].get("read_bw_GBps", 0)))
        for b in j["benchmarks"]:
            v = b.get("rows_tokens_per_s", 0) / 1e6 or b.get("bytes_per_second", 0) / 1e9 or b.get("GMAC_per_s", 0)
            res.setdefault((b["name"].split("/min_time")[0].split("/iterations")[0], k), []).append(v)
for k, bin in enumerate(bins):
    print(f"[{k}] {bin}")
for name in sorted({key[0] for key in res}):
    cells = [f"[{k}] {statistics.median(res[(name, k)]):8.2f} ({min(res[(name, k)]):.1f}-{max(res[(name, k)]):.1f})"
             for k in range(len(bins)) if (name, k) in res]
    print(f"{name:42s} " + "  ".join(cells))
PY
rm -r "$out"
