// 20 concurrent streaming clients (half Anthropic, half OpenAI SDK): every one completes and its
// text equals what it gets alone (greedy decoding is independent of batching); /health answers
// during and after; a client that aborts mid-stream gets its sequence cancelled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startServer, metric, waitFor } from './harness.mjs';

let srv, anthropic, openai;
before(async () => {
  srv = await startServer(['--parallel', '20']);
  anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => { await srv.stop(); });

const N = 20, MAX = 48;
const prompts = Array.from({ length: N }, (_, i) => `Client ${i}: ${'tell me about topic '.repeat(1 + (i % 5))}${i * 7}`);

async function streamOne(i) {
  let text = '';
  if (i % 2 === 0) {
    const s = anthropic.messages.stream({
      model: 'claude-haiku-5-5', max_tokens: MAX, temperature: 0, messages: [{ role: 'user', content: prompts[i] }],
    });
    s.on('text', (t) => { text += t; });
    const m = await s.finalMessage();
    assert.equal(m.usage.output_tokens, MAX);
    assert.equal(m.content[0].text, text);
  } else {
    const s = await openai.chat.completions.create({
      model: 'gpt-4o', max_tokens: MAX, temperature: 0, stream: true, messages: [{ role: 'user', content: prompts[i] }],
    });
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
  }
  return text;
}

test('20 concurrent streams each equal their single-client output', async () => {
  const alone = [];
  for (let i = 0; i < N; i++) alone.push(await streamOne(i));
  let healthOk = 0, polling = true;
  const poller = (async () => {
    while (polling) {
      const h = await fetch(`${srv.url}/health`);
      if (h.status === 200) healthOk++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const steps0 = await metric(srv.url, 'pensieve_engine_steps_total');
  const tokens0 = await metric(srv.url, 'pensieve_output_tokens_total');
  const together = await Promise.all(prompts.map((_, i) => streamOne(i)));
  const steps = (await metric(srv.url, 'pensieve_engine_steps_total')) - steps0;
  const tokens = (await metric(srv.url, 'pensieve_output_tokens_total')) - tokens0;
  polling = false;
  await poller;
  for (let i = 0; i < N; i++) assert.equal(together[i], alone[i], `client ${i}`);
  // Batched: the engine made the 20 streams' tokens in far fewer steps than tokens (one client at a
  // time would need a step per token). Counted, not sampled: a poll of the active slots could miss
  // the peak on a busy machine.
  console.log(`# ${tokens} output tokens in ${steps} engine steps`);
  assert.ok(tokens >= 4 * steps, `requests ran batched (${tokens} output tokens in ${steps} engine steps)`);
  assert.ok(healthOk > 0, '/health answered while 20 streams ran');
  const h = await fetch(`${srv.url}/health`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: 'ok', model: 'phi3-tiny' });
});

test('a client that aborts mid-stream gets its sequence cancelled', async () => {
  const before = (await metric(srv.url, 'pensieve_client_disconnects_total')) ?? 0;
  const outBefore = await metric(srv.url, 'pensieve_output_tokens_total');
  const controller = new AbortController();
  const s = await anthropic.messages.create({
    model: 'x', max_tokens: 3000, temperature: 0, stream: true, messages: [{ role: 'user', content: 'Go on forever' }],
  }, { signal: controller.signal });
  let deltas = 0;
  try {
    for await (const e of s) if (e.type === 'content_block_delta' && ++deltas === 3) controller.abort();
  } catch (e) {
    if (e.name !== 'AbortError' && !/abort/i.test(String(e))) throw e;
  }
  await waitFor(async () => (await metric(srv.url, 'pensieve_client_disconnects_total')) === before + 1, 'the disconnect');
  await waitFor(async () => (await metric(srv.url, 'pensieve_active_slots')) === 0, 'the slot to free');
  assert.ok((await metric(srv.url, 'pensieve_output_tokens_total')) - outBefore < 1000, 'stopped long before max_tokens');
  assert.equal(await metric(srv.url, 'pensieve_kv_blocks_used'), await metric(srv.url, 'pensieve_kv_blocks_cached'),
    'no KV blocks held by a sequence');
});
