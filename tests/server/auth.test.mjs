// --api-key: both SDKs authenticate with it (x-api-key or Authorization: Bearer) and get a 401
// in their own error class without it. /health stays open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startServer } from './harness.mjs';

let srv;
before(async () => { srv = await startServer(['--api-key', 'sk-local-test', '--max-queue', '0', '--parallel', '1']); });
after(async () => { await srv.stop(); });

const req = { model: 'claude-sonnet-5-5', max_tokens: 4, temperature: 0, messages: [{ role: 'user', content: 'Hi' }] };

test('right key works, wrong key is a 401 in each SDK', async () => {
  const good = new Anthropic({ baseURL: srv.url, apiKey: 'sk-local-test', maxRetries: 0 });
  assert.equal((await good.messages.create(req)).type, 'message');
  const bearer = new Anthropic({ baseURL: srv.url, authToken: 'sk-local-test', apiKey: null, maxRetries: 0 });
  assert.equal((await bearer.messages.create(req)).type, 'message');
  const bad = new Anthropic({ baseURL: srv.url, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(bad.messages.create(req),
    (e) => e instanceof Anthropic.AuthenticationError && e.error.error.type === 'authentication_error');
  const oa = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-local-test', maxRetries: 0 });
  assert.equal((await oa.chat.completions.create(req)).object, 'chat.completion');
  const oaBad = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(oaBad.chat.completions.create(req), (e) => e instanceof OpenAI.AuthenticationError);
  assert.equal((await fetch(`${srv.url}/health`)).status, 200);
});

test('a full queue is 529 overloaded_error (Anthropic) and 429 (OpenAI)', async () => {
  const a = new Anthropic({ baseURL: srv.url, apiKey: 'sk-local-test', maxRetries: 0 });
  const o = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-local-test', maxRetries: 0 });
  const controller = new AbortController();
  const long = await a.messages.create({ ...req, max_tokens: 3000, stream: true }, { signal: controller.signal });
  const it = long[Symbol.asyncIterator]();
  await it.next();  // message_start: the one slot is taken
  await assert.rejects(a.messages.create(req), (e) => e.status === 529 && e.error.error.type === 'overloaded_error');
  await assert.rejects(o.chat.completions.create(req), (e) => e instanceof OpenAI.RateLimitError);
  controller.abort();
  await it.return?.();
});
