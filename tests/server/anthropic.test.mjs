// The official Anthropic TypeScript SDK against `pensieve serve` (phi3-tiny: gibberish, but
// deterministic at temperature 0).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, metric } from './harness.mjs';

let srv, client;
before(async () => {
  srv = await startServer();
  client = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0 });
});
after(async () => { await srv.stop(); });

const user = (content) => ({ role: 'user', content });
const base = { model: 'claude-sonnet-5-5', max_tokens: 16, temperature: 0 };

test('messages.create: message shape, usage by our tokenizer', async () => {
  const m = await client.messages.create({ ...base, messages: [user('Hello')] });
  assert.match(m.id, /^msg_[0-9A-Za-z]{24}$/);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'phi3-tiny', 'reports our model id whatever the client asked for');
  assert.equal(m.content.length, 1);
  assert.equal(m.content[0].type, 'text');
  assert.ok(m.content[0].text.length > 0);
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.stop_sequence, null);
  assert.equal(m.usage.output_tokens, 16);
  const count = await client.messages.countTokens({ model: base.model, messages: [user('Hello')] });
  assert.equal(count.input_tokens, 4);  // <|user|> ▁Hello <|end|> <|assistant|>
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, count.input_tokens);
  // Same request again: same greedy text.
  const again = await client.messages.create({ ...base, messages: [user('Hello')] });
  assert.equal(again.content[0].text, m.content[0].text);
});

test('messages.stream: events, text and final message equal the non-streamed ones', async () => {
  const params = { ...base, max_tokens: 24, messages: [user('Tell me a story')] };
  const plain = await client.messages.create(params);
  const stream = client.messages.stream(params);
  const types = [];
  let text = '';
  stream.on('streamEvent', (e) => types.push(e.type));
  stream.on('text', (t) => { text += t; });
  const final = await stream.finalMessage();
  assert.equal(text, plain.content[0].text);
  assert.deepEqual(final.content, plain.content);
  assert.equal(final.stop_reason, 'max_tokens');
  assert.equal(final.usage.output_tokens, 24);
  assert.equal(final.usage.input_tokens + final.usage.cache_read_input_tokens,
               plain.usage.input_tokens + plain.usage.cache_read_input_tokens);
  assert.equal(types[0], 'message_start');
  assert.equal(types[1], 'content_block_start');
  assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.ok(types.slice(2, -3).every((t) => t === 'content_block_delta'));
});

test('create({stream: true}): raw events', async () => {
  const s = await client.messages.create({ ...base, stream: true, messages: [user('Hi')] });
  const events = [];
  for await (const e of s) events.push(e);
  assert.equal(events[0].type, 'message_start');
  assert.equal(events[0].message.usage.output_tokens, 0);
  assert.deepEqual(events[1], { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
  const delta = events.find((e) => e.type === 'message_delta');
  assert.equal(delta.delta.stop_reason, 'max_tokens');
  assert.equal(delta.usage.output_tokens, 16);
});

test('system prompts: string, blocks and role "system" turns render the same prompt', async () => {
  const sys = 'You are terse.';
  const count = (p) => client.messages.countTokens({ model: base.model, ...p });
  const a = await count({ system: sys, messages: [user('Hi')] });
  const b = await count({ system: [{ type: 'text', text: sys, cache_control: { type: 'ephemeral' } }], messages: [user('Hi')] });
  const c = await count({ messages: [{ role: 'system', content: sys }, user('Hi')] });
  const none = await count({ messages: [user('Hi')] });
  assert.equal(a.input_tokens, b.input_tokens);
  assert.equal(a.input_tokens, c.input_tokens);
  assert.ok(a.input_tokens > none.input_tokens);
  const ra = await client.messages.create({ ...base, system: sys, messages: [user('Hi')] });
  const rc = await client.messages.create({ ...base, messages: [{ role: 'system', content: sys }, user('Hi')] });
  assert.equal(ra.content[0].text, rc.content[0].text);
  // A system turn later in the conversation (recent Claude Code) is accepted too.
  const late = await client.messages.create({
    ...base, messages: [user('Hi'), { role: 'assistant', content: 'Hello.' }, { role: 'system', content: 'Be brief.' }, user('More')],
  });
  assert.equal(late.type, 'message');
});

test('multi-turn and assistant prefill', async () => {
  const turns = [user('Hi'), { role: 'assistant', content: 'Hello! How can I help?' }, user('Tell me more')];
  const m = await client.messages.create({ ...base, messages: turns });
  assert.ok(m.usage.input_tokens + m.usage.cache_read_input_tokens > 10);
  // A final assistant message is continued: the prompt ends with its text.
  const pre = await client.messages.create({ ...base, messages: [user('Hi'), { role: 'assistant', content: 'Well,' }] });
  assert.equal(pre.type, 'message');
  const n1 = await client.messages.countTokens({ model: 'x', messages: [user('Hi')] });
  const n2 = await client.messages.countTokens({ model: 'x', messages: [user('Hi'), { role: 'assistant', content: 'Well,' }] });
  assert.ok(n2.input_tokens > n1.input_tokens);
});

test('content blocks: text joined, tool blocks and images rendered, tools ignored', async () => {
  const m = await client.messages.create({
    ...base,
    tools: [{ name: 'ls', description: 'list files', input_schema: { type: 'object', properties: {} } }],
    tool_choice: { type: 'auto' },
    metadata: { user_id: 'u1' },
    messages: [
      user([{ type: 'text', text: 'List files.' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }]),
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'ls', input: { path: '.' } }] },
      user([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'a.txt\nb.txt' }]),
    ],
  });
  assert.equal(m.content[0].type, 'text');
});

test('stop sequences: text stops before the match, stop_reason stop_sequence', async () => {
  const params = { ...base, max_tokens: 24, messages: [user('Hello')] };
  const full = (await client.messages.create(params)).content[0].text;
  const stop = full.slice(6, 11);
  const m = await client.messages.create({ ...params, stop_sequences: ['never-appears', stop] });
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, stop);
  assert.equal(m.content[0].text, full.slice(0, full.indexOf(stop)));
  const s = client.messages.stream({ ...params, stop_sequences: [stop] });
  let text = '';
  s.on('text', (t) => { text += t; });
  const f = await s.finalMessage();
  assert.equal(text, full.slice(0, full.indexOf(stop)));
  assert.equal(f.stop_reason, 'stop_sequence');
  assert.equal(f.stop_sequence, stop);
});

test('models.list', async () => {
  const page = await client.models.list();
  assert.equal(page.data[0].id, 'phi3-tiny');
});

test('errors surface as the SDK error classes', async () => {
  await assert.rejects(client.messages.create({ ...base, max_tokens: 0, messages: [user('Hi')] }),
    (e) => e instanceof Anthropic.BadRequestError && e.error.error.type === 'invalid_request_error');
  await assert.rejects(client.messages.create({ ...base, messages: [] }),
    (e) => e instanceof Anthropic.BadRequestError && /at least one message/.test(e.message));
  const long = Array.from({ length: 5000 }, (_, i) => `word${i}`).join(' ');
  await assert.rejects(client.messages.create({ ...base, messages: [user(long)] }),
    (e) => e.status === 400 && /prompt is too long: \d+ tokens, but the context window is 4096 tokens/.test(e.message));
  await assert.rejects(client.messages.create({ ...base, stream: true, max_tokens: 99999, messages: [user('Hi')] }),
    (e) => e.status === 400 && /max_tokens/.test(e.message));
});

test('Claude Code billing header: the prompt cache survives a new cch hash every turn', async () => {
  const rules = Array.from({ length: 60 }, (_, i) => `Rule ${i}: answer carefully.`).join(' ');
  const req = (cch) => ({
    ...base, max_tokens: 4,
    system: [
      { type: 'text', text: `x-anthropic-billing-header: cc_version=2.1.37.abc; cc_entrypoint=cli; cch=${cch};` },
      { type: 'text', text: 'You are Claude Code, an agentic coding tool.' },
      { type: 'text', text: rules, cache_control: { type: 'ephemeral' } },
    ],
    messages: [user('hi')],
  });
  const before = await metric(srv.url, 'pensieve_cached_prompt_tokens_total');
  const first = await client.messages.create(req('1a2b3'));
  const second = await client.messages.create(req('9f8e7'));
  const total = second.usage.input_tokens + second.usage.cache_read_input_tokens;
  assert.equal(first.usage.input_tokens + first.usage.cache_read_input_tokens, total);
  assert.ok(second.usage.cache_read_input_tokens >= total - 16, `cached ${second.usage.cache_read_input_tokens} of ${total}`);
  assert.ok((await metric(srv.url, 'pensieve_cached_prompt_tokens_total')) - before >= total - 16);
});
