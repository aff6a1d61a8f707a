// Drives a moltbot node's Ollama API with the npm `ollama` library and
// prints one JSON object: what each case saw, or {error} for a case that
// threw. The Go test (test/acceptance/ollama_test.go) judges it.
// Env: MOLTBOT_URL, MOLTBOT_API_KEY (sent as a bearer token, the library's
// `headers`), MOLTBOT_EMBED_MODEL.
import { Ollama } from 'ollama';
import { PNG, WEATHER_TOOL, PERSON_SCHEMA, runCases } from './common.mjs';

const client = new Ollama({
  host: process.env.MOLTBOT_URL,
  headers: { Authorization: 'Bearer ' + process.env.MOLTBOT_API_KEY },
});
const model = 'moltbot';
const hello = [{ role: 'user', content: 'hello' }];
const weather = [{ role: 'user', content: 'What is the weather in Paris?' }];
const tools = [{ type: 'function', function: WEATHER_TOOL }];
const toolResult = '{"temperature_c":21}';

// last keeps what a test needs of a final chat or generate response.
function last(r) {
  return {
    model: r.model, done: r.done, done_reason: r.done_reason ?? null,
    prompt_eval_count: r.prompt_eval_count ?? null, eval_count: r.eval_count ?? null,
    total_duration: r.total_duration ?? null,
  };
}

async function failure(fn) {
  try {
    await fn();
    return { thrown: false };
  } catch (e) {
    return { thrown: true, name: e.name, status_code: e.status_code ?? null, message: e.error ?? e.message };
  }
}

await runCases({
  async list() {
    const r = await client.list();
    return { names: r.models.map((m) => m.name) };
  },

  async show() {
    const r = await client.show({ model });
    const emb = await client.show({ model: process.env.MOLTBOT_EMBED_MODEL });
    return { capabilities: r.capabilities ?? null, model_info: r.model_info ?? null, embed_capabilities: emb.capabilities ?? null };
  },

  async chat() {
    const r = await client.chat({ model, messages: hello, stream: false });
    return { ...last(r), role: r.message.role, content: r.message.content };
  },

  async chat_stream() {
    let content = '', parts = 0, end = null;
    for await (const part of await client.chat({ model, messages: hello, stream: true })) {
      parts++;
      content += part.message?.content ?? '';
      if (part.done) end = last(part);
    }
    return { content, parts, last: end };
  },

  async tools() {
    const first = await client.chat({ model, messages: weather, tools, stream: false });
    const msg = first.message;
    const msgs = [...weather, msg];
    for (const call of msg.tool_calls ?? []) {
      msgs.push({ role: 'tool', tool_name: call.function.name, content: toolResult });
    }
    const second = await client.chat({ model, messages: msgs, tools, stream: false });
    return { tool_calls: msg.tool_calls ?? null, first: last(first), content: second.message.content };
  },

  async tools_stream() {
    const calls = [];
    for await (const part of await client.chat({ model, messages: weather, tools, stream: true })) {
      calls.push(...(part.message?.tool_calls ?? []));
    }
    return { tool_calls: calls };
  },

  async format_schema() {
    const r = await client.chat({ model, messages: [{ role: 'user', content: 'Describe a person.' }], format: PERSON_SCHEMA, stream: false });
    return { content: r.message.content };
  },

  async format_json() {
    const r = await client.generate({ model, prompt: 'Say something as JSON.', format: 'json', stream: false });
    return { response: r.response };
  },

  async image() {
    const r = await client.chat({ model, messages: [{ role: 'user', content: 'What is in this picture?', images: [PNG] }], stream: false });
    return { content: r.message.content };
  },

  async generate() {
    const r = await client.generate({ model, prompt: 'hello', stream: false });
    return { ...last(r), response: r.response };
  },

  async generate_stream() {
    let response = '', parts = 0, end = null;
    for await (const part of await client.generate({ model, prompt: 'hello', stream: true })) {
      parts++;
      response += part.response ?? '';
      if (part.done) end = last(part);
    }
    return { response, parts, last: end };
  },

  async embed() {
    const r = await client.embed({ model: process.env.MOLTBOT_EMBED_MODEL, input: ['the quick brown fox', 'jumps over the lazy dog'] });
    return { model: r.model, embeddings: r.embeddings, prompt_eval_count: r.prompt_eval_count ?? null };
  },

  async unknown_model() {
    return failure(() => client.chat({ model: 'no-such-model', messages: hello, stream: false }));
  },

  async refused_option() {
    // top_k is refused by the node (docs/API.md, Options).
    return failure(() => client.chat({ model, messages: hello, options: { top_k: 5 }, stream: false }));
  },

  async no_key() {
    const other = new Ollama({ host: process.env.MOLTBOT_URL });
    return failure(() => other.list());
  },
});
