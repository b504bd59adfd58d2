// The official OpenAI TypeScript SDK against `pensieve serve` (chat completions).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './harness.mjs';

let srv, client;
before(async () => {
  srv = await startServer();
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => { await srv.stop(); });

const base = { model: 'gpt-4o-mini', max_tokens: 16, temperature: 0 };
const msgs = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello' }];

test('chat.completions.create: completion shape and usage', async () => {
  const r = await client.chat.completions.create({ ...base, messages: msgs });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'phi3-tiny');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 16);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 16);
  // max_completion_tokens is the same limit.
  const r2 = await client.chat.completions.create({ model: 'x', temperature: 0, max_completion_tokens: 16, messages: msgs });
  assert.equal(r2.choices[0].message.content, r.choices[0].message.content);
});

test('stream: chunks concatenate to the non-streamed text; include_usage adds a usage chunk', async () => {
  const plain = await client.chat.completions.create({ ...base, messages: msgs });
  for (const include_usage of [false, true]) {
    const stream = await client.chat.completions.create({
      ...base, messages: msgs, stream: true, ...(include_usage ? { stream_options: { include_usage } } : {}),
    });
    let text = '', finish = null, usage = null, n = 0;
    for await (const chunk of stream) {
      n++;
      if (chunk.usage) usage = chunk.usage;
      const ch = chunk.choices[0];
      if (!ch) continue;
      if (ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.ok(n >= 3);
    assert.equal(text, plain.choices[0].message.content);
    assert.equal(finish, 'length');
    if (include_usage) assert.deepEqual(usage, plain.usage);
    else assert.equal(usage, null);
  }
  // The SDK's stream helper accumulates the same message.
  const runner = client.chat.completions.stream({ ...base, messages: msgs });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, plain.choices[0].message.content);
});

test('stop: string or list, finish_reason stop', async () => {
  const full = (await client.chat.completions.create({ ...base, max_tokens: 24, messages: msgs })).choices[0].message.content;
  const stop = full.slice(4, 9);
  for (const s of [stop, ['zzz-none', stop]]) {
    const r = await client.chat.completions.create({ ...base, max_tokens: 24, messages: msgs, stop: s });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  }
});

test('seed and penalties are accepted; multi-turn with tool calls renders', async () => {
  const r = await client.chat.completions.create({
    model: 'x', max_tokens: 8, temperature: 0.8, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: 0.5,
    tools: [{ type: 'function', function: { name: 'ls', parameters: { type: 'object', properties: {} } } }],
    messages: [
      ...msgs,
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'ls', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'a.txt' },
      { role: 'user', content: [{ type: 'text', text: 'and now?' }] },
    ],
  });
  const again = await client.chat.completions.create({
    model: 'x', max_tokens: 8, temperature: 0.8, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: 0.5,
    messages: [
      ...msgs,
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'ls', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'a.txt' },
      { role: 'user', content: [{ type: 'text', text: 'and now?' }] },
    ],
  });
  assert.equal(r.choices[0].message.content, again.choices[0].message.content, 'a seed makes sampling reproducible');
});

test('models.list and errors', async () => {
  const models = await client.models.list();
  assert.equal(models.data[0].id, 'phi3-tiny');
  await assert.rejects(client.chat.completions.create({ ...base, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.error.type === 'invalid_request_error');
  await assert.rejects(client.chat.completions.create({ ...base, n: 2, messages: msgs }),
    (e) => e.status === 400 && /n: 2 is not supported/.test(e.message));
});
