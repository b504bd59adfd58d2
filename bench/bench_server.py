#!/usr/bin/env python3
"""Server benchmark: starts `pensieve serve` on 127.0.0.1 and drives it over loopback with raw
Anthropic streaming requests. Python standard library only, so it runs on the dev machine and on
the lent GPU machine alike. Everything is bounded in count and time.

  bench/bench_server.py --bin build/pensieve --model tests/data/models/phi3-tiny \
      [--clients 20] [--tokens 64] [--soak-requests 50] [--soak-tokens 32] [--threads N] \
      [--precision exact|fast] [--device cpu|vulkan] [--max-seconds 1800] [--out FILE] \
      [--server-args "--kv-tokens 8192"]

Measures:
  1. one client: output tokens/s (sequential streams) and idle time to first token (TTFT);
  2. N concurrent clients: aggregate output tokens/s (ratio to 1);
     for 1 and 2, the engine's steps from /metrics: count, tokens per step, ms per step (forward
     pass and all; steps that prefilled and pure decode steps apart), and the share of the wall
     time spent in steps ("busy");
  3. TTFT of a probe while N-1 other streams decode, vs idle TTFT (ratio);
  4. soak: N clients x R requests, errors counted, server RSS sampled every 250 ms and reported
     at 10% (warm-up), 50% and 100% of the requests; then GET /health.
Every request has a unique prompt prefix, so the prefix cache does not flatter TTFT.
"""
import argparse
import http.client
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--bin", default="build/pensieve")
p.add_argument("--model", default="tests/data/models/phi3-tiny")
p.add_argument("--clients", type=int, default=20)
p.add_argument("--tokens", type=int, default=64)
p.add_argument("--busy-tokens", type=int, help="tokens of each background stream in 3 (default 8 x --tokens)")
p.add_argument("--soak-requests", type=int, default=50)
p.add_argument("--soak-tokens", type=int, default=32)
p.add_argument("--threads")
p.add_argument("--precision")
p.add_argument("--device")
p.add_argument("--max-seconds", type=float, default=1800)
p.add_argument("--out")
p.add_argument("--server-args", default="", help="more `pensieve serve` options, e.g. \"--kv-tokens 8192\"")
args = p.parse_args()
deadline = time.monotonic() + args.max_seconds

cmd = [args.bin, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
       "--parallel", str(args.clients), "--quiet"]
for flag in ("threads", "precision", "device"):
    if getattr(args, flag):
        cmd += ["--" + flag, getattr(args, flag)]
cmd += args.server_args.split()
srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
port = None
for line in srv.stdout:
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
if port is None:
    sys.exit(f"server exited {srv.wait()}")


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def rss_mib():
    with open(f"/proc/{srv.pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


counter = iter(range(1, 1 << 62))
counter_lock = threading.Lock()


def prompt():
    with counter_lock:
        n = next(counter)
    return (f"Request {n} {random.getrandbits(48):x}. "
            + "Summarise the following notes about the project and list the open questions. " * 3)


def stream(max_tokens, on_first=None):
    """One streamed request: {ok, error, ttft (ms), tokens, seconds}."""
    if time.monotonic() > deadline:
        raise RuntimeError("benchmark deadline passed")
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": "bench", "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "messages": [{"role": "user", "content": prompt()}]})
    conn.request("POST", "/v1/messages", body, {"content-type": "application/json",
                                                "anthropic-version": "2023-06-01"})
    res = conn.getresponse()
    if res.status != 200:
        return {"ok": False, "error": f"HTTP {res.status}: {res.read()[:300]!r}", "tokens": 0}
    ttft, tokens, stopped, error, event = None, 0, False, None, None
    while True:
        line = res.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
            if event == "content_block_delta" and ttft is None:
                ttft = (time.monotonic() - t0) * 1000
                if on_first:
                    on_first()
            elif event == "message_stop":
                stopped = True
        elif line.startswith("data: ") and event == "message_delta":
            tokens = json.loads(line[6:])["usage"]["output_tokens"]
        elif line.startswith("data: ") and event == "error":
            error = line
    conn.close()
    return {"ok": stopped and not error, "error": error or (None if stopped else "stream ended without message_stop"),
            "ttft": ttft, "tokens": tokens, "seconds": time.monotonic() - t0}


def engine_counters():
    """The engine's step counters from GET /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for name in ("steps", "step_tokens", "step_seconds", "forward_seconds", "prefill_steps", "prefill_step_seconds"):
        m = re.search(rf"^pensieve_engine_{name}_total (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


def engine_profile(before, wall):
    """What the engine did during a phase of `wall` seconds: steps, tokens per step, ms per step
    (forward pass and host work), and the share of the wall time it was running steps."""
    after = engine_counters()
    d = {k: after[k] - before[k] for k in after}
    steps = max(d["steps"], 1)
    decode_steps = max(d["steps"] - d["prefill_steps"], 1)
    return {"steps": int(d["steps"]), "tokens_per_step": round(d["step_tokens"] / steps, 1),
            "step_ms": round(1000 * d["step_seconds"] / steps, 3),
            "forward_ms": round(1000 * d["forward_seconds"] / steps, 3),
            "prefill_steps": int(d["prefill_steps"]),
            "prefill_step_ms": round(1000 * d["prefill_step_seconds"] / max(d["prefill_steps"], 1), 3),
            "decode_step_ms": round(1000 * (d["step_seconds"] - d["prefill_step_seconds"]) / decode_steps, 3),
            "busy": round(d["step_seconds"] / wall, 3)}


def parallel(fns):
    """Runs the callables on threads, returns their results in order."""
    out = [None] * len(fns)

    def run(i):
        try:
            out[i] = fns[i]()
        except Exception as e:  # a failed request is counted, not fatal
            out[i] = {"ok": False, "error": str(e), "tokens": 0}
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


results = {}
for _ in range(3):  # warm-up: page in the weights, first allocations
    stream(8)
# ... and one burst of N clients: a GPU backend builds its pipelines for each class of step size on
# first use (NVIDIA's driver caches them on disk afterwards), which would otherwise land in 2.
parallel([lambda: stream(8) for _ in range(args.clients)])

# 1. One client.
c0, t0 = engine_counters(), time.monotonic()
runs = [stream(args.tokens) for _ in range(5)]
secs = time.monotonic() - t0
results["single_tok_s"] = sum(r["tokens"] for r in runs) / secs
results["single_engine"] = engine_profile(c0, secs)
results["idle_ttft_ms"] = statistics.median(r["ttft"] for r in runs)
log(f"1 client: {results['single_tok_s']:.1f} tok/s, idle TTFT {results['idle_ttft_ms']:.1f} ms")

# 2. N concurrent clients, 2 requests each.
c0, t0 = engine_counters(), time.monotonic()
per = parallel([lambda: [stream(args.tokens), stream(args.tokens)] for _ in range(args.clients)])
secs = time.monotonic() - t0
results["concurrent_engine"] = engine_profile(c0, secs)
flat = [r for pair in per for r in (pair if isinstance(pair, list) else [pair])]
results["concurrent_errors"] = sum(not r["ok"] for r in flat)
results["concurrent_tok_s"] = sum(r["tokens"] for r in flat) / secs
results["concurrent_ratio"] = results["concurrent_tok_s"] / results["single_tok_s"]
log(f"{args.clients} clients: {results['concurrent_tok_s']:.1f} tok/s aggregate = "
    f"{results['concurrent_ratio']:.2f}x one client")

# 3. TTFT while N-1 others decode (long streams), vs idle.
decoding = threading.Semaphore(0)
busy_out = []
busy = threading.Thread(target=lambda: busy_out.extend(
    parallel([lambda: stream(args.busy_tokens or args.tokens * 8, decoding.release) for _ in range(args.clients - 1)])))
busy.start()
for _ in range(args.clients - 1):  # every background stream is past its prefill
    decoding.acquire()
probes = [stream(4) for _ in range(5)]
results["busy_ttft_ms"] = statistics.median(r["ttft"] for r in probes)
results["ttft_ratio"] = results["busy_ttft_ms"] / results["idle_ttft_ms"]
busy.join()
results["busy_errors"] = sum(not r["ok"] for r in busy_out + probes)
log(f"TTFT with {args.clients - 1} others decoding: {results['busy_ttft_ms']:.1f} ms = "
    f"{results['ttft_ratio']:.2f}x idle")

# 4. Soak.
total = args.clients * args.soak_requests
done = [0]
done_lock = threading.Lock()
rss = []
errors = []
stop_sampling = threading.Event()


def sample():
    while not stop_sampling.wait(0.25):
        rss.append((done[0], rss_mib()))


def soak_client():
    for _ in range(args.soak_requests):
        try:
            r = stream(args.soak_tokens)
        except Exception as e:
            r = {"ok": False, "error": str(e)}
        if not r["ok"]:
            errors.append(r["error"])
        with done_lock:
            done[0] += 1


sampler = threading.Thread(target=sample)
sampler.start()
t0 = time.monotonic()
parallel([soak_client for _ in range(args.clients)])
stop_sampling.set()
sampler.join()
rss.append((done[0], rss_mib()))


def at(frac):
    return next((m for d, m in rss if d >= total * frac), rss[-1][1])


results["soak_requests"] = total
results["soak_errors"] = len(errors)
results["soak_seconds"] = time.monotonic() - t0
results["soak_rss_mib"] = {"at_10pct": at(0.1), "at_50pct": at(0.5),
                           "max_after_10pct": max(m for d, m in rss if d >= total * 0.1), "end": rss[-1][1]}
r = results["soak_rss_mib"]
log(f"soak: {total} requests in {results['soak_seconds']:.1f} s, {len(errors)} errors, RSS MiB at 10% "
    f"{r['at_10pct']:.1f}, at 50% {r['at_50pct']:.1f}, max after 10% {r['max_after_10pct']:.1f}, end {r['end']:.1f}")
if errors:
    log("first error:", errors[0])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("GET", "/health")
results["health_after"] = conn.getresponse().status

srv.terminate()
code = srv.wait(timeout=60)
results["clean_exit"] = code == 0
line = json.dumps({"model": args.model, "precision": args.precision or "fast", "device": args.device or "auto",
                   "clients": args.clients, "tokens": args.tokens, "server_args": args.server_args, **results})
print(line, flush=True)
if args.out:
    with open(args.out, "a") as f:
        f.write(line + "\n")
sys.exit(1 if results["soak_errors"] or results["concurrent_errors"] or results["busy_errors"] or code else 0)
