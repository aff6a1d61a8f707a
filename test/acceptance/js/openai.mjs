// Drives a moltbot node with the npm `openai` SDK and prints one JSON object:
// what each case saw, or {error} for a case that threw. The Go test
// (test/acceptance/openai_test.go) judges it; this script asserts nothing.
// Env: MOLTBOT_URL (http://127.0.0.1:PORT), MOLTBOT_API_KEY,
// MOLTBOT_EMBED_MODEL.
import OpenAI from 'openai';
import { PNG, WEATHER_TOOL, PERSON_SCHEMA, runCases } from './common.mjs';

const client = new OpenAI({
  baseURL: process.env.MOLTBOT_URL + '/v1',
  apiKey: process.env.MOLTBOT_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const model = process.env.MOLTBOT_MODEL || 'moltbot';
const hello = [{ role: 'user', content: 'hello' }];
const weather = [{ role: 'user', content: 'What is the weather in Paris?' }];
const tools = [{ type: 'function', function: WEATHER_TOOL }];
const toolResult = '{"temperature_c":21}';

// reply keeps what a test needs of a chat.completion.
function reply(c) {
  const ch = c.choices[0];
  return {
    model: c.model,
    object: c.object,
    content: ch.message.content,
    tool_calls: ch.message.tool_calls ?? null,
    finish_reason: ch.finish_reason,
    usage: c.usage ?? null,
  };
}

// withResult sends the call's result back after the assistant's message.
function withResult(message) {
  const msgs = [...weather, message];
  for (const call of message.tool_calls ?? []) {
    msgs.push({ role: 'tool', tool_call_id: call.id, content: toolResult });
  }
  return msgs;
}

await runCases({
  async models() {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    return { ids };
  },

  async chat() {
    return reply(await client.chat.completions.create({ model, messages: hello }));
  },

  async chat_stream() {
    const stream = await client.chat.completions.create({
      model, messages: hello, stream: true, stream_options: { include_usage: true },
    });
    let content = '', chunks = 0, finish = null, usage = null, role = null, model_ = null;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      const ch = chunk.choices[0];
      if (!ch) continue;
      model_ ??= chunk.model;
      role ??= ch.delta.role ?? null;
      content += ch.delta.content ?? '';
      finish = ch.finish_reason ?? finish;
    }
    return { content, chunks, finish_reason: finish, usage, role, model: model_ };
  },

  async tools() {
    const first = await client.chat.completions.create({ model, messages: weather, tools, tool_choice: 'auto' });
    const msg = first.choices[0].message;
    const second = await client.chat.completions.create({ model, messages: withResult(msg), tools });
    return { first: reply(first), second: reply(second) };
  },

  async tools_stream() {
    // The SDK's stream helper assembles the call from its deltas.
    const done = [];
    let pieces = 0;
    const stream = client.chat.completions.stream({ model, messages: weather, tools, tool_choice: 'auto' });
    stream.on('chunk', (c) => { if (c.choices[0]?.delta?.tool_calls) pieces++; });
    stream.on('tool_calls.function.arguments.done', (e) => done.push({ name: e.name, index: e.index, arguments: e.arguments }));
    const first = await stream.finalChatCompletion();
    const second = client.chat.completions.stream({ model, messages: withResult(first.choices[0].message), tools });
    const content = await second.finalContent();
    return { first: reply(first), tool_call_chunks: pieces, arguments_done: done, second: { content } };
  },

  async json_schema() {
    const c = await client.chat.completions.parse({
      model, messages: [{ role: 'user', content: 'Describe a person.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON_SCHEMA, strict: true } },
    });
    return { ...reply(c), parsed: c.choices[0].message.parsed };
  },

  async image() {
    const c = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: [
        { type: 'text', text: 'What is in this picture?' },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,' + PNG } },
      ] }],
    });
    return reply(c);
  },

  async embeddings() {
    const input = ['the quick brown fox', 'jumps over the lazy dog'];
    const emb = process.env.MOLTBOT_EMBED_MODEL;
    const float = await client.embeddings.create({ model: emb, input, encoding_format: 'float' });
    // No encoding_format: the SDK asks for base64 and decodes it to numbers.
    const dflt = await client.embeddings.create({ model: emb, input });
    const vecs = (r) => r.data.map((d) => ({ index: d.index, embedding: d.embedding }));
    return { model: float.model, usage: float.usage, float: vecs(float), base64: vecs(dflt) };
  },

  async refused() {
    // reasoning_effort is refused by the node (docs/API.md): a 400 naming it.
    try {
      await client.chat.completions.create({ model, messages: hello, reasoning_effort: 'high' });
      return { thrown: false };
    } catch (e) {
      return {
        thrown: true, bad_request: e instanceof OpenAI.BadRequestError, api_error: e instanceof OpenAI.APIError,
        status: e.status, param: e.param ?? null, type: e.type ?? null, message: e.message,
      };
    }
  },

  async bad_key() {
    const other = new OpenAI({ baseURL: client.baseURL, apiKey: 'mb_nobody_nothing', maxRetries: 0, timeout: 30_000 });
    try {
      await other.chat.completions.create({ model, messages: hello });
      return { thrown: false };
    } catch (e) {
      return { thrown: true, authentication: e instanceof OpenAI.AuthenticationError, status: e.status };
    }
  },
});
