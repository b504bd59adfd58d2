#!/usr/bin/env node
// Server benchmark: starts `pensieve serve` on 127.0.0.1 and drives it over loopback with raw
// Anthropic streaming requests (fetch, no npm packages). Everything is bounded in count and time.
//
//   node bench/bench_server.mjs --bin build/pensieve --model tests/data/models/phi3-tiny \
//        [--clients 20] [--tokens 64] [--soak-requests 50] [--soak-tokens 32] [--threads N]
//        [--precision exact|fast] [--max-seconds 1800] [--out FILE]
//
// Measures:
//   1. one client: output tokens/s (sequential streams) and idle time to first token (TTFT);
//   2. N concurrent clients: aggregate output tokens/s (ratio to 1);
//   3. TTFT of a probe while N-1 other streams decode, vs idle TTFT (ratio);
//   4. soak: N clients x R requests, errors counted, server RSS sampled every 250 ms and
//      reported at 10% (warm-up), 50% and 100% of the requests; then GET /health.
// Every request has a unique prompt prefix, so the prefix cache does not flatter TTFT.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const BIN = args.bin ?? 'build/pensieve';
const MODEL = args.model ?? 'tests/data/models/phi3-tiny';
const CLIENTS = Number(args.clients ?? 20);
const TOKENS = Number(args.tokens ?? 64);
const SOAK_REQ = Number(args['soak-requests'] ?? 50);
const SOAK_TOKENS = Number(args['soak-tokens'] ?? 32);
const DEADLINE = Date.now() + Number(args['max-seconds'] ?? 1800) * 1000;  // hard stop

const extra = [...(args.threads ? ['--threads', args.threads] : []), ...(args.precision ? ['--precision', args.precision] : [])];
const srv = spawn(BIN, ['serve', '--model', MODEL, '--host', '127.0.0.1', '--port', '0', '--parallel', String(CLIENTS),
  '--quiet', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  let out = '';
  srv.stdout.on('data', (d) => { out += d; const m = out.match(/http:\/\/127\.0\.0\.1:\d+/); if (m) resolve(m[0]); });
  srv.on('exit', (c) => reject(new Error(`server exited ${c}`)));
});
const rssMiB = () => {
  const m = readFileSync(`/proc/${srv.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
};

let uniq = 0;
const prompt = () => `Request ${++uniq} ${Math.random().toString(36).slice(2)}. ` +
  'Summarise the following notes about the project and list the open questions. '.repeat(3);

// One streamed request; resolves {ttft, tokens, seconds, ok, error}.
async function stream(maxTokens, onFirst = () => {}) {
  if (Date.now() > DEADLINE) throw new Error('benchmark deadline passed');
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'bench', max_tokens: maxTokens, temperature: 0, stream: true,
      messages: [{ role: 'user', content: prompt() }] }),
  });
  if (res.status !== 200) return { ok: false, error: `HTTP ${res.status}: ${await res.text()}` };
  const dec = new TextDecoder();
  let buf = '', ttft = null, tokens = 0, stopped = false, error = null;
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const name = ev.match(/^event: (\S+)/)?.[1];
      if (name === 'content_block_delta' && ttft === null) { ttft = performance.now() - t0; onFirst(); }
      if (name === 'message_delta') tokens = JSON.parse(ev.slice(ev.indexOf('data: ') + 6)).usage.output_tokens;
      if (name === 'message_stop') stopped = true;
      if (name === 'error') error = ev;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return { ok: stopped && !error, error: error ?? (stopped ? null : 'stream ended without message_stop'), ttft, tokens, seconds };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const results = {};
const log = (...a) => console.error('[bench]', ...a);

// Warm-up (page in the weights, first allocations).
for (let i = 0; i < 3; i++) await stream(8);

// 1. One client.
{
  const runs = [];
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) runs.push(await stream(TOKENS));
  const secs = (performance.now() - t0) / 1000;
  const tokens = runs.reduce((s, r) => s + r.tokens, 0);
  results.single_tok_s = tokens / secs;
  results.idle_ttft_ms = median(runs.map((r) => r.ttft));
  log(`1 client: ${results.single_tok_s.toFixed(1)} tok/s, idle TTFT ${results.idle_ttft_ms.toFixed(1)} ms`);
}

// 2. N concurrent clients, 2 requests each.
{
  const t0 = performance.now();
  const per = await Promise.all(Array.from({ length: CLIENTS }, async () => {
    const r1 = await stream(TOKENS);
    const r2 = await stream(TOKENS);
    return [r1, r2];
  }));
  const secs = (performance.now() - t0) / 1000;
  const flat = per.flat();
  results.concurrent_errors = flat.filter((r) => !r.ok).length;
  results.concurrent_tok_s = flat.reduce((s, r) => s + (r.tokens ?? 0), 0) / secs;
  results.concurrent_ratio = results.concurrent_tok_s / results.single_tok_s;
  log(`${CLIENTS} clients: ${results.concurrent_tok_s.toFixed(1)} tok/s aggregate = ${results.concurrent_ratio.toFixed(2)}x one client`);
}

// 3. TTFT while N-1 others decode (long streams), vs idle.
{
  let decoding = 0, allDecoding;
  const ready = new Promise((r) => { allDecoding = r; });
  const busy = Array.from({ length: CLIENTS - 1 }, () => stream(TOKENS * 8, () => { if (++decoding === CLIENTS - 1) allDecoding(); }));
  await ready;  // every background stream is past its prefill
  const probes = [];
  for (let i = 0; i < 5; i++) probes.push(await stream(4));
  results.busy_ttft_ms = median(probes.map((r) => r.ttft));
  results.ttft_ratio = results.busy_ttft_ms / results.idle_ttft_ms;
  const bg = await Promise.all(busy);
  results.busy_errors = bg.filter((r) => !r.ok).length + probes.filter((r) => !r.ok).length;
  log(`TTFT with ${CLIENTS - 1} others decoding: ${results.busy_ttft_ms.toFixed(1)} ms = ${results.ttft_ratio.toFixed(2)}x idle`);
}

// 4. Soak.
{
  const rss = [];  // [requests done, MiB]
  let done = 0;
  const total = CLIENTS * SOAK_REQ;
  const sampler = setInterval(() => rss.push([done, rssMiB()]), 250);
  const errors = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    for (let i = 0; i < SOAK_REQ; i++) {
      const r = await stream(SOAK_TOKENS).catch((e) => ({ ok: false, error: String(e) }));
      if (!r.ok) errors.push(r.error);
      done++;
    }
  }));
  clearInterval(sampler);
  rss.push([done, rssMiB()]);
  // RSS when 10% / 50% of the requests were done, the largest after 10%, and at the end.
  const at = (f) => rss.find(([d]) => d >= total * f)?.[1] ?? rss[rss.length - 1][1];
  results.soak_requests = total;
  results.soak_errors = errors.length;
  results.soak_seconds = (performance.now() - t0) / 1000;
  results.soak_rss_mib = { at_10pct: at(0.1), at_50pct: at(0.5), max_after_10pct: Math.max(...rss.filter(([d]) => d >= total * 0.1).map(([, m]) => m)), end: rss[rss.length - 1][1] };
  const r = results.soak_rss_mib;
  log(`soak: ${total} requests in ${results.soak_seconds.toFixed(1)} s, ${errors.length} errors, RSS MiB ` +
      `at 10% ${r.at_10pct.toFixed(1)}, at 50% ${r.at_50pct.toFixed(1)}, max after 10% ${r.max_after_10pct.toFixed(1)}, end ${r.end.toFixed(1)}`);
  if (errors.length) log('first error:', errors[0]);
  const h = await fetch(`${url}/health`);
  results.health_after = h.status;
}

srv.kill('SIGTERM');
const code = await new Promise((r) => srv.on('exit', r));
results.clean_exit = code === 0;
const line = JSON.stringify({ model: MODEL, precision: args.precision ?? 'fast', clients: CLIENTS, tokens: TOKENS, ...results });
console.log(line);
if (args.out) writeFileSync(args.out, line + '\n', { flag: 'a' });
process.exit(results.soak_errors || results.concurrent_errors || results.busy_errors || code ? 1 : 0);
